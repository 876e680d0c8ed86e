//! The cluster's objects as one `kubectl get` lists them, shared by every
//! step's look and verify in a run: a no-op re-run asks the API server
//! once, not once per object. Stale once a program that may change the
//! cluster has run since (`command::cluster_changes`: an apply, a delete,
//! a Helm upgrade, `istioctl install`, K3s's install script); a wait that
//! polls for the cluster to change by itself reads afresh
//! (`kube::nodes_ready`, the wait step's poll), never from here.
//!
//! Secrets are listed by name with stackinstall's own annotations only
//! ([`SECRET_ANNOTATIONS`]): never their data, nor annotations another
//! tool may have filled with it (client-side `kubectl apply` copies a
//! Secret's data into `kubectl.kubernetes.io/last-applied-configuration`).

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::command::{CommandError, cluster_changes};
use super::kube::kubectl;

/// The annotation of the TLS Secrets: the SHA-256 of the pair they hold.
pub const TLS_SHA256: &str = "stackinstall.io/tls-sha256";
/// The annotations of the ECR pull Secret: when its token was fetched and
/// when it expires.
pub const ECR_FETCHED_AT: &str = "stackinstall/ecr-token-fetched-at";
pub const ECR_EXPIRES_AT: &str = "stackinstall/ecr-token-expires-at";

/// The only annotations of a Secret the snapshot reads.
pub const SECRET_ANNOTATIONS: [&str; 3] = [TLS_SHA256, ECR_FETCHED_AT, ECR_EXPIRES_AT];

/// What the snapshot lists, every namespace: the built-in kinds…
const KINDS: &str =
    "nodes,namespaces,storageclasses,deployments,services,pods,jobs,persistentvolumeclaims,secrets";
/// …and Istio's, whose types exist only once Istio's CRDs are installed.
const ISTIO_KINDS: &str = "gateways.networking.istio.io,virtualservices.networking.istio.io";

/// The kinds of [`ISTIO_KINDS`].
const ISTIO_KIND_NAMES: [&str; 2] = ["Gateway", "VirtualService"];

/// The objects a run looks at, read at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    objects: Vec<Value>,
    /// Whether Istio's kinds could be listed (without its CRDs there can
    /// be no Gateway: none is found).
    istio_listed: bool,
}

/// The last snapshot, and `command::cluster_changes()` when it was read.
static LAST: Mutex<Option<(Arc<Snapshot>, u64)>> = Mutex::new(None);

/// The cluster now, as this run last read it when nothing that may change
/// it has run since, else read again. The lock is held while it is read:
/// steps side by side wait for one read rather than make their own.
/// `Err` when the API does not answer (not kept: the next look asks again).
pub fn snapshot() -> Result<Arc<Snapshot>, CommandError> {
    // A test's host in this process (one of many): nothing to share.
    if super::process::entered().is_some() {
        return Snapshot::read().map(Arc::new);
    }
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((snapshot, changes)) = &*last
        && *changes == cluster_changes()
    {
        return Ok(Arc::clone(snapshot));
    }
    // Counted before the read: a change that ends during it forgets it.
    let changes = cluster_changes();
    let snapshot = Arc::new(Snapshot::read()?);
    *last = Some((Arc::clone(&snapshot), changes));
    Ok(snapshot)
}

/// How many nodes are Ready, of how many, in the run's snapshot: of the
/// node `this` when the cluster has it (this host's), else of every node;
/// `None` when the API does not answer or there is no node yet.
pub fn nodes_ready(this: &str) -> Result<Option<(usize, usize)>, CommandError> {
    match snapshot() {
        Ok(snapshot) => Ok(snapshot.nodes_ready(this)),
        Err(CommandError::Failed { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The cluster's Nodes in the run's snapshot, as a list `{"items": [...]}`;
/// `None` when the API does not answer.
pub fn node_list() -> Result<Option<Value>, CommandError> {
    match snapshot() {
        Ok(snapshot) => Ok(Some(json!({ "items": snapshot.all("Node") }))),
        Err(CommandError::Failed { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Forgets the snapshot: a wait that polls reads what changes by itself,
/// so after it the next look reads the cluster again.
pub fn forget() {
    *LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

impl Snapshot {
    /// One `kubectl get` of every kind; when that fails, the built-in kinds
    /// alone: if they list, the failure was Istio's types not being served
    /// (its CRDs not installed yet), and the snapshot holds no Istio object.
    fn read() -> Result<Self, CommandError> {
        match list(&format!("{KINDS},{ISTIO_KINDS}")) {
            Ok(objects) => Ok(Self {
                objects,
                istio_listed: true,
            }),
            Err(error) => match list(KINDS) {
                Ok(objects) => {
                    tracing::debug!("Istio's kinds are not listed ({error}): no Istio object");
                    Ok(Self {
                        objects,
                        istio_listed: false,
                    })
                }
                Err(_) => Err(shortened(error)),
            },
        }
    }

    /// The snapshot of `objects` (each with its `kind`), for tests.
    pub fn of(objects: Vec<Value>) -> Self {
        Self {
            objects,
            istio_listed: true,
        }
    }

    /// The object `name` of `kind` (its kind or kubectl's singular name,
    /// any case: `deployment`, `StorageClass`) in `namespace` (`None` for
    /// a cluster-scoped kind); `None` when it is not in the cluster.
    pub fn object(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&Value> {
        self.all(kind).into_iter().find(|object| {
            object["metadata"]["name"] == name
                && namespace.is_none_or(|namespace| object["metadata"]["namespace"] == namespace)
        })
    }

    /// The objects of `kind` in `namespace`, as a list `{"items": [...]}`
    /// (the shape of `kubectl get -o json`).
    pub fn list(&self, kind: &str, namespace: &str) -> Value {
        let items: Vec<Value> = (self.all(kind).into_iter())
            .filter(|object| object["metadata"]["namespace"] == namespace)
            .cloned()
            .collect();
        json!({ "items": items })
    }

    /// How many nodes are Ready, of how many (`this` alone when it is one);
    /// `None` when there is none.
    pub fn nodes_ready(&self, this: &str) -> Option<(usize, usize)> {
        super::kube::ready_of(self.all("Node").into_iter(), this)
    }

    /// One of [`SECRET_ANNOTATIONS`] of Secret `name` in `namespace`;
    /// `None` when the Secret or the annotation is missing.
    pub fn secret_annotation(&self, namespace: &str, name: &str, key: &str) -> Option<&str> {
        debug_assert!(SECRET_ANNOTATIONS.contains(&key), "{key} is not read");
        self.object("Secret", Some(namespace), name)?["metadata"]["annotations"][key].as_str()
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        let listed = self.istio_listed
            || !ISTIO_KIND_NAMES
                .iter()
                .any(|istio| istio.eq_ignore_ascii_case(kind));
        (self.objects.iter())
            .filter(|object| listed && is_kind(object, kind))
            .collect()
    }
}

/// The read's error, its command shown without the template (which says
/// nothing to an operator and fills a line).
fn shortened(error: CommandError) -> CommandError {
    let shown = |command: String| match command.split_once(" -o ") {
        Some((listing, _)) => format!("{listing} -o jsonpath=…"),
        None => command,
    };
    match error {
        CommandError::Failed {
            command,
            status,
            stderr_tail,
        } => CommandError::Failed {
            command: shown(command),
            status,
            stderr_tail,
        },
        CommandError::TimedOut { command, timeout } => CommandError::TimedOut {
            command: shown(command),
            timeout,
        },
        other => other,
    }
}

fn is_kind(object: &Value, kind: &str) -> bool {
    object["kind"]
        .as_str()
        .is_some_and(|found| found.eq_ignore_ascii_case(kind))
}

/// The template of the read (client-go `util/jsonpath`, as kubectl(1)
/// `-o jsonpath` applies it to the List of every object): one line per
/// object, fields separated by tabs. Objects other than Secrets: `object`
/// and the object (`@`, the current object) as JSON (`PrintResults`
/// marshals a map, which escapes tabs and newlines). Secrets: `secret`,
/// namespace, name, then each of [`SECRET_ANNOTATIONS`], a missing one as
/// nothing (kubectl's `--allow-missing-template-keys` is on by default).
fn template() -> String {
    let objects = r#"{range .items[?(@.kind!="Secret")]}object{"\t"}{@}{"\n"}{end}"#;
    let annotations: String = SECRET_ANNOTATIONS
        .iter()
        .map(|key| {
            format!(
                r#"{{"\t"}}{{.metadata.annotations.{}}}"#,
                key.replace('.', "\\.")
            )
        })
        .collect();
    format!(
        r#"jsonpath={objects}{{range .items[?(@.kind=="Secret")]}}secret{{"\t"}}{{.metadata.namespace}}{{"\t"}}{{.metadata.name}}{annotations}{{"\n"}}{{end}}"#
    )
}

/// The objects of `kinds` in every namespace, rebuilt from the template's
/// lines. The output is not logged (pods hold their environment).
fn list(kinds: &str) -> Result<Vec<Value>, CommandError> {
    let template = template();
    let command = kubectl(["get", kinds, "--all-namespaces", "-o", &template]).unlogged_stdout();
    let output = command.run()?;
    (output.stdout.lines())
        .filter(|line| !line.is_empty())
        .map(|line| {
            parse_line(line).ok_or_else(|| CommandError::Failed {
                command: command.to_string(),
                status: "output that is not its template's".into(),
                stderr_tail: String::new(),
            })
        })
        .collect()
}

/// One line of the template's output as an object.
fn parse_line(line: &str) -> Option<Value> {
    let fields: Vec<&str> = line.split('\t').collect();
    match fields.as_slice() {
        ["object", object] => serde_json::from_str::<Value>(object)
            .ok()
            .filter(Value::is_object),
        ["secret", namespace, name, annotations @ ..]
            if annotations.len() == SECRET_ANNOTATIONS.len() =>
        {
            let annotations: Map<String, Value> = (SECRET_ANNOTATIONS.iter().zip(annotations))
                .filter(|(_, value)| !value.is_empty())
                .map(|(key, value)| (key.to_string(), json!(value)))
                .collect();
            Some(json!({
                "kind": "Secret",
                "metadata": { "namespace": namespace, "name": name, "annotations": annotations },
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_objects_and_secrets_keep_only_their_annotations() {
        let node = r#"object	{"kind":"Node","metadata":{"name":"vm"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
        let secret = "secret\tsb-apps\tawscred\t\t2026-01-01T00:00:00Z\t2026-01-01T12:00:00Z";
        let snapshot = Snapshot::of(vec![parse_line(node).unwrap(), parse_line(secret).unwrap()]);
        assert_eq!(snapshot.nodes_ready(""), Some((1, 1)));
        assert_eq!(
            snapshot.secret_annotation("sb-apps", "awscred", ECR_EXPIRES_AT),
            Some("2026-01-01T12:00:00Z")
        );
        assert_eq!(
            snapshot.secret_annotation("sb-apps", "awscred", TLS_SHA256),
            None
        );
        assert!(
            snapshot
                .object("secret", Some("istio-system"), "awscred")
                .is_none()
        );
        assert!(parse_line("object\tnot json").is_none());
        assert!(parse_line("secret\tsb-apps\tawscred").is_none());
    }

    #[test]
    fn the_template_asks_every_secret_annotation_with_its_dots_escaped() {
        let template = template();
        assert!(template.contains(r"{.metadata.annotations.stackinstall\.io/tls-sha256}"));
        assert!(template.contains("{.metadata.annotations.stackinstall/ecr-token-expires-at}"));
        assert!(!template.contains("{.data"), "{template}");
    }
}
