//! `doctor --bundle FILE.tar.gz`: what a person helping from afar needs,
//! every text redacted of the known secrets (the credentials file's
//! passwords, taken from its raw text when it does not parse) and of the
//! values of secret-named keys and URL user-info whatever the source
//! (`crate::secret::redact_by_name`): the report, the state, the effective configuration, the run
//! logs, `kubectl get`/`describe` of the namespaces, the events, `istioctl
//! analyze` and `proxy-status` when istioctl is there, and the versions.
//! Secrets' data is never asked for.

use std::path::Path;

use super::Inputs;
use super::report::Report;
use crate::host::{self, Command, CommandError, FileError, kube};
use crate::secret::{Secret, redact, redact_by_name};

/// Where the runs' logs are.
const LOG_DIR: &str = "/var/log/stackinstall";

/// The resources `get` lists per namespace.
const LISTED: &str = "all,pvc,gateways.networking.istio.io,virtualservices.networking.istio.io,destinationrules.networking.istio.io,peerauthentications.security.istio.io";

/// What a written bundle holds.
pub struct Written {
    pub names: Vec<String>,
    /// Whether any secret was known to redact (else only the name
    /// patterns and URL user-info were masked).
    pub knew_secrets: bool,
}

/// Collects the bundle and writes it to `path`.
pub fn write(path: &Path, inputs: &Inputs, report: &Report) -> Result<Written, FileError> {
    let knew_secrets = learn_raw_secrets(inputs) || crate::secret::known_count() > 0;
    let entries = collect(inputs, report);
    host::archive::write_tar_gz(path, &entries)?;
    Ok(Written {
        names: entries.into_iter().map(|(name, _)| name).collect(),
        knew_secrets,
    })
}

/// Adds the passwords of the credentials file's raw text to the known
/// secrets, also when it does not parse; returns whether it found any.
fn learn_raw_secrets(inputs: &Inputs) -> bool {
    let path = inputs.host.path(crate::credentials::CREDENTIALS_PATH);
    let Ok(Some(text)) = host::fs::read_own_optional(&path) else {
        return false;
    };
    let secrets = crate::credentials::raw_secrets(&text);
    for secret in &secrets {
        Secret::new(secret.clone());
    }
    !secrets.is_empty()
}

/// Every entry of the bundle, redacted.
pub fn collect(inputs: &Inputs, report: &Report) -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<(String, String)> = vec![
        ("doctor.txt".into(), report.text()),
        ("doctor.json".into(), report.json()),
        (
            "configuration.toml".into(),
            toml::to_string(&inputs.config).unwrap_or_else(|e| e.to_string()),
        ),
    ];
    let state =
        host::fs::read_optional(&inputs.host.path(crate::state::STATE_DIR).join("state.toml"));
    entries.push((
        "state.toml".into(),
        match state {
            Ok(Some(text)) => text,
            Ok(None) => "(no state file: nothing installed yet)\n".into(),
            Err(error) => format!("(unreadable: {error})\n"),
        },
    ));
    match host::archive::read_files_in(&inputs.host.path(LOG_DIR)) {
        Ok(files) => entries.extend(
            files
                .into_iter()
                .map(|(name, text)| (format!("logs/{name}"), text)),
        ),
        Err(error) => entries.push(("logs/not-read.txt".into(), format!("{error}\n"))),
    }
    entries.extend(cluster_entries(inputs));
    entries.push(("versions.txt".into(), versions(inputs)));
    entries
        .into_iter()
        .map(|(name, text)| (name, redact(&redact_by_name(&text)).into_bytes()))
        .collect()
}

/// What a command printed (stdout, then stderr), or why it could not run.
fn output_of(command: Command) -> String {
    match command.run_unchecked() {
        Ok(output) => format!("$ {command}\n{}{}", output.stdout, output.stderr),
        Err(error) => format!("$ {command}\n(could not run: {error})\n"),
    }
}

fn cluster_entries(inputs: &Inputs) -> Vec<(String, String)> {
    let limit = inputs.limit;
    let mut entries = Vec::new();
    for namespace in [inputs.config.cluster.namespace.as_str(), "istio-system"] {
        let get = kube::kubectl(["get", LISTED, "-n", namespace, "-o", "wide"]).timeout(limit);
        entries.push((format!("cluster/{namespace}/get.txt"), output_of(get)));
        let describe = kube::kubectl([
            "describe",
            "pods,deployments,services,pvc,jobs",
            "-n",
            namespace,
        ])
        .timeout(limit);
        entries.push((
            format!("cluster/{namespace}/describe.txt"),
            output_of(describe),
        ));
    }
    let events = kube::kubectl([
        "get",
        "events",
        "--all-namespaces",
        "--sort-by=.lastTimestamp",
    ])
    .timeout(limit);
    entries.push(("cluster/events.txt".into(), output_of(events)));
    entries.push((
        "cluster/nodes.txt".into(),
        output_of(kube::kubectl(["describe", "nodes"]).timeout(limit)),
    ));
    for (name, args) in [
        ("analyze", vec!["analyze", "--all-namespaces"]),
        ("proxy-status", vec!["proxy-status"]),
    ] {
        let command = kube::istioctl(args).timeout(limit);
        match command.run_unchecked() {
            Err(CommandError::NotFound { .. }) => {}
            Ok(output) => entries.push((
                format!("istio/{name}.txt"),
                format!("$ {command}\n{}{}", output.stdout, output.stderr),
            )),
            Err(error) => entries.push((
                format!("istio/{name}.txt"),
                format!("$ {command}\n(could not run: {error})\n"),
            )),
        }
    }
    entries
}

fn versions(inputs: &Inputs) -> String {
    let limit = inputs.limit;
    let mut text = format!(
        "stackinstall {}\nprofile {}\n\n",
        env!("CARGO_PKG_VERSION"),
        inputs.config.name
    );
    let commands = [
        kube::kubectl(["version", "-o", "json"]),
        kube::helm(["version", "--short"]),
        kube::istioctl(["version", "--remote=false"]),
        Command::new("k3s").arg("--version"),
    ];
    for command in commands {
        text.push_str(&output_of(command.timeout(limit)));
        text.push('\n');
    }
    text
}
