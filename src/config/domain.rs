//! The DNS name the application is reached at, parsed once where it comes
//! in (a flag, a layer of the configuration, an answer on the terminal);
//! everything after that takes a [`Domain`] and checks nothing again.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize};

/// A DNS name a certificate can be issued for, in lower case (DNS names
/// are case-blind: one spelling whichever way it was typed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Domain(String);

/// Why a text is not a [`Domain`]: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(String);

impl Domain {
    /// Parses `text` (upper case is folded); the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let domain = text.to_ascii_lowercase();
        check(&domain).map_err(DomainError)?;
        Ok(Self(domain))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Domain {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::str::FromStr for Domain {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, DomainError> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|why| {
            serde::de::Error::custom(format!("`{text}` is not a valid DNS name: {why}"))
        })
    }
}

/// Checks a lower-cased name; the error says why it is not one.
fn check(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("it is empty".into());
    }
    if domain.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    if domain.ends_with('.') {
        return Err("it ends with a dot; give the name without it".into());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("it needs at least two labels, like `portal.example.com`".into());
    }
    labels.iter().try_for_each(|label| check_label(label))?;
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("it looks like an IP address; give a DNS name".into());
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it has an empty label (a dot at the start or two dots in a row)".into());
    }
    if label.len() > 63 {
        return Err(format!(
            "the label `{label}` is {} characters long; a label may have at most 63",
            label.len()
        ));
    }
    if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("`{label}` may only hold letters, digits and `-`"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("`{label}` may not start or end with `-`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_lower_cased_once() {
        let domain = Domain::parse("Portal.EXAMPLE.com").unwrap();
        assert_eq!(domain.as_str(), "portal.example.com");
        assert_eq!(domain.to_string(), "portal.example.com");
    }

    #[test]
    fn what_is_not_a_name_is_refused_saying_why() {
        for (bad, why) in [
            ("", "it is empty"),
            ("localhost", "it needs at least two labels"),
            ("exa mple.com", "`exa mple` may only hold"),
            ("-a.example.com", "`-a` may not start or end with `-`"),
            ("a..com", "it has an empty label"),
            ("portal.example.com.", "it ends with a dot"),
            ("10.0.0.1", "it looks like an IP address"),
            ("a_b.example.com", "`a_b` may only hold"),
            ("bücher.example.com", "`bücher` may only hold"),
        ] {
            let error = Domain::parse(bad).unwrap_err().to_string();
            assert!(error.starts_with(why), "{bad}: {error}");
        }
    }

    #[test]
    fn a_name_from_a_file_is_parsed_the_same_way() {
        #[derive(Deserialize)]
        struct Holder {
            domain: Domain,
        }
        let holder: Holder = toml::from_str("domain = \"A.Example.com\"").unwrap();
        assert_eq!(holder.domain.as_str(), "a.example.com");
        let error = toml::from_str::<Holder>("domain = \"a b.com\"")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("`a b.com` is not a valid DNS name"),
            "{error}"
        );
    }
}
