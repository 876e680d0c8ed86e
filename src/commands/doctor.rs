//! `stackinstall doctor`: looks at the installed host, read-only, for the
//! runbooks' failure classes and prints each finding with its evidence and
//! fix; `--bundle` also writes a support bundle. Exit 1 with errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Result;

use crate::cli::{DoctorArgs, Output};
use crate::config::{Config, Flags};
use crate::context::SELF_SIGNED_DIR;
use crate::credentials::CredentialsFile;
use crate::doctor::{self, Inputs};
use crate::error::StepError;
use crate::host::{self, Host};
use crate::secret::redact;
use crate::state::StateFile;

/// Doctor found errors (the report says which).
#[derive(Debug, thiserror::Error)]
#[error("doctor found {errors} error(s) and {warnings} warning(s): each above names its fix")]
pub struct Findings {
    pub errors: usize,
    pub warnings: usize,
}

/// Runs `doctor`.
pub fn run(root: &Path, args: DoctorArgs) -> Result<()> {
    let flags = Flags {
        domain: args.domain.clone(),
        ..Flags::default()
    };
    let config = super::load_config(&args.config, flags)?;
    let host = Host::new(root);
    let inputs = inputs(config, host, &args)?;
    let report = doctor::diagnose(inputs.clone());
    if let Some(path) = &args.bundle {
        let written = doctor::bundle::write(path, &inputs, &report)?;
        let redacted = match written.knew_secrets {
            true => "secrets redacted",
            false => {
                "no known secret to redact (no readable credentials file): only values of password, secret, token and key names and URL user-info were masked; read it before you send it"
            }
        };
        crate::errln!(
            "support bundle `{}`: {} files, {redacted}",
            path.display(),
            written.names.len()
        );
    }
    // Evidence quotes logs and messages: shown redacted of every password.
    match args.output {
        Output::Json => crate::outln!("{}", redact(&report.json())),
        Output::Text => crate::out!("{}", redact(&report.text())),
    }
    if report.errors > 0 {
        let findings = Findings {
            errors: report.errors,
            warnings: report.warnings,
        };
        return Err(anyhow::Error::from(findings).into());
    }
    Ok(())
}

/// What the checks look at, from the flags, the configuration and the host.
pub fn inputs(config: Config, host: Host, args: &DoctorArgs) -> Result<Inputs, StepError> {
    let domain = config.install.domain.clone();
    if args.timeout_seconds == 0 {
        return Err(StepError::input(
            "`--timeout-seconds` must be at least 1",
            "the default, 20, suits most hosts",
        ));
    }
    let credentials = CredentialsFile::new(&host, &super::home_dir())
        .load()
        .map_err(|error| error.to_string())
        .and_then(|loaded| {
            loaded.ok_or_else(|| {
                "there is no credentials file yet (the `credentials` step has not run)".to_string()
            })
        });
    let state = StateFile::new(&host).load().ok();
    let recorded = state.as_ref().and_then(|s| s.facts.kubeconfig.clone());
    crate::host::kube::use_kubeconfig(recorded.as_deref());
    let installed_steps =
        (state.map(|state| state.steps.into_keys().collect())).unwrap_or_default();
    let certificate = certificate(&config, &host, args.ssl_cert.clone());
    Ok(Inputs {
        config,
        credentials,
        installed_steps,
        domain,
        certificate,
        limit: Duration::from_secs(args.timeout_seconds),
        areas: args.checks.iter().map(|area| area.name()).collect(),
        host,
    })
}

/// The installed certificate: `--ssl-cert`, the configuration's, or the
/// self-signed one when it is there.
fn certificate(config: &Config, host: &Host, flag: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(path) = flag.or_else(|| config.install.ssl_cert.clone()) {
        return Some(path);
    }
    let self_signed = host.path(SELF_SIGNED_DIR).join("tls.crt");
    host::fs::read_optional(&self_signed)
        .ok()
        .flatten()
        .map(|_| self_signed)
}
