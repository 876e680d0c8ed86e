//! The TLS certificate and key: validation of an operator's pair (PEM,
//! matching key, domain coverage, expiry) and self-signed generation.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Days of validity under which the operator is warned.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// What a valid pair looks like.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// DNS names the certificate is for.
    pub names: Vec<String>,
    pub not_after: OffsetDateTime,
    /// Whole days until it expires.
    pub days_left: i64,
}

/// Why a certificate or key is not usable; each names what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("the certificate is not PEM: no `BEGIN CERTIFICATE` block could be read")]
    CertificateNotPem,
    #[error("the certificate cannot be parsed: {0}")]
    CertificateInvalid(String),
    #[error("the key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    KeyNotPem,
    #[error("the key is not one this tool can use: {0}")]
    KeyUnsupported(String),
    #[error("the key does not belong to the certificate")]
    KeyMismatch,
    /// The file starts with a CA's certificate, not the server's own.
    #[error(
        "the first certificate in the file is a CA's (`{subject}`), not the server's own{}",
        match position { Some(n) => format!("; the key belongs to certificate number {n} in the file"), None => String::new() }
    )]
    LeafNotFirst {
        subject: String,
        position: Option<usize>,
    },
    /// A key protected by a passphrase, which a server cannot ask for.
    #[error("the key is encrypted with a passphrase (`{0}`)")]
    KeyEncrypted(String),
    /// Only a Common Name: no subjectAltName, which clients read instead.
    #[error(
        "the certificate has no subjectAltName, only the Common Name `{common_name}`: modern clients ignore the CN, so it covers no name, `{domain}` neither"
    )]
    NoSubjectAltName { domain: String, common_name: String },
    #[error("the certificate does not cover `{domain}`; it is for: {names}")]
    WrongDomain { domain: String, names: String },
    #[error("the certificate expired on {0}")]
    Expired(String),
    #[error("the certificate is not valid before {0}")]
    NotYetValid(String),
}

/// Checks that `certificate` (a PEM chain, leaf first) and `key` belong
/// together, cover `domain` and are valid at `now`.
pub fn check_pair(
    certificate: &[u8],
    key: &[u8],
    domain: &str,
    now: OffsetDateTime,
) -> Result<CertificateInfo, CertificateError> {
    let leaf = leaf(certificate)?;
    let (_, parsed) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| CertificateError::CertificateInvalid(e.to_string()))?;
    match check_key(&parsed, key) {
        Err(CertificateError::KeyMismatch) if parsed.is_ca() => {
            return Err(CertificateError::LeafNotFirst {
                subject: parsed.subject().to_string(),
                position: key_owner(certificate, key),
            });
        }
        result => result?,
    }
    check_leaf(&parsed, domain, now)
}

/// The place (from 1) of the certificate in the file that `key` belongs to.
fn key_owner(certificate: &[u8], key: &[u8]) -> Option<usize> {
    (CertificateDer::pem_slice_iter(certificate).flatten())
        .position(|der| {
            X509Certificate::from_der(der.as_ref())
                .is_ok_and(|(_, parsed)| check_key(&parsed, key).is_ok())
        })
        .map(|index| index + 1)
}

impl CertificateError {
    /// How to fix it, for the key file `key`.
    pub fn hint(&self, key: &std::path::Path) -> String {
        match self {
            Self::LeafNotFirst { .. } => "put the server's own certificate first, then the intermediates (`cat server.crt intermediate.crt > fullchain.crt`); the CA's own certificate is not needed".into(),
            Self::KeyEncrypted(_) => {
                let key = key.display();
                format!("decrypt it into a file only root can read: `(umask 077; openssl pkey -in {key} -out {key}.plain)` (it asks for the passphrase), then pass `--ssl-key {key}.plain`")
            }
            Self::NoSubjectAltName { domain, .. } => format!("have the certificate issued again with the name in subjectAltName (`openssl req ... -addext \"subjectAltName=DNS:{domain}\"`), or use --self-signed for a test install"),
            Self::KeyMismatch => "give the private key the certificate was issued for (`openssl x509 -noout -pubkey -in` the certificate and `openssl pkey -pubout -in` the key must print the same)".into(),
            _ => "give a certificate for this domain (a full chain, leaf first) and its own private key, both PEM".into(),
        }
    }
}

/// Checks `certificate` alone (a PEM chain, leaf first): it parses, covers
/// `domain` and is valid at `now`; its key is checked by [`check_pair`].
pub fn check_certificate(
    certificate: &[u8],
    domain: &str,
    now: OffsetDateTime,
) -> Result<CertificateInfo, CertificateError> {
    let leaf = leaf(certificate)?;
    let (_, parsed) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| CertificateError::CertificateInvalid(e.to_string()))?;
    check_leaf(&parsed, domain, now)
}

fn leaf(certificate: &[u8]) -> Result<CertificateDer<'static>, CertificateError> {
    CertificateDer::pem_slice_iter(certificate)
        .next()
        .and_then(Result::ok)
        .ok_or(CertificateError::CertificateNotPem)
}

fn check_leaf(
    parsed: &X509Certificate<'_>,
    domain: &str,
    now: OffsetDateTime,
) -> Result<CertificateInfo, CertificateError> {
    let names = dns_names(parsed);
    if names.is_empty()
        && let Some(common_name) = (parsed.subject().iter_common_name())
            .find_map(|name| name.as_str().ok().map(String::from))
    {
        return Err(CertificateError::NoSubjectAltName {
            domain: domain.into(),
            common_name,
        });
    }
    if !names.iter().any(|name| covers(name, domain)) {
        return Err(CertificateError::WrongDomain {
            domain: domain.into(),
            names: if names.is_empty() {
                "no DNS names".into()
            } else {
                names.join(", ")
            },
        });
    }
    let validity = parsed.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    if now < not_before {
        return Err(CertificateError::NotYetValid(date(not_before)));
    }
    if now > not_after {
        return Err(CertificateError::Expired(date(not_after)));
    }
    Ok(CertificateInfo {
        names,
        not_after,
        days_left: (not_after - now).whole_days(),
    })
}

fn check_key(certificate: &X509Certificate<'_>, key: &[u8]) -> Result<(), CertificateError> {
    let text = String::from_utf8_lossy(key);
    let encrypted = ["BEGIN ENCRYPTED PRIVATE KEY", "Proc-Type: 4,ENCRYPTED"]
        .into_iter()
        .find(|marker| text.contains(marker));
    if let Some(marker) = encrypted {
        return Err(CertificateError::KeyEncrypted(marker.to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| CertificateError::KeyNotPem)?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertificateError::KeyUnsupported(e.to_string()))?;
    let public = signing_key.public_key().ok_or_else(|| {
        CertificateError::KeyUnsupported("its public half cannot be derived".into())
    })?;
    if public.as_ref() == certificate.public_key().raw {
        Ok(())
    } else {
        Err(CertificateError::KeyMismatch)
    }
}

/// The DNS names in a certificate's subject alternative names, lower-cased.
pub fn dns_names(certificate: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(extension)) = certificate.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Whether the certificate name `pattern` (maybe `*.example.com`) covers `domain`.
pub fn covers(pattern: &str, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(parent) => domain
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == domain,
    }
}

fn date(moment: OffsetDateTime) -> String {
    moment.date().to_string()
}

/// A self-signed certificate and key (PEM) for `domain`, valid from
/// `not_before` to `not_after`.
pub fn self_signed(
    domain: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("an ECDSA key can be generated");
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
        .expect("a checked domain is a valid subject name");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "stackinstall self-signed");
    params.not_before = not_before;
    params.not_after = not_after;
    let certificate = params
        .self_signed(&key)
        .expect("a self-signed certificate can be made");
    (certificate.pem(), key.serialize_pem())
}

/// A self-signed pair for `domain`, valid for a year from now.
pub fn self_signed_for_a_year(domain: &str) -> (String, String) {
    let now = OffsetDateTime::now_utc();
    self_signed(domain, now - Duration::days(1), now + Duration::days(365))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn a_generated_pair_is_valid_for_its_domain() {
        let (certificate, key) = self_signed_for_a_year("portal.example.com");
        let info = check_pair(
            certificate.as_bytes(),
            key.as_bytes(),
            "portal.example.com",
            now(),
        )
        .unwrap();
        assert_eq!(info.names, ["portal.example.com"]);
        assert!(info.days_left >= 364);
    }

    #[test]
    fn every_failure_is_named() {
        let (certificate, key) = self_signed_for_a_year("portal.example.com");
        let (_, other_key) = self_signed_for_a_year("portal.example.com");
        let check = |c: &str, k: &str, d: &str| {
            check_pair(c.as_bytes(), k.as_bytes(), d, now()).unwrap_err()
        };
        assert_eq!(
            check("hello", &key, "portal.example.com"),
            CertificateError::CertificateNotPem
        );
        assert_eq!(
            check(&certificate, "hello", "portal.example.com"),
            CertificateError::KeyNotPem
        );
        assert_eq!(
            check(&certificate, &other_key, "portal.example.com"),
            CertificateError::KeyMismatch
        );
        assert!(matches!(
            check(&certificate, &key, "other.example.com"),
            CertificateError::WrongDomain { .. }
        ));
        let past = now() - Duration::days(400);
        let (old, old_key) = self_signed("portal.example.com", past, past + Duration::days(90));
        assert!(matches!(
            check(&old, &old_key, "portal.example.com"),
            CertificateError::Expired(_)
        ));
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "portal.example.com"));
        assert!(!covers("*.example.com", "a.portal.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("portal.example.com", "PORTAL.example.com"));
    }
}
