//! A joined agent's K3s and what the `k3s` step installs beside it: the
//! NFS client package (`nfs-common`, which the kubelet mounts the export's
//! volumes with) is no change K3s reads, so installing it never restarts
//! K3s; only the credential provider's files and K3s's configuration file
//! do. The cluster is set up as `join.rs` sets it up (two worlds sharing
//! one fake cluster, `support::cluster::cluster_host`, the first host's
//! release server on 127.0.0.1 as the registration address).

use stackinstall_fakes::programs::members;

use crate::support::cluster::cluster_host as host;
use crate::support::output::stderr;
use crate::support::world::World;

/// The lines of `systemctl restart` of the agent's K3s in `world`'s calls.
fn agent_restarts(world: &World) -> Vec<String> {
    (world.lines_of("systemctl").into_iter())
        .filter(|line| line.starts_with("systemctl restart k3s"))
        .collect()
}

#[test]
fn installing_the_nfs_client_on_a_joined_agent_does_not_restart_k3s() {
    let cluster = tempfile::tempdir().unwrap();
    let (first, releases) = host(cluster.path(), "first", "192.0.2.10");
    first.install(&[]).success();
    first.write(
        "/etc/exports",
        "/data/stackbill 192.0.2.10(rw,sync,no_subtree_check,no_root_squash) 192.0.2.11(rw,sync,no_subtree_check,no_root_squash)\n",
    );
    releases.put("/cacerts", members::CA_PEM.as_bytes().to_vec());
    let url = releases.serve();
    first
        .command()
        .args(["join-command", "--role", "agent"])
        .assert()
        .success();
    let file = first.path("/etc/stackinstall/join-agent.toml");
    let (node, _node_releases) = host(cluster.path(), "worker1", "192.0.2.11");
    let join = || {
        let mut command = node.command();
        command.args(["join", "--server", &url, "--role", "agent", "--token-file"]);
        command.arg(&file).assert()
    };

    // The first run: the package, then K3s started by its install script.
    node.set_packages(&[]);
    let first_run = join().success();
    assert!(
        node.packages().contains(&"nfs-common".to_string()),
        "{:?}",
        node.packages()
    );
    assert_eq!(agent_restarts(&node), Vec::<String>::new());

    // The package removed since, and the step to run again (its last run
    // interrupted, as Ctrl-C leaves it) with K3s running and its files
    // in place: the package comes back, K3s runs on.
    let installed: Vec<String> = (node.packages().into_iter())
        .filter(|package| package != "nfs-common")
        .collect();
    node.set_packages(&installed.iter().map(String::as_str).collect::<Vec<_>>());
    let state_path = node.path("/var/lib/stackinstall/state.toml");
    let mut state: toml::Table = toml::from_str(&node.read("/var/lib/stackinstall/state.toml"))
        .unwrap_or_else(|error| panic!("{error}: {}", stderr(&first_run)));
    state["steps"]["k3s"]["status"] = "interrupted".into();
    std::fs::write(&state_path, toml::to_string(&state).unwrap()).unwrap();
    node.clear_calls();
    let rerun = join().success();
    assert!(
        node.lines_of("apt-get")
            .iter()
            .any(|line| line.contains("install") && line.contains("nfs-common")),
        "{:?}\n{}",
        node.lines_of("apt-get"),
        stderr(&rerun)
    );
    assert!(node.packages().contains(&"nfs-common".to_string()));
    assert_eq!(
        agent_restarts(&node),
        Vec::<String>::new(),
        "the package restarted K3s: {}",
        stderr(&rerun)
    );
    assert!(
        node.lines_of("k3s-install").is_empty(),
        "K3s installed again"
    );
    crate::support::report(
        "agents: nfs-common installed on a joined agent (its first join, and a re-run after it was removed) with no restart of K3s",
    );
}
