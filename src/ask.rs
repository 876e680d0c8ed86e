//! Questions on a terminal: the inputs an install misses (the domain, then
//! a certificate and key or a self-signed certificate), `Proceed?` before
//! an install changes anything, and a password for `credentials set`.
//!
//! Asked only when standard input and standard error are a terminal (the
//! callers also never ask with `--yes` or `--output json`). Each answer is
//! checked as it is given, with the same checks as the flags, and asked
//! again when it does not pass.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use dialoguer::{Confirm, Input, Password, Select};
use time::OffsetDateTime;

use crate::certificate;
use crate::config::Domain;
use crate::host;
use crate::secret::Secret;

/// Whether someone can be asked: standard input and error are a terminal.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// How the install gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateChoice {
    /// The operator's PEM files, checked to parse, to belong together, to
    /// cover the domain and not to be expired.
    Files { certificate: PathBuf, key: PathBuf },
    /// A self-signed certificate made for the domain.
    SelfSigned,
}

/// Asks for the domain until it parses as one.
pub fn domain() -> dialoguer::Result<Domain> {
    let answer: String = Input::new()
        .with_prompt("Domain the application is reached at (e.g. portal.example.com)")
        .validate_with(|typed: &String| {
            Domain::parse(typed.trim())
                .map(drop)
                .map_err(|why| format!("`{}` is not a valid DNS name: {why}", typed.trim()))
        })
        .interact_text()?;
    // Checked as it was typed: this parse cannot fail.
    Domain::parse(answer.trim())
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why).into())
}

/// Asks whether to use certificate files or a self-signed certificate,
/// then for the files, each checked as it is given.
pub fn certificate(domain: &Domain) -> dialoguer::Result<CertificateChoice> {
    let choice = Select::new()
        .with_prompt(format!("TLS certificate for {domain}"))
        .items([
            "certificate and key files (PEM)",
            "a self-signed certificate (for tests and demos)",
        ])
        .default(0)
        .interact()?;
    if choice == 1 {
        return Ok(CertificateChoice::SelfSigned);
    }
    let now = OffsetDateTime::now_utc();
    let certificate: String = Input::new()
        .with_prompt("Certificate file (PEM, full chain, leaf first)")
        .validate_with(|typed: &String| {
            let bytes = read(typed)?;
            certificate::check_certificate(&bytes, domain, now)
                .map(drop)
                .map_err(|error| format!("`{}`: {error}", typed.trim()))
        })
        .interact_text()?;
    let certificate_bytes = read(&certificate).unwrap_or_default();
    let key: String = Input::new()
        .with_prompt("Its private key file (PEM)")
        .validate_with(|typed: &String| {
            let bytes = read(typed)?;
            certificate::check_pair(&certificate_bytes, &bytes, domain, now)
                .map(drop)
                .map_err(|error| format!("`{}`: {error}", typed.trim()))
        })
        .interact_text()?;
    Ok(CertificateChoice::Files {
        certificate: PathBuf::from(certificate.trim()),
        key: PathBuf::from(key.trim()),
    })
}

fn read(typed: &str) -> Result<Vec<u8>, String> {
    let path = Path::new(typed.trim());
    host::fs::read_bytes(path)
        .map_err(|error| format!("`{}` cannot be read: {}", path.display(), error.source))
}

/// Offers the last install's inputs (`flags`, as typed) for this one.
pub fn same_inputs(flags: &str) -> dialoguer::Result<bool> {
    Confirm::new()
        .with_prompt(format!(
            "The last install was given `{flags}`. The same again?"
        ))
        .default(true)
        .interact()
}

/// Asks `Proceed? [Y/n]`.
pub fn proceed() -> dialoguer::Result<bool> {
    Confirm::new()
        .with_prompt("Proceed?")
        .default(true)
        .interact()
}

/// Offers to write this shell's AWS key as `profile` in root's shared
/// credentials file, where the kubelet's provider and the timer look.
pub fn aws_profile(profile: &str) -> dialoguer::Result<bool> {
    Confirm::new()
        .with_prompt(format!(
            "Write this shell's AWS key to /root/.aws/credentials (0600) as profile `{profile}`?"
        ))
        .default(true)
        .interact()
}

/// Asks for `service`'s password, not echoed, twice.
pub fn password(service: &str) -> dialoguer::Result<Secret> {
    let password = Password::new()
        .with_prompt(format!("Password of the existing {service} account"))
        .with_confirmation("The same again", "the two passwords differ")
        .interact()?;
    Ok(Secret::new(password))
}

/// Asks for a new backup passphrase, not echoed, twice.
pub fn new_passphrase() -> dialoguer::Result<Secret> {
    let passphrase = Password::new()
        .with_prompt("Passphrase to encrypt the backup with")
        .with_confirmation("The same again", "the two passphrases differ")
        .interact()?;
    Ok(Secret::new(passphrase))
}

/// Asks for a backup's passphrase, not echoed, once.
pub fn passphrase() -> dialoguer::Result<Secret> {
    let passphrase = Password::new()
        .with_prompt("Passphrase of the backup")
        .interact()?;
    Ok(Secret::new(passphrase))
}
