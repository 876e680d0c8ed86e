//! Backups: one archive holding what a host needs to be rebuilt (the
//! credentials, state and configuration, the TLS pair, the release's
//! values, K3s's datastore and token, the databases' dumps) with a
//! manifest of every member and its SHA-256, encrypted with age.
//!
//! The archive is a gzip-compressed tar: `manifest.toml` first, then the
//! members in the manifest's order. Encrypted (the default) it is an age
//! file (age-encryption.org/v1) to a passphrase (scrypt) or to the
//! X25519 key of `[backup] key_file`; age authenticates the whole file, so
//! a changed byte is refused before anything is read. Unencrypted, each
//! member is checked against the manifest's SHA-256.
//!
//! What is collected and how (programs, files) is in `members.rs`; this
//! file is pure: building, reading and checking the bytes.

pub mod members;
pub mod restore;

use std::io::{Read, Write};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::StepError;
use crate::host::{self, Host};
use crate::secret::Secret;
use crate::state::sha256_hex;

/// The manifest's name inside the archive.
pub const MANIFEST: &str = "manifest.toml";

/// The archive format this stackinstall writes and reads.
pub const FORMAT: u32 = 1;

/// How a scheduled backup's file name starts: the only archives pruning
/// (`[backup] keep`) ever removes, never one taken by hand or before an
/// upgrade.
pub const SCHEDULED_PREFIX: &str = "scheduled-backup-";
/// How it ends: a scheduled backup is always encrypted to the key file.
pub const SCHEDULED_SUFFIX: &str = ".tar.gz.age";

/// The file name of a scheduled backup taken at `stamp`
/// (`host::log::file_stamp`, `20261206T020000Z`: names sort by time).
pub fn scheduled_name(stamp: &str) -> String {
    format!("{SCHEDULED_PREFIX}{stamp}{SCHEDULED_SUFFIX}")
}

/// Whether `name` is exactly a name [`scheduled_name`] gives.
pub fn is_scheduled_name(name: &str) -> bool {
    let Some(stamp) =
        (name.strip_prefix(SCHEDULED_PREFIX)).and_then(|rest| rest.strip_suffix(SCHEDULED_SUFFIX))
    else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 16
        && bytes.iter().enumerate().all(|(at, byte)| match at {
            8 => *byte == b'T',
            15 => *byte == b'Z',
            _ => byte.is_ascii_digit(),
        })
}

/// The first bytes of an age file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// The most a member or an archive may hold once decompressed (the
/// archive is read into memory).
const MAX_UNPACKED: u64 = 8 * 1024 * 1024 * 1024;

/// What the archive holds and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The archive format ([`FORMAT`]).
    pub format: u32,
    /// The stackinstall version that wrote it.
    pub stackinstall: String,
    /// The profile the host was installed with.
    pub profile: String,
    /// When it was written (RFC 3339, UTC).
    pub created: String,
    /// Every member, in the archive's order.
    #[serde(default, rename = "member")]
    pub members: Vec<Member>,
    /// What the backup did not take, and why.
    #[serde(default, rename = "left_out")]
    pub left_out: Vec<LeftOut>,
}

/// One member of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name inside the archive (`mysql/dump.sql`).
    pub name: String,
    /// The SHA-256 of its bytes, in hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// What it is, for a person.
    pub what: String,
}

/// A part of the host the backup did not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub what: String,
    pub why: String,
}

/// A member's bytes with what it is, as collected.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub what: String,
    pub bytes: Vec<u8>,
}

impl Entry {
    pub fn new(name: impl Into<String>, what: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            what: what.into(),
            bytes,
        }
    }
}

/// How the archive is (or is not) encrypted.
pub enum Protection {
    /// age with scrypt: a passphrase a person typed.
    Passphrase(Secret),
    /// age with X25519: the identity file's text (`AGE-SECRET-KEY-1...`).
    KeyFile(Secret),
    /// Not encrypted (`--unencrypted`).
    None,
}

/// Why an archive cannot be read or does not hold what its manifest says.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("it is encrypted and cannot be decrypted: {0}")]
    Decrypt(String),
    #[error("it is not a stackinstall backup: {0}")]
    NotAnArchive(String),
    #[error("its manifest cannot be read: {0}")]
    Manifest(String),
    #[error("member `{name}` does not match the manifest: {why}")]
    Member { name: String, why: String },
    #[error("it holds `{0}`, which the manifest does not list")]
    Unlisted(String),
    #[error("the manifest lists `{0}`, which the archive does not hold")]
    Missing(String),
    #[error("the key file cannot be used: {0}")]
    Key(String),
}

/// A verified archive: its manifest and members.
#[derive(Debug)]
pub struct Archive {
    pub manifest: Manifest,
    pub entries: Vec<Entry>,
    /// Whether it was encrypted.
    pub encrypted: bool,
}

impl Archive {
    /// The bytes of the member `name`.
    pub fn member(&self, name: &str) -> Option<&[u8]> {
        (self.entries.iter())
            .find(|entry| entry.name == name)
            .map(|entry| entry.bytes.as_slice())
    }
}

/// The text of `[backup] key_file`, which must be root's alone (mode 0600).
pub fn key_file(host: &Host, config: &Config) -> Result<Option<Secret>, StepError> {
    let Some(file) = &config.backup.key_file else {
        return Ok(None);
    };
    let path = host.path(file);
    let text = host::backup::read_key_file(&path).map_err(|why| {
        StepError::input(
            format!(
                "the backup key file `{}` cannot be used: {why}",
                path.display()
            ),
            "make it with `age-keygen -o FILE`, owned by root, mode 0600",
        )
    })?;
    for line in text
        .lines()
        .filter(|line| line.starts_with("AGE-SECRET-KEY-"))
    {
        let _ = Secret::new(line.trim());
    }
    Ok(Some(Secret::new(text)))
}

/// The backup taken before an upgrade (`Context::back_up`): encrypted to
/// `[backup] key_file` when the profile names one, else root's 0600 file
/// (nobody is there to type a passphrase mid-run).
pub fn before_upgrade(
    context: &crate::context::Context,
    path: &std::path::Path,
) -> Result<(), StepError> {
    let protection = match key_file(&context.host, &context.config)? {
        Some(key) => Protection::KeyFile(key),
        None => Protection::None,
    };
    take(context, path, &protection, true).map(|_| ())
}

/// Takes a backup of the host `context` works on and writes it at `path`
/// (its directory made root-only when `private_dir`): the manifest and
/// the archive's size.
pub fn take(
    context: &crate::context::Context,
    path: &std::path::Path,
    protection: &Protection,
    private_dir: bool,
) -> Result<(Manifest, usize), StepError> {
    let (entries, left_out) = members::collect(context)?;
    let manifest = manifest_of(&context.config.name, &entries, left_out);
    let bytes = pack(&manifest, &entries, protection).map_err(|error| {
        StepError::failed(
            format!("cannot write the archive: {error}"),
            "check the key file (`[backup] key_file`)",
        )
    })?;
    crate::host::backup::write_file(path, &bytes, 0o600, private_dir)?;
    tracing::info!("backup written: {} ({} bytes)", path.display(), bytes.len());
    Ok((manifest, bytes.len()))
}

/// The manifest of `entries`.
pub fn manifest_of(profile: &str, entries: &[Entry], left_out: Vec<LeftOut>) -> Manifest {
    Manifest {
        format: FORMAT,
        stackinstall: env!("CARGO_PKG_VERSION").into(),
        profile: profile.into(),
        created: crate::state::now_rfc3339(),
        members: (entries.iter())
            .map(|entry| Member {
                name: entry.name.clone(),
                sha256: sha256_hex(&entry.bytes),
                size: entry.bytes.len() as u64,
                what: entry.what.clone(),
            })
            .collect(),
        left_out,
    }
}

/// The archive's bytes: the tar.gz of the manifest and the members, then
/// encrypted as `protection` says.
pub fn pack(
    manifest: &Manifest,
    entries: &[Entry],
    protection: &Protection,
) -> Result<Vec<u8>, ArchiveError> {
    let manifest_text =
        toml::to_string(manifest).map_err(|error| ArchiveError::Manifest(error.to_string()))?;
    let mut all = vec![(MANIFEST.to_string(), manifest_text.into_bytes())];
    all.extend((entries.iter()).map(|entry| (entry.name.clone(), entry.bytes.clone())));
    let tar = crate::host::archive::tar_gz(&all)
        .map_err(|error| ArchiveError::NotAnArchive(error.to_string()))?;
    match protection {
        Protection::None => Ok(tar),
        Protection::Passphrase(passphrase) => {
            let recipient = age::scrypt::Recipient::new(secret_string(passphrase));
            encrypt(&tar, &recipient)
        }
        Protection::KeyFile(identities) => {
            let recipient = identity(identities)?.to_public();
            encrypt(&tar, &recipient)
        }
    }
}

/// Whether `bytes` are an age file.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC)
}

/// Whether an encrypted archive was encrypted to a passphrase (else to a key).
pub fn needs_passphrase(bytes: &[u8]) -> bool {
    age::Decryptor::new_buffered(bytes).is_ok_and(|decryptor| decryptor.is_scrypt())
}

/// Reads and checks an archive: decrypted with `protection` when it is
/// encrypted, every member against the manifest, nothing unlisted.
pub fn unpack(bytes: &[u8], protection: &Protection) -> Result<Archive, ArchiveError> {
    let encrypted = is_encrypted(bytes);
    let tar = match (encrypted, protection) {
        (false, _) => bytes.to_vec(),
        (true, Protection::None) => {
            return Err(ArchiveError::Decrypt(
                "no passphrase or key file was given".into(),
            ));
        }
        (true, Protection::Passphrase(passphrase)) => decrypt(
            bytes,
            &age::scrypt::Identity::new(secret_string(passphrase)),
        )?,
        (true, Protection::KeyFile(text)) => decrypt(bytes, &identity(text)?)?,
    };
    let mut entries = untar_gz(&tar)?;
    if entries.first().map(|(name, _)| name.as_str()) != Some(MANIFEST) {
        return Err(ArchiveError::NotAnArchive(format!(
            "its first member is not `{MANIFEST}`"
        )));
    }
    let (_, manifest_bytes) = entries.remove(0);
    let manifest = parse_manifest(&manifest_bytes)?;
    let entries = check_members(&manifest, entries)?;
    Ok(Archive {
        manifest,
        entries,
        encrypted,
    })
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ArchiveError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ArchiveError::Manifest("it is not UTF-8 text".into()))?;
    toml::from_str(text).map_err(|error| ArchiveError::Manifest(error.message().to_string()))
}

/// The members in the manifest's order, each checked: present once, its
/// size and SHA-256 as listed; an entry the manifest does not list fails.
fn check_members(
    manifest: &Manifest,
    entries: Vec<(String, Vec<u8>)>,
) -> Result<Vec<Entry>, ArchiveError> {
    let mut found: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for (name, bytes) in entries {
        if !manifest.members.iter().any(|member| member.name == name) {
            return Err(ArchiveError::Unlisted(name));
        }
        if found.insert(name.clone(), bytes).is_some() {
            return Err(ArchiveError::Member {
                name,
                why: "it is in the archive twice".into(),
            });
        }
    }
    let mut checked = Vec::new();
    for member in &manifest.members {
        let bytes = found
            .remove(&member.name)
            .ok_or_else(|| ArchiveError::Missing(member.name.clone()))?;
        let sum = sha256_hex(&bytes);
        if sum != member.sha256 || bytes.len() as u64 != member.size {
            return Err(ArchiveError::Member {
                name: member.name.clone(),
                why: format!(
                    "its SHA-256 is {sum} ({} bytes), the manifest says {} ({} bytes)",
                    bytes.len(),
                    member.sha256,
                    member.size
                ),
            });
        }
        checked.push(Entry::new(&member.name, &member.what, bytes));
    }
    Ok(checked)
}

fn secret_string(secret: &Secret) -> SecretString {
    SecretString::from(secret.expose().to_string())
}

/// The one X25519 identity of an age identity file's text.
fn identity(text: &Secret) -> Result<age::x25519::Identity, ArchiveError> {
    let keys: Vec<&str> = (text.expose().lines())
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    match keys.as_slice() {
        [key] => key.parse().map_err(|why: &str| {
            ArchiveError::Key(format!("its key is not an age X25519 secret key: {why}"))
        }),
        _ => Err(ArchiveError::Key(format!(
            "it holds {} keys; it must hold one line `AGE-SECRET-KEY-1...` (`age-keygen` makes it)",
            keys.len()
        ))),
    }
}

/// A new age X25519 identity file's text (what `age-keygen` writes).
pub fn new_key_file() -> Secret {
    let identity = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    Secret::new(format!(
        "# created: {}\n# public key: {}\n{}\n",
        crate::state::now_rfc3339(),
        identity.to_public(),
        identity.to_string().expose_secret()
    ))
}

fn encrypt(plain: &[u8], recipient: &dyn age::Recipient) -> Result<Vec<u8>, ArchiveError> {
    let failed = |error: &dyn std::fmt::Display| ArchiveError::Decrypt(error.to_string());
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient)).map_err(|e| failed(&e))?;
    let mut out = Vec::with_capacity(plain.len() + 1024);
    let mut writer = encryptor.wrap_output(&mut out).map_err(|e| failed(&e))?;
    writer.write_all(plain).map_err(|e| failed(&e))?;
    writer.finish().map_err(|e| failed(&e))?;
    Ok(out)
}

fn decrypt(bytes: &[u8], identity: &dyn age::Identity) -> Result<Vec<u8>, ArchiveError> {
    let failed = |error: &dyn std::fmt::Display| ArchiveError::Decrypt(error.to_string());
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(|e| failed(&e))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity))
        .map_err(|e| failed(&e))?;
    let mut plain = Vec::new();
    (&mut reader)
        .take(MAX_UNPACKED)
        .read_to_end(&mut plain)
        .map_err(|e| failed(&e))?;
    Ok(plain)
}

fn untar_gz(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let bad = |error: std::io::Error| ArchiveError::NotAnArchive(error.to_string());
    let decoder = flate2::read::GzDecoder::new(bytes).take(MAX_UNPACKED);
    let mut archive = tar::Archive::new(decoder);
    let mut entries = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular || !safe_name(&name) {
            return Err(ArchiveError::NotAnArchive(format!(
                "it holds `{name}`, which is not a plain file name"
            )));
        }
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).map_err(bad)?;
        entries.push((name, contents));
    }
    Ok(entries)
}

/// A relative name of plain parts: no `..`, no leading `/`.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_a_scheduled_backup_gets_are_its_own() {
        let name = scheduled_name("20261206T020000Z");
        assert_eq!(name, "scheduled-backup-20261206T020000Z.tar.gz.age");
        assert!(is_scheduled_name(&name));
        for other in [
            "backup-20261206T020000Z.tar.gz.age",
            "backup-before-k3s-v1.29.5+k3s1-20261206T020000Z.tar.gz.age",
            "scheduled-backup-20261206T020000Z.tar.gz",
            "scheduled-backup-20261206T020000Z.tar.gz.age.tmp",
            "scheduled-backup-2026120XT020000Z.tar.gz.age",
            "scheduled-backup-../../etc.tar.gz.age",
            "notes.txt",
        ] {
            assert!(!is_scheduled_name(other), "{other}");
        }
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry::new("a/one.txt", "one", b"one\n".to_vec()),
            Entry::new("two.bin", "two", vec![0, 1, 2, 255]),
        ]
    }

    #[test]
    fn a_packed_archive_unpacks_to_its_members_with_each_protection() {
        let key = new_key_file();
        for protection in [Protection::None, Protection::KeyFile(key.clone())] {
            let manifest = manifest_of("p", &entries(), Vec::new());
            let bytes = pack(&manifest, &entries(), &protection).unwrap();
            assert_eq!(
                is_encrypted(&bytes),
                !matches!(protection, Protection::None)
            );
            let archive = unpack(&bytes, &protection).unwrap();
            assert_eq!(archive.manifest, manifest);
            assert_eq!(archive.member("two.bin"), Some(&[0u8, 1, 2, 255][..]));
        }
    }

    #[test]
    fn a_changed_byte_is_refused() {
        let manifest = manifest_of("p", &entries(), Vec::new());
        let key = Protection::KeyFile(new_key_file());
        let mut encrypted = pack(&manifest, &entries(), &key).unwrap();
        let last = encrypted.len() - 20;
        encrypted[last] ^= 1;
        assert!(matches!(
            unpack(&encrypted, &key),
            Err(ArchiveError::Decrypt(_))
        ));
        let other = Protection::KeyFile(new_key_file());
        let good = pack(&manifest, &entries(), &key).unwrap();
        assert!(matches!(
            unpack(&good, &other),
            Err(ArchiveError::Decrypt(_))
        ));

        let mut changed = entries();
        changed[1].bytes[0] = 9;
        let plain = pack(&manifest, &changed, &Protection::None).unwrap();
        let error = unpack(&plain, &Protection::None).unwrap_err();
        assert!(matches!(error, ArchiveError::Member { ref name, .. } if name == "two.bin"));
    }

    #[test]
    fn names_that_leave_the_archive_are_not_plain() {
        for name in ["../etc/passwd", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(!safe_name(name), "{name}");
        }
        assert!(safe_name("mongodb/app/users.bson"));
    }
}
