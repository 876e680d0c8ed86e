//! `stackinstall nodes`: the cluster's nodes with their role, K3s version,
//! readiness and etcd membership; `nodes remove NAME`: cordon, drain and
//! delete a node (K3s removes a deleted server's etcd member itself,
//! k3s-io/k3s `pkg/etcd/member_controller.go`), refused before anything
//! changes when the etcd members left would have no quorum, or when it is
//! the last server. The node's own K3s is uninstalled on that host
//! (`stackinstall uninstall --delete-infra` there, or K3s's
//! `k3s-agent-uninstall.sh`); the first host's databases and export are
//! never touched.

use std::path::Path;
use std::time::Duration;

use super::Result;
use crate::cli::{LeaveArgs, NodesAction, NodesArgs, Output};
use crate::host::{self, Command, kube};
use crate::node::{self, Etcd, Node};
use crate::steps::StepError;

/// Runs `nodes`.
pub fn run(_root: &Path, args: NodesArgs) -> Result<()> {
    if let Some(NodesAction::Remove { name }) = &args.action {
        crate::steps::preflight::check_root()?;
        return remove(name);
    }
    let nodes = node::list()?;
    if args.output == Output::Json {
        crate::outln!("{}", serde_json::json!({ "nodes": nodes }));
        return Ok(());
    }
    crate::outln!(
        "{:<20} {:<7} {:<16} {:<6} {:<5} {:<9} {:<4} ADDRESS",
        "NAME",
        "ROLE",
        "VERSION",
        "READY",
        "ETCD",
        "PROVIDER",
        "NFS"
    );
    let word = |flag: bool| if flag { "yes" } else { "no" };
    let known = |flag: Option<bool>| flag.map_or("-", word);
    for node in &nodes {
        crate::outln!(
            "{:<20} {:<7} {:<16} {:<6} {:<5} {:<9} {:<4} {}",
            node.name,
            node.role.word(),
            node.version,
            word(node.ready),
            word(node.etcd_member),
            known(node.credential_provider),
            known(node.nfs_client),
            node.address
        );
    }
    if nodes.iter().any(|node| node.credential_provider.is_none()) {
        crate::outln!(
            "(-: a node that did not join with `stackinstall join`; on the first host `stackinstall status` shows its provider and export)"
        );
    }
    if let Some(versions) = node::skew(&nodes) {
        crate::outln!(
            "warning: the nodes run different K3s versions ({}): upgrade them to one",
            versions.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let etcd = Etcd::of(&nodes, None);
    if etcd.is_even() {
        crate::outln!(
            "warning: {} etcd members: an even number tolerates no more failures than {}",
            etcd.members,
            etcd.members - 1
        );
    }
    Ok(())
}

/// Why removing `name` from `nodes` is refused, before anything changes:
/// the last server, or an etcd member whose removal leaves the started
/// members short of a quorum of the smaller cluster.
pub fn removal_refused(nodes: &[Node], name: &str) -> Option<StepError> {
    let node = nodes.iter().find(|node| node.name == name)?;
    let servers = nodes.iter().filter(|node| node.is_server()).count();
    if node.is_server() && servers == 1 {
        return Some(StepError::input(
            format!("`{name}` is the cluster's last server: without it there is no cluster"),
            "uninstall the whole cluster with `sudo stackinstall uninstall --all` on it instead",
        ));
    }
    if !node.etcd_member {
        return None;
    }
    let etcd = Etcd::of(nodes, Some(name));
    let (left, ready_left) = (etcd.members - 1, etcd.ready);
    if ready_left < Etcd::quorum(left) {
        return Some(StepError::input(
            format!(
                "removing `{name}` would leave {ready_left} started etcd member(s) of {left}: no quorum, the cluster would stop"
            ),
            "bring the other servers back (`stackinstall nodes` shows which are not Ready), then run again",
        ));
    }
    None
}

/// `nodes remove NAME`.
fn remove(name: &str) -> Result<()> {
    let nodes = node::list()?;
    if !nodes.iter().any(|node| node.name == name) {
        return Err(StepError::input(
            format!("the cluster has no node `{name}`"),
            "`stackinstall nodes` lists them",
        )
        .into());
    }
    if let Some(refused) = removal_refused(&nodes, name) {
        return Err(refused.into());
    }
    take_out(name)?;
    crate::outln!(
        "Node `{name}` is out of the cluster. On that host, run `sudo stackinstall leave --yes` (K3s's own uninstall; it keeps nothing of the cluster)."
    );
    Ok(())
}

/// Cordons, drains and deletes the node `name`.
fn take_out(name: &str) -> Result<(), StepError> {
    let steps: [Vec<&str>; 3] = [
        vec!["cordon", name],
        vec![
            "drain",
            name,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout",
            "300s",
        ],
        vec!["delete", "node", name, "--ignore-not-found"],
    ];
    for args in steps {
        kube::kubectl(args)
            .timeout(Duration::from_secs(360))
            .run()
            .map_err(StepError::from)?;
    }
    Ok(())
}

/// K3s's uninstall scripts (install.sh writes the agent's or the
/// server's).
const UNINSTALL_SCRIPTS: [&str; 2] = [
    crate::steps::k3s::AGENT_UNINSTALL_SCRIPT,
    crate::steps::k3s::UNINSTALL_SCRIPT,
];

/// Runs `leave` on a joined node: a server takes itself out (cordon,
/// drain, delete: its etcd member goes with its Node), refused when the
/// members left would lose quorum; an agent, which has no right to delete
/// Nodes, goes once a server took it out (`nodes remove NAME`, then
/// `leave --yes`). Then K3s's own uninstall script, and the join token.
/// A re-run after a kill picks up where it stopped.
pub fn leave(root: &Path, args: LeaveArgs) -> Result<()> {
    crate::steps::preflight::check_root()?;
    let context = super::command_context(root, &args.config, Default::default(), false, false)?;
    let joined = crate::steps::k3s::config_file::is_joined(&context.host)?;
    let script = (UNINSTALL_SCRIPTS.iter())
        .map(|script| context.host.path(script))
        .find(|script| script.exists());
    if !joined {
        return match script {
            Some(_) => Err(StepError::input(
                "this host did not join a cluster: it is the cluster's first server",
                "remove the whole cluster with `sudo stackinstall uninstall --all`",
            )
            .into()),
            None => {
                crate::outln!("K3s is not on this host: nothing to leave.");
                Ok(())
            }
        };
    }
    let name = crate::join::node_name(&context.host);
    let agent = context.host.path(UNINSTALL_SCRIPTS[0]).exists();
    if agent && !args.yes {
        return Err(StepError::input(
            format!("an agent cannot take its own Node `{name}` out of the cluster (it has no right to)"),
            format!("run `sudo stackinstall nodes remove {name}` on a server first (cordon, drain, delete), then `sudo stackinstall leave --yes` here"),
        )
        .into());
    }
    if !agent && kube::cluster_answers() {
        let nodes = node::list()?;
        if nodes.iter().any(|node| node.name == name) {
            if let Some(refused) = removal_refused(&nodes, &name) {
                return Err(refused.into());
            }
            take_out(&name)?;
        }
    }
    if let Some(script) = script {
        Command::new(script.display().to_string())
            .timeout(Duration::from_secs(600))
            .run()
            .map_err(StepError::from)?;
    }
    host::fs::remove_file(&context.host.path(crate::join::TOKEN_FILE))?;
    crate::outln!(
        "This host left the cluster: K3s is uninstalled here (the first host's databases and export are untouched)."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, server: bool, ready: bool) -> Node {
        Node::for_tests(name, server, "v1.29.0+k3s1", ready)
    }

    #[test]
    fn quorum_decides_a_removal() {
        let three = [
            node("a", true, true),
            node("b", true, true),
            node("c", true, true),
        ];
        assert!(removal_refused(&three, "c").is_none());
        let one_down = [
            node("a", true, true),
            node("b", true, false),
            node("c", true, true),
        ];
        assert!(removal_refused(&one_down, "c").is_some());
        assert!(removal_refused(&[node("a", true, true)], "a").is_some());
        let with_agent = [node("a", true, true), node("w", false, false)];
        assert!(removal_refused(&with_agent, "w").is_none());
    }
}
