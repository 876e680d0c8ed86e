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

/// How many forms of known secrets redaction masks (0: none is known).
pub fn known_count() -> usize {
    KNOWN_SECRETS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .len()
}

/// Whether `name` (a key or an environment variable) names a secret:
/// `(?i)(pass(word|wd)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)`.
/// A name that refers to one (`secretName`, `credentialName`,
/// `PASSWORD_FILE`, `tokenRef`) is not one.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let squeezed: String = lower.chars().filter(|c| !matches!(c, '_' | '-')).collect();
    let references = ["name", "ref", "file", "path"]
        .iter()
        .any(|suffix| lower.ends_with(suffix));
    !references
        && (["pass", "secret", "token", "credential"]
            .iter()
            .any(|word| lower.contains(word))
            || ["apikey", "accesskey", "privatekey"]
                .iter()
                .any(|word| squeezed.contains(word)))
}

/// `text` with the values of secret-named keys and variables masked
/// (`DB_PASSWORD: x`, `password = "x"`, `"apiKey": "x"`, `TOKEN=x`, and a
/// Kubernetes `- name: DB_PASSWORD` whose `value:` is on the next line),
/// and the user-info of every URL or connection string
/// (`amqp://user:x@host` -> `amqp://********@host`): for what no list of
/// known secrets can cover (a support bundle made without the
/// credentials file).
pub fn redact_by_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_named_secret = false;
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let mut masked = mask_assignment(body, previous_named_secret);
        masked = mask_user_info(&masked);
        previous_named_secret = names_secret_entry(body);
        out.push_str(&masked);
        out.push_str(end);
    }
    out
}

/// `- name: DB_PASSWORD` (a Kubernetes env entry; its value follows).
fn names_secret_entry(line: &str) -> bool {
    let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
    trimmed
        .strip_prefix("name:")
        .map(|name| name.trim().trim_matches('"'))
        .is_some_and(is_secret_name)
}

/// Masks the value after the first `key:` / `key=` / `"key":` of `line`
/// whose key names a secret (or any `value:` when `value_is_secret`).
fn mask_assignment(line: &str, value_is_secret: bool) -> String {
    let bytes = line.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let Some(offset) = line[start..].find([':', '=']) else {
            break;
        };
        let separator = start + offset;
        let key_part = line[..separator].trim_end().trim_end_matches('"');
        // After the last character that cannot be part of a key (which
        // may be wider than a byte: found by fuzzing, `credentials`).
        let key_start = (key_part.char_indices().rev())
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let key = &key_part[key_start..];
        let secret = is_secret_name(key) || (value_is_secret && key == "value");
        // `://` is a URL, not an assignment.
        let is_url = line[separator..].starts_with("://");
        if secret && !is_url && !key.is_empty() {
            let value_start = separator
                + 1
                + line[separator + 1..]
                    .find(|c: char| !c.is_whitespace())
                    .unwrap_or(line.len() - separator - 1);
            let (from, to) = value_span(line, value_start);
            if to > from {
                return format!("{}{MASK}{}", &line[..from], &line[to..]);
            }
        }
        start = separator + 1;
    }
    line.to_string()
}

/// The span of the value starting at `start`: inside its quotes, or up to
/// whitespace or a separator.
fn value_span(line: &str, start: usize) -> (usize, usize) {
    let rest = &line[start..];
    match rest.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let inner = start + 1;
            let end = line[inner..].find(quote).map_or(line.len(), |i| inner + i);
            (inner, end)
        }
        Some('<' | '|' | '>') | None => (start, start),
        Some(_) => {
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '&' | '}' | '"'))
                .map_or(line.len(), |i| start + i);
            (start, end)
        }
    }
}

/// Masks the user-info (`user:password@`) of each URL in `line`.
fn mask_user_info(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(index) = rest.find("://") {
        let authority_start = index + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '>'))
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `credentials` fuzz target: a key right after a
    /// character wider than a byte cut that character in two (a panic
    /// while redacting, whose input is any file or program output).
    #[test]
    fn a_key_after_a_wide_character_is_read_whole() {
        let line = "[nontokenac\"sword = \u{7d3}5l:Dqp:/";
        let _ = redact_by_name(line);
        assert_eq!(redact_by_name("ޓpassword=hunter2"), "ޓpassword=********");
    }

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
    fn values_of_secret_names_and_url_user_info_are_masked() {
        let text = "    DB_PASSWORD:  hunter2x\n    Image: 7303.dkr.ecr.ap-south-1.amazonaws.com/sb-core:1.4.2\n    Port: 8080/TCP\n    AMQP_URL: amqp://stackbill:Rabbit9@10.0.0.5:5672/\n- name: MONGO_PASS\n  value: \"M0ngo\"\npassword = \"Toml1\"\n{\"apiKey\": \"K3y\", \"host\": \"db\"}\nAWS_SECRET_ACCESS_KEY=Aws5 next\nsecretName: tls-cert\n";
        let masked = redact_by_name(text);
        for leaked in ["hunter2x", "Rabbit9", "M0ngo", "Toml1", "K3y", "Aws5"] {
            assert!(!masked.contains(leaked), "{leaked} in {masked}");
        }
        for kept in [
            "7303.dkr.ecr.ap-south-1.amazonaws.com/sb-core:1.4.2",
            "Port: 8080/TCP",
            "@10.0.0.5:5672/",
            "\"host\": \"db\"",
            "secretName: tls-cert",
            " next",
        ] {
            assert!(masked.contains(kept), "{kept} lost from {masked}");
        }
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
