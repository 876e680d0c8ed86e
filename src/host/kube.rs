//! Kubernetes through `kubectl` (and `helm`) found on PATH, always with the
//! kubeconfig K3s writes. Manifests go on stdin, never in argv.

use std::time::Duration;

use super::command::{Command, CommandError};

/// Where K3s writes its kubeconfig (readable thanks to `--write-kubeconfig-mode`).
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";

const TIMEOUT: Duration = Duration::from_secs(120);

/// A `kubectl` command with the cluster's kubeconfig.
pub fn kubectl<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("kubectl")
        .env("KUBECONFIG", KUBECONFIG)
        .args(args)
        .timeout(TIMEOUT)
}

/// A `helm` command with the cluster's kubeconfig.
pub fn helm<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("helm")
        .env("KUBECONFIG", KUBECONFIG)
        .args(args)
        .timeout(Duration::from_secs(900))
}

/// `kubectl apply -f -` with `manifest` (no secret in it) on stdin.
pub fn apply(manifest: &str) -> Command {
    kubectl(["apply", "-f", "-"]).stdin_text(manifest)
}

/// The object as JSON, or `None` when it does not exist.
pub fn get_json(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<Option<serde_json::Value>, CommandError> {
    let mut args = vec!["get", kind, name, "-o", "json", "--ignore-not-found"];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    let command = kubectl(args);
    let output = command.run()?;
    if output.stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&output.stdout)
        .map(Some)
        .map_err(|error| CommandError::Failed {
            command: command.to_string(),
            status: "output that is not JSON".into(),
            stderr_tail: error.to_string(),
        })
}
