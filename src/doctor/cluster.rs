//! The cluster as `kubectl get ... -o json` lists it ([`Snapshot`], read
//! once), and the checks of its plumbing: nodes Ready, istiod and the
//! ingress gateway available, the gateway Service's NodePorts, storage
//! (StorageClass, Pending PVCs) and the application's pods (pull errors,
//! CrashLoopBackOff with the last log lines, Jobs held by a sidecar).

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde_json::Value;

use super::{Check, Checked, Finding, Found, Inputs};
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
    let command = kube::kubectl(["get", resource, "--all-namespaces", "-o", "json"]).timeout(limit);
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

/// The cluster checks.
pub fn checks(scoped: &Arc<Scoped>) -> Vec<Check> {
    vec![
        Check::on("cluster.nodes", scoped, nodes),
        Check::on("cluster.istio", scoped, istio),
        Check::on("cluster.gateway-service", scoped, gateway_service),
        Check::on("cluster.storage", scoped, super::pods::storage),
        Check::on("cluster.pods", scoped, super::pods::pods),
    ]
}

/// The name of an object.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("?")
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == kind)
}

fn nodes(scoped: &Scoped) -> Checked {
    let nodes = scoped.snapshot.items("nodes");
    if nodes.is_empty() {
        let fix = "look at K3s: `systemctl status k3s`, `journalctl -u k3s -n 50`";
        return Ok(vec![Finding::error(
            "node-not-ready",
            "the cluster has no node",
            fix,
        )]
        .into());
    }
    let findings = nodes
        .iter()
        .filter(|node| condition(node, "Ready").is_none_or(|ready| ready["status"] != "True"))
        .map(|node| {
            let ready = condition(node, "Ready").cloned().unwrap_or(Value::Null);
            Finding::error(
                "node-not-ready",
                format!("node `{}` is not Ready", name(node)),
                format!(
                    "`kubectl describe node {}`; on the node: `journalctl -u k3s -n 50`",
                    name(node)
                ),
            )
            .with(format!(
                "condition Ready: status {}, reason {}, message {}",
                ready["status"], ready["reason"], ready["message"]
            ))
        })
        .collect::<Vec<_>>();
    Ok(findings.into())
}

fn istio(scoped: &Scoped) -> Checked {
    let mut findings = Vec::new();
    for deployment in ["istiod", "istio-ingressgateway"] {
        let fix = format!(
            "`kubectl -n istio-system describe deployment {deployment}`; reinstall with `sudo stackinstall install --redo istio`"
        );
        match scoped
            .snapshot
            .find("deployments", "istio-system", deployment)
        {
            None => findings.push(Finding::error(
                "istio-not-available",
                format!("deployment `istio-system/{deployment}` does not exist"),
                fix,
            )),
            Some(found) if found["status"]["availableReplicas"].as_u64().unwrap_or(0) == 0 => {
                findings.push(
                    Finding::error(
                        "istio-not-available",
                        format!("deployment `istio-system/{deployment}` has no available replica"),
                        fix,
                    )
                    .with(format!(
                        "replicas {}, availableReplicas {}",
                        found["status"]["replicas"], found["status"]["availableReplicas"]
                    )),
                );
            }
            Some(_) => {}
        }
    }
    Ok(findings.into())
}

fn gateway_service(scoped: &Scoped) -> Checked {
    let istio = &scoped.inputs.config.istio;
    let Some(service) = scoped
        .snapshot
        .find("services", "istio-system", "istio-ingressgateway")
    else {
        let fix = "reinstall Istio's gateway: `sudo stackinstall install --redo istio`";
        let what = "Service `istio-system/istio-ingressgateway` does not exist";
        return Ok(vec![Finding::error("gateway-service", what, fix)].into());
    };
    let ports = service["spec"]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wanted = [
        (80, 8080, istio.http_node_port),
        (443, 8443, istio.https_node_port),
    ];
    let mut findings = Vec::new();
    for (port, target, node_port) in wanted {
        let found = ports.iter().find(|p| p["port"] == port);
        let (found_target, found_node) = found.map_or((Value::Null, Value::Null), |p| {
            (p["targetPort"].clone(), p["nodePort"].clone())
        });
        if found_target != target || found_node != node_port {
            findings.push(
                Finding::error(
                    "gateway-service",
                    format!("the ingress gateway Service's port {port} does not lead from NodePort {node_port} to the gateway's port {target}"),
                    "put the ports back as the install sets them: `sudo stackinstall install --redo istio` (`/etc/stackinstall/istio-operator.yaml`)",
                )
                .with(format!(
                    "Service istio-system/istio-ingressgateway port {port}: nodePort {found_node}, targetPort {found_target}; type {}",
                    service["spec"]["type"]
                )),
            );
        }
    }
    Ok(findings.into())
}
