//! The cluster as `kubectl get ... -o json` lists it, read once for all of
//! doctor's cluster and mesh checks ([`Snapshot`]), and what those checks
//! share ([`Scoped`], [`name`]).

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde_json::Value;

use super::{Check, Found, Inputs};
use crate::host::kube;

/// What the snapshot lists, all namespaces at once.
pub const RESOURCES: [&str; 12] = [
    "nodes",
    "namespaces",
    "deployments",
    "services",
    "pods",
    "jobs",
    "persistentvolumeclaims",
    "storageclasses",
    "gateways.networking.istio.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "peerauthentications.security.istio.io",
];

/// The sidecar container Istio injects.
pub const SIDECAR: &str = "istio-proxy";

/// The cluster's objects at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    lists: BTreeMap<&'static str, Vec<Value>>,
    /// Resources that could not be listed, and why.
    unlisted: Vec<String>,
}

impl Snapshot {
    /// Lists every resource; `Err` when the cluster does not answer at all.
    pub fn fetch(limit: Duration) -> Result<Self, String> {
        let nodes = list("nodes", limit)
            .map_err(|why| format!("the cluster does not answer, so it was not checked: {why}"))?;
        let mut snapshot = Self::default();
        snapshot.lists.insert("nodes", nodes);
        let listed: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = RESOURCES[1..]
                .iter()
                .map(|resource| (*resource, scope.spawn(move || list(resource, limit))))
                .collect();
            handles
                .into_iter()
                .map(|(resource, handle)| (resource, handle.join().unwrap_or(Ok(Vec::new()))))
                .collect()
        });
        for (resource, result) in listed {
            match result {
                Ok(items) => {
                    snapshot.lists.insert(resource, items);
                }
                Err(why) => snapshot.unlisted.push(format!("`{resource}`: {why}")),
            }
        }
        Ok(snapshot)
    }

    /// A snapshot of given lists (for tests and the bundle).
    pub fn from_lists(lists: BTreeMap<&'static str, Vec<Value>>) -> Self {
        Self {
            lists,
            unlisted: Vec::new(),
        }
    }

    /// Every object of `resource`.
    pub fn items(&self, resource: &str) -> &[Value] {
        self.lists.get(resource).map_or(&[], Vec::as_slice)
    }

    /// Whether `resource` could be listed.
    pub fn listed(&self, resource: &str) -> bool {
        self.lists.contains_key(resource)
    }

    /// The objects of `resource` in `namespace`.
    pub fn in_namespace<'a>(
        &'a self,
        resource: &str,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.items(resource)
            .iter()
            .filter(move |item| item["metadata"]["namespace"] == namespace)
    }

    /// The object `name` of `resource` in `namespace`.
    pub fn find(&self, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.items(resource).iter().find(|item| {
            item["metadata"]["namespace"] == namespace && item["metadata"]["name"] == name
        })
    }

    /// What could not be listed, for the report's notes.
    pub fn notes(&self) -> Vec<String> {
        self.unlisted
            .iter()
            .map(|why| format!("not listed (its checks skip it): {why}"))
            .collect()
    }
}

fn list(resource: &str, limit: Duration) -> Result<Vec<Value>, String> {
    // Whole objects of every namespace (a pod's environment, a chart's
    // values): read, never copied into the log.
    let command = kube::kubectl(["get", resource, "--all-namespaces", "-o", "json"])
        .timeout(limit)
        .unlogged_stdout();
    let output = command.run().map_err(|error| error.to_string())?;
    let list: Value = serde_json::from_str(&output.stdout)
        .map_err(|error| format!("`{command}` printed something that is not JSON: {error}"))?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Reads the snapshot under the time limit: the snapshot, when the cluster
/// answered, and the `cluster.objects` result for the report.
pub fn fetch_checked(limit: Duration) -> (Option<Arc<Snapshot>>, Vec<super::CheckResult>) {
    let (sender, receiver) = mpsc::channel();
    let check = Check {
        name: "cluster.objects",
        run: Box::new(move || {
            let fetched = Snapshot::fetch(limit)?;
            let found = Found {
                findings: Vec::new(),
                notes: fetched.notes(),
            };
            let _ = sender.send(fetched);
            Ok(found)
        }),
    };
    let results = super::run_all(vec![check], limit);
    (receiver.try_recv().ok().map(Arc::new), results)
}

/// The inputs and the snapshot, shared by the cluster and mesh checks.
pub struct Scoped {
    pub inputs: Arc<Inputs>,
    pub snapshot: Arc<Snapshot>,
}

impl Scoped {
    /// The application's namespace.
    pub fn namespace(&self) -> &str {
        &self.inputs.config.cluster.namespace
    }
}

/// The name of an object.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("?")
}
