//! Secrets: a [`Secret`] type whose `Debug` and `Display` never show the
//! value, and a process-wide list of secret values that logs and errors are
//! redacted against. Imports nothing of the crate: the host seam uses it.

use std::fmt;
use std::sync::{LazyLock, RwLock};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

/// What a redacted secret looks like.
pub const MASK: &str = "********";

/// Length of a generated password (alphanumeric).
pub const PASSWORD_LENGTH: usize = 32;

/// Secrets shorter than this are not redacted: too likely to be ordinary text.
const MIN_REDACTED_LENGTH: usize = 6;

static KNOWN_SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// A value that must never be shown: passwords, tokens, keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value` and adds it to the values every log line is redacted of.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        if value.len() >= MIN_REDACTED_LENGTH {
            let mut known = KNOWN_SECRETS.write().unwrap_or_else(|e| e.into_inner());
            if !known.contains(&value) {
                known.push(value.clone());
                known.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
            }
        }
        Self(value)
    }

    /// A new random alphanumeric password.
    pub fn generate() -> Self {
        let password: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(PASSWORD_LENGTH)
            .map(char::from)
            .collect();
        Self::new(password)
    }

    /// The value itself: only for the code that hands it to its consumer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// `text` with every known secret replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    let known = KNOWN_SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut text = text.to_string();
    for secret in known.iter() {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), MASK);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows_itself() {
        let secret = Secret::new("a-very-private-value");
        assert_eq!(format!("{secret} {secret:?}"), "******** ********");
        assert_eq!(redact("x=a-very-private-value;"), "x=********;");
    }

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_distinct() {
        let first = Secret::generate();
        let second = Secret::generate();
        assert_eq!(first.expose().len(), PASSWORD_LENGTH);
        assert!(first.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(first, second);
    }
}
