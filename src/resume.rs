//! Resuming an install whose inputs were asked for on a terminal: the
//! command line that does the same without questions (shown before
//! `Proceed?` and in a failure's hint; it never holds a secret, since no
//! flag of the install is one), and the last run's inputs, kept in
//! `/var/lib/stackinstall/last-install.toml` so that a bare re-run on a
//! terminal offers them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::InstallArgs;
use crate::config::Flags;
use crate::host::{self, FileError, Host};
use crate::state::STATE_DIR;

/// Where the last run's inputs are kept (root's, 0600: the paths of the
/// operator's key are nobody else's business).
pub const LAST_INPUTS: &str = "/var/lib/stackinstall/last-install.toml";

/// The inputs a terminal asks for when they are missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub domain: Option<String>,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    #[serde(default)]
    pub self_signed: bool,
}

impl Inputs {
    /// The inputs of `flags` (the answers already in them), paths made
    /// absolute so that a re-run from another directory finds the files.
    pub fn of(flags: &Flags) -> Self {
        let absolute = |path: &PathBuf| match path.is_absolute() {
            true => path.clone(),
            false => std::env::current_dir().unwrap_or_default().join(path),
        };
        Self {
            domain: flags.domain.clone(),
            ssl_cert: flags.ssl_cert.as_ref().map(absolute),
            ssl_key: flags.ssl_key.as_ref().map(absolute),
            self_signed: flags.self_signed,
        }
    }

    /// Whether there is anything to offer: a domain.
    pub fn is_empty(&self) -> bool {
        self.domain.is_none()
    }

    /// These inputs as the flags that give them.
    pub fn flags(&self) -> String {
        let mut words = Vec::new();
        let mut flag = |name: &str, value: Option<&Path>| {
            words.push(format!("--{name}"));
            words.extend(value.map(|value| quote(&value.display().to_string())));
        };
        if let Some(domain) = &self.domain {
            flag("domain", Some(Path::new(domain)));
        }
        if let Some(certificate) = &self.ssl_cert {
            flag("ssl-cert", Some(certificate));
        }
        if let Some(key) = &self.ssl_key {
            flag("ssl-key", Some(key));
        }
        if self.self_signed {
            flag("self-signed", None);
        }
        words.join(" ")
    }

    /// Puts these inputs into `flags` where they set nothing.
    pub fn fill(&self, flags: &mut Flags) {
        if flags.domain.is_none() {
            flags.domain.clone_from(&self.domain);
        }
        let no_certificate = !flags.self_signed && flags.ssl_cert.is_none();
        if no_certificate && flags.ssl_key.is_none() {
            flags.ssl_cert.clone_from(&self.ssl_cert);
            flags.ssl_key.clone_from(&self.ssl_key);
            flags.self_signed = self.self_signed;
        }
    }

    /// The last run's inputs on `host`; `None` when none were kept or the
    /// file cannot be read as such (it is only an offer).
    pub fn load(host: &Host) -> Option<Self> {
        let text = host::fs::read_optional(&host.path(LAST_INPUTS)).ok()??;
        toml::from_str(&text).ok()
    }

    /// Keeps these inputs as the last run's (atomically, 0600).
    pub fn save(&self, host: &Host) -> Result<(), FileError> {
        host::fs::ensure_private_dir(&host.path(STATE_DIR))?;
        let body = toml::to_string(self).expect("inputs serialize to TOML");
        let text = format!(
            "# The inputs of the last `stackinstall install`: a bare re-run on a terminal offers them.\n{body}"
        );
        host::fs::write_atomic(&host.path(LAST_INPUTS), text.as_bytes(), 0o600)
    }
}

/// The command line that runs this install again without its questions:
/// the flags given and the answers, as an operator would type them.
pub fn command_line(args: &InstallArgs, flags: &Flags) -> String {
    let mut words: Vec<String> = vec!["sudo stackinstall install".into()];
    let mut flag = |name: &str, value: Option<String>| {
        words.push(format!("--{name}"));
        words.extend(value.map(|value| quote(&value)));
    };
    if let Some(profile) = &args.config.profile {
        flag("profile", Some(profile.clone()));
    }
    if let Some(config) = &args.config.config {
        flag("config", Some(config.display().to_string()));
    }
    for (set, name) in [(flags.skip_infra, "skip-infra"), (flags.skip_db, "skip-db")] {
        if set {
            flag(name, None);
        }
    }
    if let Some(kubeconfig) = &args.kubeconfig {
        flag("kubeconfig", Some(kubeconfig.display().to_string()));
    }
    if let Some(profile) = &flags.aws_profile {
        flag("aws-profile", Some(profile.clone()));
    }
    if !args.only.is_empty() {
        flag("only", Some(args.only.join(",")));
    }
    if let Some(from) = &args.from {
        flag("from", Some(from.clone()));
    }
    for redo in &args.redo {
        flag("redo", Some(redo.clone()));
    }
    if args.jobs != 4 {
        flag("jobs", Some(args.jobs.to_string()));
    }
    let inputs = Inputs::of(flags).flags();
    if !inputs.is_empty() {
        words.insert(1, inputs);
    }
    words.join(" ")
}

/// `value` as a POSIX shell reads it back: as it is when it holds only
/// characters a shell leaves alone, else in single quotes.
fn quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_a_shell_would_split_are_quoted() {
        assert_eq!(quote("/etc/tls/a.pem"), "/etc/tls/a.pem");
        assert_eq!(quote("/srv/my cert.pem"), "'/srv/my cert.pem'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
