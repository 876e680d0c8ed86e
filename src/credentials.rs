//! The credentials file: the generated service passwords, written once
//! before first use (0600), reused on every run, never replaced when damaged,
//! and the bash installer's legacy file imported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::{self, FileError, Host};
use crate::secret::Secret;

/// The services whose passwords the credentials file keeps, in file order.
pub const SERVICES: [&str; 3] = ["mysql", "mongodb", "rabbitmq"];

/// Version of the credentials file format.
const CREDENTIALS_VERSION: u32 = 1;

/// One service account: user name and password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub username: String,
    pub password: Secret,
}

/// The generated passwords, by service name (`mysql`, `mongodb`, `rabbitmq`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    pub version: u32,
    #[serde(flatten)]
    pub accounts: BTreeMap<String, Account>,
}

impl Credentials {
    /// The account of `service`, if the file has one.
    pub fn account(&self, service: &str) -> Option<&Account> {
        self.accounts.get(service)
    }
}

/// A credentials file that cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the credentials file `{}` cannot be read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    #[error("the credentials file `{}` is damaged: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("the credentials file `{}` has format version {found}; this stackinstall reads version {CREDENTIALS_VERSION}", path.display())]
    WrongVersion { path: PathBuf, found: u32 },
    #[error("the bash installer's password file `{}` is not read: {why}", path.display())]
    LegacyRefused { path: PathBuf, why: String },
    #[error(transparent)]
    Write(#[from] FileError),
}

impl CredentialsError {
    /// What the operator can do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::Write(error) | Self::Unreadable { source: error, .. }
                if error.hint().is_some() =>
            {
                error.hint().unwrap_or_default()
            }
            Self::Write(_) => "check that the directory is writable by root".into(),
            Self::LegacyRefused { path, .. } => format!(
                "its passwords would become the databases' admin passwords, so it is read only from root's home, owned by root and writable by no one else: if you trust what it holds, `sudo install -o root -g root -m 0600 {} /root/`, or put each password in with `sudo stackinstall credentials set SERVICE`; otherwise remove it",
                path.display()
            ),
            Self::Unreadable { path, .. }
            | Self::Corrupt { path, .. }
            | Self::WrongVersion { path, .. } => format!(
                "the databases use the passwords in this file, so it is never replaced: restore it from a backup, or fix it by hand (`version = 1`, then a `[mysql]`, `[mongodb]` and `[rabbitmq]` table, each with `username` and `password`); only if no database was set up yet, move it aside (`mv {0} {0}.bad`) and run again",
                path.display()
            ),
        }
    }
}

/// The credentials file on the host.
#[derive(Debug, Clone)]
pub struct CredentialsFile {
    path: PathBuf,
    legacy_path: PathBuf,
    /// The bash installer's file in the invoking user's home (`$HOME`,
    /// which `sudo -E` keeps): named, never read.
    user_legacy_path: PathBuf,
}

/// The bash installer's password file, in its user's home.
const LEGACY_NAME: &str = "stackbill-credentials.txt";

/// Root's home in the host's password database (`/root` when it does not
/// say).
fn root_home(host: &Host) -> PathBuf {
    host::fs::read_optional(&host.path("/etc/passwd"))
        .ok()
        .flatten()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.get(2) == Some(&"0"))
                    .then(|| fields.get(5).map(PathBuf::from))
                    .flatten()
            })
        })
        .filter(|home| home.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// Where the credentials file lives on the host.
pub const CREDENTIALS_PATH: &str = "/etc/stackinstall/credentials.toml";

impl CredentialsFile {
    /// The credentials file of `host`. The bash installer's
    /// `stackbill-credentials.txt` is read from root's home (the password
    /// database's); one in `home` (the invoking user's) is only named.
    pub fn new(host: &Host, home: &Path) -> Self {
        Self {
            path: host.path(CREDENTIALS_PATH),
            legacy_path: host.path(root_home(host).join(LEGACY_NAME)),
            user_legacy_path: host.path(home.join(LEGACY_NAME)),
        }
    }

    /// The file's path on this machine.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The legacy bash installer's credentials file.
    pub fn legacy_path(&self) -> &Path {
        &self.legacy_path
    }

    /// Loads the file; `None` when there is none yet.
    pub fn load(&self) -> Result<Option<Credentials>, CredentialsError> {
        let corrupt = |detail: String| CredentialsError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        let text = match host::fs::read_own_optional(&self.path) {
            Ok(text) => text,
            Err(error) if error.source.kind() == std::io::ErrorKind::InvalidData => {
                return Err(corrupt(error.source.to_string()));
            }
            Err(source) => {
                return Err(CredentialsError::Unreadable {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let Some(text) = text else { return Ok(None) };
        let credentials = parse(&text).map_err(|problem| match problem {
            crate::state::Unparsed::Corrupt(detail) => corrupt(detail),
            crate::state::Unparsed::WrongVersion(found) => CredentialsError::WrongVersion {
                path: self.path.clone(),
                found: found.try_into().unwrap_or(u32::MAX),
            },
        })?;
        host::fs::pause_point("credentials-loaded");
        Ok(Some(credentials))
    }

    /// Passwords of the bash installer's `stackbill-credentials.txt`, by service.
    /// Only root's, and only when root owns it, it is no link and no one
    /// else may write it: otherwise refused, naming why. One only in the
    /// invoking user's home is refused, never read.
    pub fn load_legacy(&self) -> Result<BTreeMap<String, Secret>, CredentialsError> {
        let refused = |path: &Path, why: String| CredentialsError::LegacyRefused {
            path: path.to_path_buf(),
            why,
        };
        let text = match host::fs::read_root_only(&self.legacy_path) {
            Ok(text) => text,
            Err(host::fs::RootOnlyError::Unsafe(why)) => {
                return Err(refused(&self.legacy_path, why));
            }
            Err(host::fs::RootOnlyError::File(source)) => {
                return Err(CredentialsError::Unreadable {
                    path: self.legacy_path.clone(),
                    source,
                });
            }
        };
        match text {
            Some(text) => Ok(parse_legacy(&text)),
            None if self.user_legacy_path != self.legacy_path
                && host::fs::exists(&self.user_legacy_path) =>
            {
                Err(refused(
                    &self.user_legacy_path,
                    "it is in the invoking user's home (`$HOME`), not root's: it is never read from there".into(),
                ))
            }
            None => Ok(BTreeMap::new()),
        }
    }

    /// Completes `existing` with generated (or legacy) passwords for the
    /// missing `usernames` (service -> user name); returns the credentials
    /// and whether anything was added.
    pub fn complete(
        existing: Option<Credentials>,
        usernames: &BTreeMap<String, String>,
        legacy: &BTreeMap<String, Secret>,
    ) -> (Credentials, bool) {
        let mut credentials = existing.unwrap_or(Credentials {
            version: CREDENTIALS_VERSION,
            accounts: BTreeMap::new(),
        });
        let mut added = false;
        for (service, username) in usernames {
            if credentials.accounts.contains_key(service) {
                continue;
            }
            let password = legacy
                .get(service)
                .cloned()
                .unwrap_or_else(Secret::generate);
            credentials.accounts.insert(
                service.clone(),
                Account {
                    username: username.clone(),
                    password,
                },
            );
            added = true;
        }
        (credentials, added)
    }

    /// Puts `account` as `service`'s into the file (made when there is
    /// none; a damaged one is refused, never replaced); returns whether it
    /// replaced a different password.
    pub fn set(&self, service: &str, account: Account) -> Result<bool, CredentialsError> {
        let mut credentials = self.load()?.unwrap_or(Credentials {
            version: CREDENTIALS_VERSION,
            accounts: BTreeMap::new(),
        });
        let replaced = credentials
            .accounts
            .insert(service.to_string(), account.clone())
            .is_some_and(|old| old.password != account.password);
        self.save(&credentials)?;
        Ok(replaced)
    }

    /// Writes `credentials` atomically, mode 0600, in a 0700 directory.
    pub fn save(&self, credentials: &Credentials) -> Result<(), CredentialsError> {
        if let Some(parent) = self.path.parent() {
            host::fs::ensure_private_dir(parent)?;
        }
        let body = toml::to_string(credentials).expect("credentials serialize to TOML");
        let text = format!(
            "# Generated by stackinstall: the passwords the databases were set up with.\n\
             # Keep this file (mode 0600): the databases cannot be reached without it.\n\
             # `stackinstall uninstall --delete-db` removes it once no database it keeps uses these passwords.\n{body}"
        );
        host::fs::write_atomic(&self.path, text.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// The credentials in the text of a credentials file (its version
/// checked, no password empty): a pure function, fuzzed
/// (`fuzz/fuzz_targets/credentials.rs`).
pub fn parse(text: &str) -> Result<Credentials, crate::state::Unparsed> {
    use crate::state::Unparsed;
    let corrupt = |error: toml::de::Error| Unparsed::Corrupt(error.message().into());
    let table: toml::Table = toml::from_str(text).map_err(corrupt)?;
    match table.get("version").and_then(toml::Value::as_integer) {
        Some(version) if version == i64::from(CREDENTIALS_VERSION) => {}
        Some(version) => return Err(Unparsed::WrongVersion(version)),
        None => return Err(Unparsed::Corrupt("it has no `version`".into())),
    }
    let credentials: Credentials = toml::from_str(text).map_err(corrupt)?;
    for (service, account) in &credentials.accounts {
        if account.password.expose().is_empty() {
            return Err(Unparsed::Corrupt(format!(
                "the password of `{service}` is empty"
            )));
        }
    }
    Ok(credentials)
}

/// The values of secret-named keys (`password = "..."`) in the text of a
/// credentials file, whether or not it parses: what a support bundle is
/// redacted of when the file is damaged.
pub fn raw_secrets(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| crate::secret::is_secret_name(key.trim().trim_matches('"')))
        .map(|(_, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value)
                .to_string()
        })
        .filter(|value| !value.is_empty())
        .collect()
}

/// Reads the bash installer's format: a `MYSQL:` (`MONGODB:`, `RABBITMQ:`)
/// heading followed within five lines by `Password: VALUE`.
pub fn parse_legacy(text: &str) -> BTreeMap<String, Secret> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        let heading = line.trim().trim_end_matches(':').to_ascii_lowercase();
        if !line.trim().ends_with(':') || !SERVICES.contains(&heading.as_str()) {
            continue;
        }
        let password = lines[index + 1..]
            .iter()
            .take(5)
            .find_map(|line| line.trim().strip_prefix("Password:"))
            .map(str::trim)
            .filter(|password| !password.is_empty());
        if let Some(password) = password {
            found.insert(heading, Secret::new(password));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_file_passwords_are_imported() {
        let text = "StackBill credentials\n\nMYSQL:\n  Host: 10.0.0.1\n  Username: stackbill\n  Password: OldMysqlPass1\n\nMONGODB:\n  Username: stackbill\n  Password: OldMongoPass2\n\nRABBITMQ:\n  Password:\n";
        let found = parse_legacy(text);
        assert_eq!(found["mysql"].expose(), "OldMysqlPass1");
        assert_eq!(found["mongodb"].expose(), "OldMongoPass2");
        assert!(
            !found.contains_key("rabbitmq"),
            "an empty password is not imported"
        );
    }
}
