//! The fingerprint of an ASCII-armoured OpenPGP public key (RFC 4880 v4:
//! SHA-1 over the primary key packet), so a downloaded signing key can be
//! checked against the fingerprint its publisher gives, without `gpg`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// Why a key has no fingerprint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("it is not an ASCII-armoured PGP public key")]
    NotArmoured,
    #[error("its armour is not valid base64")]
    BadBase64,
    #[error("it does not start with a version 4 public key packet")]
    NoPublicKey,
}

/// The v4 fingerprint (40 upper-case hex digits) of the primary key in the
/// armoured `text`.
pub fn fingerprint(text: &str) -> Result<String, KeyError> {
    let packets = dearmour(text)?;
    let body = primary_key_packet(&packets).ok_or(KeyError::NoPublicKey)?;
    if body.first() != Some(&4) {
        return Err(KeyError::NoPublicKey);
    }
    let length = u16::try_from(body.len()).map_err(|_| KeyError::NoPublicKey)?;
    let mut hasher = Sha1::new();
    hasher.update([0x99]);
    hasher.update(length.to_be_bytes());
    hasher.update(body);
    Ok(hex::encode_upper(hasher.finalize()))
}

/// The bytes inside the armour (headers and checksum left out).
fn dearmour(text: &str) -> Result<Vec<u8>, KeyError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "-----BEGIN PGP PUBLIC KEY BLOCK-----");
    if lines.next().is_none() {
        return Err(KeyError::NotArmoured);
    }
    // Armour headers (`Version: ...`) end at the first empty line.
    let body: Vec<&str> = lines
        .skip_while(|line| line.contains(": "))
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.starts_with('=') && !line.starts_with("-----"))
        .collect();
    STANDARD
        .decode(body.concat())
        .map_err(|_| KeyError::BadBase64)
}

/// The body of the first packet when it is a public key packet (tag 6).
fn primary_key_packet(packets: &[u8]) -> Option<&[u8]> {
    let header = *packets.first()?;
    if header & 0x80 == 0 {
        return None;
    }
    let (tag, length, start) = if header & 0x40 != 0 {
        let (length, size) = new_length(packets.get(1..)?)?;
        (header & 0x3f, length, 1 + size)
    } else {
        let size = match header & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return None,
        };
        let length = packets
            .get(1..1 + size)?
            .iter()
            .fold(0usize, |sum, byte| (sum << 8) | usize::from(*byte));
        ((header >> 2) & 0x0f, length, 1 + size)
    };
    if tag != 6 {
        return None;
    }
    packets.get(start..start + length)
}

/// A new-format packet length and how many bytes it took.
fn new_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = usize::from(*bytes.first()?);
    match first {
        0..=191 => Some((first, 1)),
        192..=223 => Some((((first - 192) << 8) + usize::from(*bytes.get(1)?) + 192, 2)),
        255 => {
            let length = bytes
                .get(1..5)?
                .iter()
                .fold(0usize, |sum, byte| (sum << 8) | usize::from(*byte));
            Some((length, 5))
        }
        _ => None,
    }
}

/// `fingerprint` without spaces, upper-cased, for comparison.
pub fn normalize(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key made with `gpg --quick-gen-key ... rsa2048`; gpg
    /// gave its fingerprint as 28BB7FC053F6C2A0AF6AF521F010861042996F61.
    const KEY: &str = include_str!("../tests/fixtures/test-signing-key.asc");

    #[test]
    fn fingerprint_is_the_one_gpg_gives() {
        assert_eq!(
            fingerprint(KEY).unwrap(),
            "28BB7FC053F6C2A0AF6AF521F010861042996F61"
        );
        assert_eq!(
            normalize("28bb 7fc0 53f6 c2a0 af6a  f521 f010 8610 4299 6f61"),
            "28BB7FC053F6C2A0AF6AF521F010861042996F61"
        );
    }

    #[test]
    fn other_text_has_no_fingerprint() {
        assert_eq!(fingerprint("<html>"), Err(KeyError::NotArmoured));
        let broken =
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert_eq!(fingerprint(broken), Err(KeyError::BadBase64));
    }
}
