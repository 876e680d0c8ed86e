//! RabbitMQ definitions: what `rabbitmqctl export_definitions` says of the
//! application user and its vhost, the password hash RabbitMQ stores
//! (`rabbit_password_hashing_sha256`: base64 of a 4-byte salt followed by
//! SHA-256 of the salt and the UTF-8 password), and the definitions one
//! `rabbitmqctl import_definitions` reads on stdin to make what is missing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::secret::Secret;

/// The permission pattern the user gets for configure, write and read.
pub const EVERYTHING: &str = ".*";

const SHA256: &str = "rabbit_password_hashing_sha256";
const SHA512: &str = "rabbit_password_hashing_sha512";

/// The user the profile wants.
pub struct Wanted<'a> {
    pub username: &'a str,
    pub vhost: &'a str,
    pub tags: &'a [String],
    pub password: &'a Secret,
}

/// What the server has of the user and its vhost.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The user's tags, when the user exists.
    pub tags: Option<Vec<String>>,
    /// Whether the stored hash is the password's.
    pub password_matches: bool,
    pub vhost: bool,
    /// Whether the user has `.* .* .*` on the vhost.
    pub permissions: bool,
}

/// One change the import makes, shown as one plan line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    AddVhost,
    AddUser,
    SetPassword,
    SetTags,
    SetPermissions,
}

impl Found {
    /// Reads `rabbitmqctl export_definitions` output for `wanted`.
    pub fn from_export(export: &Value, wanted: &Wanted) -> Self {
        let entries = |key: &str| export[key].as_array().cloned().unwrap_or_default();
        let user = entries("users")
            .into_iter()
            .find(|user| user["name"] == wanted.username);
        let permissions = entries("permissions").iter().any(|entry| {
            entry["user"] == wanted.username
                && entry["vhost"] == wanted.vhost
                && ["configure", "write", "read"]
                    .iter()
                    .all(|key| entry[*key] == EVERYTHING)
        });
        Self {
            tags: user.as_ref().map(|user| tags(&user["tags"])),
            password_matches: user.as_ref().is_some_and(|user| {
                matches(
                    user["password_hash"].as_str().unwrap_or_default(),
                    user["hashing_algorithm"].as_str().unwrap_or(SHA256),
                    wanted.password.expose(),
                )
            }),
            vhost: entries("vhosts")
                .iter()
                .any(|vhost| vhost["name"] == wanted.vhost),
            permissions,
        }
    }

    /// Whether the user exists.
    pub fn user(&self) -> bool {
        self.tags.is_some()
    }

    /// What the import must change for the server to have `wanted`.
    pub fn changes(&self, wanted: &Wanted) -> Vec<Change> {
        let mut changes = Vec::new();
        if !self.vhost {
            changes.push(Change::AddVhost);
        }
        match &self.tags {
            None => changes.push(Change::AddUser),
            Some(tags) => {
                if !self.password_matches {
                    changes.push(Change::SetPassword);
                }
                if sorted(tags) != sorted(wanted.tags) {
                    changes.push(Change::SetTags);
                }
            }
        }
        if !self.permissions {
            changes.push(Change::SetPermissions);
        }
        changes
    }
}

/// A tags value of RabbitMQ: a list, or one comma-separated string
/// (before 3.9).
pub fn tags(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => text
            .split(',')
            .filter(|tag| !tag.is_empty())
            .map(String::from)
            .collect(),
        list => list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tag| tag.as_str().map(String::from))
            .collect(),
    }
}

fn sorted(tags: &[String]) -> Vec<&str> {
    let mut tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    tags.sort_unstable();
    tags
}

impl Change {
    /// The plan line of the change.
    pub fn describe(self, wanted: &Wanted) -> String {
        let (user, vhost) = (wanted.username, wanted.vhost);
        let what = match self {
            Self::AddVhost => format!("add vhost `{vhost}`"),
            Self::AddUser => format!(
                "add user `{user}` with tags [{}] and the password's hash (on stdin)",
                wanted.tags.join(", ")
            ),
            Self::SetPassword => format!("set the password's hash of `{user}` (on stdin)"),
            Self::SetTags => format!("set the tags of `{user}` to [{}]", wanted.tags.join(", ")),
            Self::SetPermissions => {
                format!("give `{user}` `.* .* .*` on vhost `{vhost}`")
            }
        };
        format!("rabbitmqctl import_definitions: {what}")
    }
}

/// The definitions that make `changes`: the user (whole: hash, algorithm,
/// tags) when it is added or changed, the vhost when it is missing, the
/// permissions when they are not full. A secret: it holds the hash.
pub fn import(wanted: &Wanted, changes: &[Change]) -> Secret {
    let has = |change: Change| changes.contains(&change);
    let mut definitions = json!({"users": [], "vhosts": [], "permissions": []});
    if has(Change::AddUser) || has(Change::SetPassword) || has(Change::SetTags) {
        definitions["users"] = json!([{
            "name": wanted.username,
            "password_hash": password_hash(wanted.password.expose(), rand::random()),
            "hashing_algorithm": SHA256,
            "tags": wanted.tags.join(","),
        }]);
    }
    if has(Change::AddVhost) {
        definitions["vhosts"] = json!([{ "name": wanted.vhost }]);
    }
    if has(Change::SetPermissions) {
        definitions["permissions"] = json!([{
            "user": wanted.username,
            "vhost": wanted.vhost,
            "configure": EVERYTHING,
            "write": EVERYTHING,
            "read": EVERYTHING,
        }]);
    }
    Secret::new(definitions.to_string())
}

/// RabbitMQ's SHA-256 password hash of `password` with `salt`.
pub fn password_hash(password: &str, salt: [u8; 4]) -> String {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize();
    STANDARD.encode([salt.as_slice(), digest.as_slice()].concat())
}

/// Whether `stored` (base64 of salt and digest, by `algorithm`) is
/// `password`'s hash. An algorithm other than SHA-256 or SHA-512 (MD5 of
/// old servers) counts as not matching: the import sets a SHA-256 hash.
pub fn matches(stored: &str, algorithm: &str, password: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(stored) else {
        return false;
    };
    let Some((salt, digest)) = bytes.split_at_checked(4) else {
        return false;
    };
    match algorithm {
        SHA256 => {
            Sha256::new()
                .chain_update(salt)
                .chain_update(password.as_bytes())
                .finalize()
                .as_slice()
                == digest
        }
        SHA512 => {
            Sha512::new()
                .chain_update(salt)
                .chain_update(password.as_bytes())
                .finalize()
                .as_slice()
                == digest
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_salt_then_sha256_of_salt_and_password() {
        let stored = password_hash("Hello-Test-1", [0xf7, 0xa0, 0x8f, 0x87]);
        assert!(matches(&stored, SHA256, "Hello-Test-1"));
        assert!(!matches(&stored, SHA256, "Hello-Test-2"));
        assert!(!matches(
            &stored,
            "rabbit_password_hashing_md5",
            "Hello-Test-1"
        ));
        assert!(!matches("not base64!", SHA256, "Hello-Test-1"));
    }

    #[test]
    fn a_hash_the_real_server_made_matches() {
        // `add_user` of RabbitMQ 3.10.8 with `Hello-Test-1`, as exported.
        let stored = "YuG/gzhzfwsdWJnqR+7EE4FyKDds+R9xxQo9HkYScKBgfBdJ";
        assert!(matches(stored, SHA256, "Hello-Test-1"));
        assert!(!matches(stored, SHA256, "hello-test-1"));
    }
}
