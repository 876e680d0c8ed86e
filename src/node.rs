//! A node of the cluster as `kubectl get nodes -o json` lists it, read in
//! one place for `nodes`, `join-command`, doctor and the upgrade checks,
//! and the rules across nodes: one K3s version (no skew), an etcd quorum
//! of Ready members (etcd: a cluster of N members needs N/2+1 started to
//! change anything; etcd.io "FAQ", "What is failure tolerance?"), and an
//! odd number of members.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::error::StepError;
use crate::host::kube;
use crate::join::Role;

/// The control plane role label K3s gives a server (`pkg/node`); older
/// K3s releases label `master` too.
const SERVER_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];
/// The etcd role label: the node is an etcd member (`pkg/etcd/etcd.go`
/// `setNodeLabelsAndAnnotations`).
const ETCD_LABEL: &str = "node-role.kubernetes.io/etcd";

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub role: Role,
    /// Its kubelet's version (`status.nodeInfo.kubeletVersion`: K3s's own,
    /// `v1.29.0+k3s1`); empty when the node does not say.
    pub version: String,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
    pub etcd_member: bool,
    /// Its `InternalIP`; empty when it has none.
    pub address: String,
    /// Whether `join` wired the kubelet's ECR credential provider (its
    /// label); `None` for a node that did not join through stackinstall.
    pub credential_provider: Option<bool>,
    /// Whether `join` installed the NFS client (its label).
    pub nfs_client: Option<bool>,
}

impl Node {
    /// The node of one item of a Node list.
    pub fn of(object: &Value) -> Self {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels[key].as_str().map(|value| value == "true");
        let server = SERVER_LABELS.iter().any(|key| label(key) == Some(true));
        let status = &object["status"];
        let listed = |key: &str| status[key].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let ready = (listed("conditions").iter())
            .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
        let address = (listed("addresses").iter())
            .find(|address| address["type"] == "InternalIP")
            .and_then(|address| address["address"].as_str());
        Self {
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            role: if server { Role::Server } else { Role::Agent },
            version: (status["nodeInfo"]["kubeletVersion"].as_str())
                .unwrap_or("")
                .to_string(),
            ready,
            etcd_member: label(ETCD_LABEL) == Some(true),
            address: address.unwrap_or("").to_string(),
            credential_provider: label("stackinstall.io/credential-provider"),
            nfs_client: label("stackinstall.io/nfs-client"),
        }
    }

    /// A node for the tests: a server is an etcd member.
    #[cfg(test)]
    pub fn for_tests(name: &str, server: bool, version: &str, ready: bool) -> Self {
        Self {
            name: name.into(),
            role: if server { Role::Server } else { Role::Agent },
            version: version.into(),
            ready,
            etcd_member: server,
            address: String::new(),
            credential_provider: None,
            nfs_client: None,
        }
    }

    /// A server (a control plane), else an agent.
    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }

    /// `name (role, version)`, as messages name a node.
    pub fn described(&self) -> String {
        let version = match self.version.is_empty() {
            true => "version unknown",
            false => &self.version,
        };
        format!("{} ({}, {version})", self.name, self.role.word())
    }
}

/// The cluster's nodes, as the API lists them now.
pub fn list() -> Result<Vec<Node>, StepError> {
    let output = kube::kubectl(["get", "nodes", "-o", "json"])
        .unlogged_stdout()
        .run()?;
    let list: Value = serde_json::from_str(&output.stdout).map_err(|error| {
        StepError::failed(
            format!("`kubectl get nodes -o json` printed no list: {error}"),
            "run `kubectl get nodes` to see what the API answers",
        )
    })?;
    Ok(of_list(&list))
}

/// The cluster's nodes in the run's snapshot of the cluster
/// (`host::cluster`); `None` when the API does not answer.
pub fn in_snapshot() -> Result<Option<Vec<Node>>, StepError> {
    Ok(crate::host::cluster::node_list()?.map(|list| of_list(&list)))
}

/// The nodes of a Node list.
pub fn of_list(list: &Value) -> Vec<Node> {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    items.iter().map(Node::of).collect()
}

/// The K3s versions the nodes run (those that say), when they differ.
pub fn skew(nodes: &[Node]) -> Option<BTreeSet<&str>> {
    let versions: BTreeSet<&str> = (nodes.iter())
        .map(|node| node.version.as_str())
        .filter(|version| !version.is_empty())
        .collect();
    (versions.len() > 1).then_some(versions)
}

/// The etcd members among the nodes and how many of them are Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Etcd {
    pub members: usize,
    pub ready: usize,
}

impl Etcd {
    /// The members of `nodes`; Ready ones counted leaving out `without`
    /// (the member about to stop).
    pub fn of(nodes: &[Node], without: Option<&str>) -> Self {
        let members = nodes.iter().filter(|node| node.etcd_member);
        Self {
            members: members.clone().count(),
            ready: members
                .filter(|node| node.ready && Some(node.name.as_str()) != without)
                .count(),
        }
    }

    /// The started members `members` need to agree on anything.
    pub fn quorum(members: usize) -> usize {
        members / 2 + 1
    }

    /// Whether the Ready members are a quorum.
    pub fn has_quorum(&self) -> bool {
        self.members == 0 || self.ready >= Self::quorum(self.members)
    }

    /// An even number of members tolerates no more failures than one
    /// fewer.
    pub fn is_even(&self) -> bool {
        self.members > 1 && self.members.is_multiple_of(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_read_with_its_role_readiness_membership_and_labels() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "first", "labels": {
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/etcd": "true"}},
             "status": {"nodeInfo": {"kubeletVersion": "v1.29.0+k3s1"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}},
            {"metadata": {"name": "old", "labels": {"node-role.kubernetes.io/master": "true"}}},
            {"metadata": {"name": "worker", "labels": {
                "stackinstall.io/credential-provider": "true",
                "stackinstall.io/nfs-client": "false"}},
             "status": {"nodeInfo": {"kubeletVersion": "v1.29.5+k3s1"},
                "conditions": [{"type": "Ready", "status": "Unknown"}]}},
        ]});
        let nodes = of_list(&list);
        assert_eq!(nodes[0].role, Role::Server);
        assert!(nodes[0].ready && nodes[0].etcd_member);
        assert_eq!(nodes[0].address, "192.0.2.10");
        assert_eq!(nodes[0].credential_provider, None);
        assert_eq!(
            nodes[1].role,
            Role::Server,
            "the `master` label is a server"
        );
        assert_eq!(nodes[1].described(), "old (server, version unknown)");
        assert_eq!(nodes[2].role, Role::Agent);
        assert!(!nodes[2].ready);
        assert_eq!(
            (nodes[2].credential_provider, nodes[2].nfs_client),
            (Some(true), Some(false))
        );
        assert_eq!(
            skew(&nodes).map(|versions| versions.len()),
            Some(2),
            "two versions, the node without one left out"
        );
        assert_eq!(skew(&nodes[..2]), None);
    }

    #[test]
    fn quorum_counts_ready_members_leaving_one_out() {
        let member = |name: &str, ready: bool| Node::for_tests(name, true, "", ready);
        let three = [member("a", true), member("b", true), member("c", false)];
        assert_eq!(
            Etcd::of(&three, None),
            Etcd {
                members: 3,
                ready: 2
            }
        );
        assert!(Etcd::of(&three, None).has_quorum());
        assert!(!Etcd::of(&three, Some("a")).has_quorum());
        assert!(Etcd::of(&three[..2], None).is_even());
        assert!(Etcd::of(&[], None).has_quorum());
    }
}
