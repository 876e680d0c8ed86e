//! The one OpenPGP public key in an ASCII-armoured file (RFC 4880 v4), so
//! a downloaded signing key can be checked against the fingerprint its
//! publisher gives, without `gpg`: every armour block of the file is read,
//! every packet in it walked, a file holding more than one primary key is
//! refused, and the key is armoured again on its own (what apt is given is
//! exactly the key whose fingerprint was checked, nothing appended).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// The OpenPGP packet tag of a primary public key (RFC 4880 5.5.1.1).
const PUBLIC_KEY: u8 = 6;

/// Why a file is not one usable public key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("it is not an ASCII-armoured PGP public key")]
    NotArmoured,
    #[error("its armour is not valid base64")]
    BadBase64,
    #[error("it does not start with a version 4 public key packet")]
    NoPublicKey,
    #[error("its packets are cut short or use a length form keys do not use")]
    BadPacket,
    #[error("it holds {0} primary keys (fingerprints {1}), where one was expected")]
    SeveralKeys(usize, String),
}

/// One transferable public key: its primary key, user ids, subkeys and
/// signatures, as packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The v4 fingerprint (40 upper-case hex digits) of the primary key.
    pub fingerprint: String,
    packets: Vec<u8>,
}

impl PublicKey {
    /// The key alone, ASCII-armoured (RFC 4880 6.2), with its CRC-24.
    pub fn armoured(&self) -> String {
        let encoded = STANDARD.encode(&self.packets);
        let mut text = format!("{BEGIN}\n\n");
        for line in encoded.as_bytes().chunks(64) {
            text.push_str(&String::from_utf8_lossy(line));
            text.push('\n');
        }
        let crc = crc24(&self.packets).to_be_bytes();
        text.push_str(&format!("={}\n{END}\n", STANDARD.encode(&crc[1..])));
        text
    }
}

/// The one public key in the armoured `text` (every armour block in it).
pub fn single_key(text: &str) -> Result<PublicKey, KeyError> {
    let packets = dearmour(text)?;
    let mut primaries = Vec::new();
    let mut rest = packets.as_slice();
    while !rest.is_empty() {
        let (tag, body, length) = packet(rest).ok_or(KeyError::BadPacket)?;
        if primaries.is_empty() && tag != PUBLIC_KEY {
            return Err(KeyError::NoPublicKey);
        }
        if tag == PUBLIC_KEY {
            primaries.push(fingerprint_of(body)?);
        }
        rest = &rest[length..];
    }
    match primaries.as_slice() {
        [] => Err(KeyError::NoPublicKey),
        [fingerprint] => Ok(PublicKey {
            fingerprint: fingerprint.clone(),
            packets,
        }),
        several => Err(KeyError::SeveralKeys(several.len(), several.join(", "))),
    }
}

/// The v4 fingerprint of the one primary key in the armoured `text`.
pub fn fingerprint(text: &str) -> Result<String, KeyError> {
    single_key(text).map(|key| key.fingerprint)
}

/// SHA-1 over the primary key packet, as RFC 4880 12.2 gives it.
fn fingerprint_of(body: &[u8]) -> Result<String, KeyError> {
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

/// The bytes inside every armour block of `text` (headers and checksums
/// left out), one after the other.
fn dearmour(text: &str) -> Result<Vec<u8>, KeyError> {
    let mut lines = text.lines().map(str::trim).peekable();
    let mut packets = Vec::new();
    let mut blocks = 0;
    while lines.any(|line| line == BEGIN) {
        blocks += 1;
        let mut body = String::new();
        // Armour headers (`Version: ...`) end at the first empty line.
        while lines.next_if(|line| line.contains(": ")).is_some() {}
        for line in lines.by_ref() {
            if line == END {
                break;
            }
            if !line.is_empty() && !line.starts_with('=') {
                body.push_str(line);
            }
        }
        let decoded = STANDARD.decode(body).map_err(|_| KeyError::BadBase64)?;
        packets.extend(decoded);
    }
    if blocks == 0 {
        return Err(KeyError::NotArmoured);
    }
    Ok(packets)
}

/// The first packet of `bytes`: its tag, its body and its whole length.
fn packet(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let header = *bytes.first()?;
    if header & 0x80 == 0 {
        return None;
    }
    let (tag, length, start) = if header & 0x40 != 0 {
        let (length, size) = new_length(bytes.get(1..)?)?;
        (header & 0x3f, length, 1 + size)
    } else {
        let size = match header & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return None,
        };
        let length = bytes
            .get(1..1 + size)?
            .iter()
            .fold(0usize, |sum, byte| (sum << 8) | usize::from(*byte));
        ((header >> 2) & 0x0f, length, 1 + size)
    };
    let end = start.checked_add(length)?;
    Some((tag, bytes.get(start..end)?, end))
}

/// A new-format packet length and how many bytes it took (partial
/// lengths are for data packets, never for keys).
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

/// The armour's checksum (RFC 4880 6.1).
fn crc24(bytes: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for byte in bytes {
        crc ^= u32::from(*byte) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
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
    /// Another throwaway key (`gpg --quick-gen-key ... ed25519`); gpg gave
    /// its fingerprint as 6EF3AC95B26EB356BAC5D63727118245C71BD54A.
    const OTHER: &str = include_str!("../tests/fixtures/other-signing-key.asc");

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
        let broken = format!("{BEGIN}\n\n!!!\n{END}\n");
        assert_eq!(fingerprint(&broken), Err(KeyError::BadBase64));
    }

    #[test]
    fn a_second_key_appended_in_any_form_is_refused() {
        let other = single_key(OTHER).unwrap();
        assert_eq!(
            other.fingerprint,
            "6EF3AC95B26EB356BAC5D63727118245C71BD54A"
        );
        // A second armour block after the first, a second key inside the
        // same block, and gpg's own `--armor --export` of the two keys.
        let key = single_key(KEY).unwrap();
        let mut both = key.clone();
        both.packets.extend(&other.packets);
        let exported = include_str!("../tests/fixtures/two-signing-keys.asc");
        for text in [format!("{KEY}{OTHER}"), both.armoured(), exported.into()] {
            match single_key(&text) {
                Err(KeyError::SeveralKeys(2, fingerprints)) => {
                    assert!(fingerprints.contains(&other.fingerprint), "{fingerprints}")
                }
                found => panic!("two keys accepted: {found:?}"),
            }
        }
    }

    #[test]
    fn the_key_armoured_again_is_the_same_key() {
        let key = single_key(KEY).unwrap();
        let again = single_key(&key.armoured()).unwrap();
        assert_eq!(again, key);
        // The checksum lines gpg wrote for these files.
        for (text, checksum) in [(KEY, "=P18U"), (OTHER, "=4vn3")] {
            let armoured = single_key(text).unwrap().armoured();
            assert!(armoured.contains(&format!("\n{checksum}\n")), "{armoured}");
        }
    }
}
