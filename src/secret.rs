//! Secrets: a [`Secret`] type whose `Debug` and `Display` never show the
//! value, and a process-wide list of secret values that logs and errors are
//! redacted against: each secret whatever its length (an imported legacy
//! password can be short), as it is, JSON-escaped, and base64-encoded (alone
//! or inside a longer base64 text such as a registry `auth`). Imports
//! nothing of the crate: the host seam uses it.

use std::fmt;
use std::sync::{LazyLock, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

/// What a redacted secret looks like.
pub const MASK: &str = "********";

/// Length of a generated password (alphanumeric).
pub const PASSWORD_LENGTH: usize = 32;

/// Base64 of a secret that starts at another offset of a longer text is
/// matched by its stable middle, when that middle is at least this long.
const MIN_SHIFTED_BASE64: usize = 4;

static KNOWN_SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// A value that must never be shown: passwords, tokens, keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value` and adds it to the values every log line is redacted of.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            let mut known = KNOWN_SECRETS.write().unwrap_or_else(|e| e.into_inner());
            for form in forms(&value) {
                if !known.contains(&form) {
                    known.push(form);
                }
            }
            known.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
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

/// Every form `value` may be shown in: as it is, JSON-escaped, base64 (with
/// and without padding), and the stable part of its base64 when it sits at
/// any offset of a longer encoded text.
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string(), STANDARD.encode(value)];
    forms.push(STANDARD_NO_PAD.encode(value));
    let json = serde_json::to_string(value).expect("strings serialize");
    forms.push(json[1..json.len() - 1].to_string());
    for shift in 0..=2usize {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(value.as_bytes());
        let encoded = STANDARD_NO_PAD.encode(&shifted);
        // The characters that also depend on the bytes before or after the
        // secret differ from text to text: only the middle is stable.
        let start = (shift * 8).div_ceil(6);
        let end = (shifted.len() * 8) / 6;
        if end > start && end - start >= MIN_SHIFTED_BASE64 {
            forms.push(encoded[start..end].to_string());
        }
    }
    forms.retain(|form| !form.is_empty());
    forms.dedup();
    forms
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
    fn short_secrets_and_their_encodings_are_masked() {
        let short = Secret::new("pw1");
        assert_eq!(redact("password=pw1."), "password=********.");
        let quoted = Secret::new("a\"b\\c-legacy");
        let json = serde_json::json!({ "password": quoted.expose() }).to_string();
        assert!(!redact(&json).contains(r#"a\"b"#), "{}", redact(&json));
        let encoded = STANDARD.encode("kubernetes-secret-value");
        Secret::new("kubernetes-secret-value");
        assert_eq!(redact(&format!("data: {encoded}")), "data: ********");
        for prefix in ["u:", "us:", "use:"] {
            let auth = STANDARD.encode(format!("{prefix}kubernetes-secret-value"));
            assert!(redact(&auth).contains(MASK), "{prefix}: {auth}");
        }
        assert_eq!(format!("{short}"), MASK);
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
