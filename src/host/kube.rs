//! Kubernetes through `kubectl` (and `helm`) found on PATH, with the
//! kubeconfig K3s writes, or the operator's cluster's (`--skip-infra
//! --kubeconfig FILE`, recorded by the install and used by every command
//! after it: [`use_kubeconfig`]). Manifests go on stdin, never in argv.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use super::command::{Command, CommandError};

/// Where K3s writes its kubeconfig (mode 0600: the tool runs as root).
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";

/// The kubeconfig children get when it is not K3s's.
static IN_USE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Makes every `kubectl`, `helm` and `istioctl` of this process use the
/// kubeconfig `path` (`None`: K3s's).
pub fn use_kubeconfig(path: Option<&Path>) {
    let mut in_use = IN_USE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *in_use = path.map(Path::to_path_buf);
}

/// The kubeconfig children get: the one in use, else K3s's.
pub fn kubeconfig() -> PathBuf {
    let in_use = IN_USE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    in_use.clone().unwrap_or_else(|| PathBuf::from(KUBECONFIG))
}

const TIMEOUT: Duration = Duration::from_secs(120);

/// A `kubectl` command with the cluster's kubeconfig.
pub fn kubectl<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig().display().to_string())
        .args(args)
        .timeout(TIMEOUT)
}

/// A `helm` command with the cluster's kubeconfig.
pub fn helm<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("helm")
        .env("KUBECONFIG", kubeconfig().display().to_string())
        .args(args)
        .timeout(Duration::from_secs(900))
}

/// `KEY=VALUE` for `helm --set-string`, the value escaped for Helm's
/// parser (helm `pkg/strvals/parser.go`: `\\` takes the next character as
/// it is, an unescaped `,` starts the next `KEY=VALUE` and a leading `{`
/// a list), so that it arrives as one string whatever it holds.
pub fn set_string(key: &str, value: &str) -> String {
    let mut pair = format!("{key}=");
    for character in value.chars() {
        if matches!(character, '\\' | ',' | '{') {
            pair.push('\\');
        }
        pair.push(character);
    }
    pair
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

/// The objects of several kinds in `namespace`, in one `kubectl get
/// KIND,KIND -o json`: per kind, as `(asked, kind)` (`("pvc",
/// "PersistentVolumeClaim")`), a list `{"items": [...]}`. The output is not
/// logged (pods hold their environment). Read now (a wait polls it).
pub fn list_kinds<const N: usize>(
    kinds: [(&str, &str); N],
    namespace: &str,
) -> Result<[serde_json::Value; N], CommandError> {
    let asked = kinds.map(|(asked, _)| asked).join(",");
    let command = kubectl(["get", &asked, "-n", namespace, "-o", "json"]).unlogged_stdout();
    let output = command.run()?;
    let found = items(&command, &output.stdout)?;
    Ok(kinds.map(|(_, kind)| {
        let of_kind: Vec<_> = (found.iter())
            .filter(|object| object["kind"] == kind)
            .cloned()
            .collect();
        serde_json::json!({ "items": of_kind })
    }))
}

/// The objects of a `kubectl get ... -o json` output: a List's items, one
/// object, or none (empty output).
fn items(command: &Command, stdout: &str) -> Result<Vec<serde_json::Value>, CommandError> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(stdout).map_err(|error| CommandError::Failed {
            command: command.to_string(),
            status: "output that is not JSON".into(),
            stderr_tail: error.to_string(),
        })?;
    Ok(match value["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![value],
    })
}

/// One field of an object (a `jsonpath` like `{.metadata.annotations.x}`);
/// `None` when the object or the field is missing. Reads nothing else of
/// the object, so a Secret's data never reaches this process.
pub fn get_field(
    kind: &str,
    name: &str,
    namespace: &str,
    jsonpath: &str,
) -> Result<Option<String>, CommandError> {
    let template = format!("jsonpath={jsonpath}");
    let output = kubectl([
        "get",
        kind,
        name,
        "-n",
        namespace,
        "-o",
        &template,
        "--ignore-not-found",
    ])
    .run()?;
    let value = output.stdout.trim();
    Ok((!value.is_empty()).then(|| value.to_string()))
}

/// `kubectl apply --server-side` of a manifest holding a secret, on stdin.
/// Server-side apply keeps no `last-applied-configuration` annotation, so
/// the secret is not copied into the object's metadata.
pub fn apply_secret(manifest: crate::secret::Secret) -> Command {
    kubectl([
        "apply",
        "--server-side",
        "--field-manager=stackinstall",
        "--force-conflicts",
        "-f",
        "-",
    ])
    .stdin_secret(manifest)
}

/// `kubectl delete KIND NAME [-n NAMESPACE] --ignore-not-found`.
pub fn delete(kind: &str, name: &str, namespace: Option<&str>) -> Command {
    let mut args = vec!["delete", kind, name, "--ignore-not-found"];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    kubectl(args)
}

/// Whether the live object has every field of `wanted` with the same value
/// (fields the server adds are ignored; lists must have the same length).
pub fn has_fields(live: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => wanted
            .iter()
            .all(|(key, value)| live.get(key).is_some_and(|found| has_fields(found, value))),
        (Value::Array(live), Value::Array(wanted)) => {
            live.len() == wanted.len()
                && live
                    .iter()
                    .zip(wanted)
                    .all(|(found, value)| has_fields(found, value))
        }
        (live, wanted) => live == wanted,
    }
}

/// The objects of a YAML manifest (one or more documents), as JSON values.
pub fn manifest_objects(manifest: &str) -> Result<Vec<serde_json::Value>, serde_yaml_ng::Error> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(manifest)
        .map(serde_json::Value::deserialize)
        .filter(|object| !matches!(object, Ok(serde_json::Value::Null)))
        .collect()
}

/// An `istioctl` command with the cluster's kubeconfig.
pub fn istioctl<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("istioctl")
        .env("KUBECONFIG", kubeconfig().display().to_string())
        .args(args)
}

/// How many nodes are Ready, of how many, read now (a wait polls it;
/// `cluster::nodes_ready` reads the run's snapshot): of the node `this`
/// when the cluster has it (this host's), else of every node; `None` when
/// the API does not answer or there is no node.
pub fn nodes_ready(this: &str) -> Result<Option<(usize, usize)>, CommandError> {
    let output = kubectl(["get", "nodes", "-o", "json"]).run_unchecked()?;
    if !output.success() {
        return Ok(None);
    }
    let Ok(list) = serde_json::from_str::<serde_json::Value>(&output.stdout) else {
        return Ok(None);
    };
    let nodes = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(ready_of(nodes.iter(), this))
}

/// How many of `nodes` are Ready, of how many: `this` alone when it is one
/// of them, else all; `None` when there is none.
pub(super) fn ready_of<'a>(
    nodes: impl Iterator<Item = &'a serde_json::Value> + Clone,
    this: &str,
) -> Option<(usize, usize)> {
    let mine = nodes.clone().find(|node| node["metadata"]["name"] == this);
    let counted: Vec<bool> = match mine {
        Some(node) => vec![is_ready(node)],
        None => nodes.map(is_ready).collect(),
    };
    let ready = counted.iter().filter(|ready| **ready).count();
    (!counted.is_empty()).then_some((ready, counted.len()))
}

fn is_ready(node: &serde_json::Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
        })
}

/// One line of `helm history -o json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Revision {
    pub revision: u64,
    pub status: String,
    #[serde(default)]
    pub description: String,
}

/// The revisions of Helm release `release` in `namespace`, oldest first;
/// empty when there is no such release.
pub fn history(release: &str, namespace: &str) -> Result<Vec<Revision>, CommandError> {
    let command = helm([
        "history",
        "--namespace",
        namespace,
        "--max",
        "20",
        "--output",
        "json",
        "--",
        release,
    ])
    .timeout(Duration::from_secs(60));
    let output = command.run_unchecked()?;
    if !output.success() {
        // Helm says "not found" only in words: whether the release is
        // there at all comes from `helm list`, which prints JSON.
        // (When that fails too, the history's own error says why.)
        if let Ok(false) = release_exists(release, namespace) {
            return Ok(Vec::new());
        }
        return Err(command.failure(&output));
    }
    let mut revisions: Vec<Revision> =
        serde_json::from_str(&output.stdout).map_err(|error| CommandError::Failed {
            command: command.to_string(),
            status: format!("output that is not its JSON ({error}); Helm 3 is needed"),
            stderr_tail: String::new(),
        })?;
    revisions.sort_by_key(|revision| revision.revision);
    Ok(revisions)
}

/// Whether Helm has release `release` in `namespace`, in any status
/// (`helm list --all --filter '^NAME$' -o json`: an empty list when not).
fn release_exists(release: &str, namespace: &str) -> Result<bool, CommandError> {
    let filter = format!("^{}$", regex_escaped(release));
    let command = helm([
        "list",
        "--all",
        "--namespace",
        namespace,
        "--filter",
        &filter,
        "--output",
        "json",
    ])
    .timeout(Duration::from_secs(60));
    let output = command.run()?;
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&output.stdout).map_err(|error| CommandError::Failed {
            command: command.to_string(),
            status: format!("output that is not its JSON ({error})"),
            stderr_tail: String::new(),
        })?;
    Ok(listed.iter().any(|entry| entry["name"] == release))
}

/// `name` with the characters a regular expression gives a meaning to
/// escaped (a release name is lowercase letters, digits, `-` and `.`).
fn regex_escaped(name: &str) -> String {
    name.chars()
        .flat_map(|c| match c.is_ascii_alphanumeric() || c == '-' {
            true => vec![c],
            false => vec!['\\', c],
        })
        .collect()
}

/// What brings Helm release `release` in `namespace`, stuck `pending-*`,
/// back to a state Helm can upgrade.
pub fn recovery(release: &str, namespace: &str, revisions: &[Revision]) -> Option<Command> {
    let latest = revisions.last()?;
    let last_good = revisions
        .iter()
        .rev()
        .find(|r| r.status == "deployed" || r.status == "superseded");
    let uninstall = || {
        helm([
            "uninstall",
            "--namespace",
            namespace,
            "--wait",
            "--",
            release,
        ])
    };
    match (latest.status.as_str(), last_good) {
        ("pending-install", _) => Some(uninstall()),
        ("pending-upgrade" | "pending-rollback", Some(good)) => Some(helm([
            "rollback",
            "--namespace",
            namespace,
            "--wait",
            "--",
            release,
            &good.revision.to_string(),
        ])),
        ("pending-upgrade" | "pending-rollback", None) => Some(uninstall()),
        _ => None,
    }
}

/// Whether the Kubernetes API answers: `kubectl version -o json` prints
/// the server's version only when it does (the client's either way).
pub fn cluster_answers() -> bool {
    let command = kubectl(["version", "-o", "json", "--request-timeout=10s"])
        .timeout(Duration::from_secs(30));
    let Ok(output) = command.run_unchecked() else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&output.stdout)
        .is_ok_and(|version| version.get("serverVersion").is_some_and(|v| v.is_object()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(revision: u64, status: &str) -> Revision {
        Revision {
            revision,
            status: status.into(),
            description: String::new(),
        }
    }

    #[test]
    fn pending_install_is_uninstalled() {
        let command = recovery("stackbill", "sb-apps", &[revision(1, "pending-install")]).unwrap();
        assert_eq!(
            command.to_string(),
            "helm uninstall --namespace sb-apps --wait -- stackbill"
        );
    }

    #[test]
    fn pending_upgrade_rolls_back_to_the_last_deployed_revision() {
        let revisions = [
            revision(1, "superseded"),
            revision(2, "deployed"),
            revision(3, "pending-upgrade"),
        ];
        let command = recovery("stackbill", "sb-apps", &revisions).unwrap();
        assert_eq!(
            command.to_string(),
            "helm rollback --namespace sb-apps --wait -- stackbill 2"
        );
        assert!(
            recovery("stackbill", "sb-apps", &revisions[..2]).is_none(),
            "a deployed release needs no recovery"
        );
    }
}
#[cfg(test)]
#[allow(clippy::disallowed_macros)]
mod set_string_tests {
    use super::set_string;

    /// Helm's reading of one `--set-string` argument (`parser.go`'s
    /// `key`, `valList` and `val`, for flat keys): the values it sets.
    fn helm_reads(argument: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut characters = argument.chars();
        loop {
            let key: String = characters.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() {
                return pairs;
            }
            let mut value = String::new();
            let mut list = false;
            while let Some(character) = characters.next() {
                match character {
                    '{' if value.is_empty() && !list => list = true,
                    ',' => break,
                    '\\' => value.extend(characters.next()),
                    other => value.push(other),
                }
            }
            pairs.push((
                key,
                if list {
                    format!("[list] {value}")
                } else {
                    value
                },
            ));
        }
    }

    #[test]
    fn a_value_with_commas_braces_or_backslashes_stays_one_string() {
        let mut tried = 0;
        for value in [
            "/data/stackbill",
            "/data/x,storageClass.name=evil",
            "{a,b}",
            "back\\slash,",
            "a\\,b",
        ] {
            let argument = set_string("nfs.path", value);
            assert_eq!(
                helm_reads(&argument),
                [("nfs.path".to_string(), value.to_string())],
                "{argument}"
            );
            tried += 1;
        }
        let unescaped = "nfs.path=/data/x,storageClass.name=evil";
        assert_eq!(
            helm_reads(unescaped).len(),
            2,
            "the model splits as Helm does"
        );
        eprintln!("helm --set-string escaping: {tried} values, each read back as one string");
    }
}
