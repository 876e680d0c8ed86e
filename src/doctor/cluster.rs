//! The checks of the cluster's plumbing, on doctor's snapshot: nodes
//! Ready, istiod and the ingress gateway available, the gateway Service's
//! NodePorts, storage (StorageClass, Pending PVCs) and the application's
//! pods (pull errors, CrashLoopBackOff with the last log lines, Jobs held
//! by a sidecar).

use std::sync::Arc;

use serde_json::Value;

use super::snapshot::{Scoped, name};
use super::{Check, Checked, Finding};
use crate::node::{self, Etcd, Node};

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
    let mut findings = findings;
    findings.extend(members(nodes));
    Ok(findings.into())
}

/// The nodes together: one K3s version (no skew), and an etcd cluster
/// with a quorum of started members and an odd number of them.
fn members(nodes: &[Value]) -> Vec<Finding> {
    let nodes: Vec<Node> = nodes.iter().map(Node::of).collect();
    let mut findings = Vec::new();
    if let Some(versions) = node::skew(&nodes) {
        let each: Vec<String> = (nodes.iter())
            .map(|node| format!("{} {}", node.name, node.version))
            .collect();
        findings.push(
            Finding::warning(
                "node-version-skew",
                format!("the nodes run {} K3s versions", versions.len()),
                "upgrade every node to the profile's `versions.k3s`: `sudo stackinstall install` on the first server, then the other servers one at a time, then the agents, each with `sudo stackinstall join` and a new join file",
            )
            .with(each.join(", ")),
        );
    }
    let etcd = Etcd::of(&nodes, None);
    if !etcd.has_quorum() {
        findings.push(Finding::error(
            "etcd-no-quorum",
            format!(
                "{} of {} etcd members are Ready: no quorum, the API cannot change anything",
                etcd.ready, etcd.members
            ),
            "bring the servers that are not Ready back (`journalctl -u k3s` on each); `stackinstall nodes` lists them",
        ));
    } else if etcd.is_even() {
        findings.push(Finding::warning(
            "etcd-even-members",
            format!(
                "{} etcd members: an even number tolerates no more failures than {}",
                etcd.members,
                etcd.members - 1
            ),
            "join one more server (`sudo stackinstall join-command --role server`) or remove one (`stackinstall nodes remove NAME`)",
        ));
    }
    findings
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
