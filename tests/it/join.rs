//! More hosts in one cluster: several worlds (each its own `--root`, units
//! and packages) sharing one fake cluster (`Config::cluster_state`: its
//! nodes, tokens, datastore and etcd members; `tests/fakes/src/programs/
//! members.rs`). The first host installs K3s; `join-command` there writes
//! the join file; `join` on another world reads it. The registration
//! address is the first host's release server on 127.0.0.1, which serves
//! the cluster's CA at `/cacerts` and its clock in `Date`, as a K3s server
//! does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use stackinstall_fakes::programs::members;

use crate::support::cluster::{Releases, cluster_host as host};
use crate::support::output::{stderr, stdout};
use crate::support::world::{DOMAIN, World};

/// The first host's address, and the workers'.
const FIRST: &str = "192.0.2.10";

/// The first host, K3s installed, its export serving `clients`; the
/// registration URL its release server answers at (with `/cacerts`).
struct Cluster {
    dir: tempfile::TempDir,
    first: World,
    url: String,
    releases: Releases,
}

impl Cluster {
    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `stackinstall ARGS` on the first host.
    fn on_first(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.first.command().args(args).assert()
    }
}

fn first_host(clients: &[&str], cluster_init: bool) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (first, releases) = host(dir.path(), "first", FIRST);
    first.install(&[]).success();
    if cluster_init {
        first.command().args(["ha", "enable"]).assert().success();
    }
    let line: Vec<String> = clients
        .iter()
        .map(|client| format!("{client}(rw,sync,no_subtree_check,no_root_squash)"))
        .collect();
    first.write(
        "/etc/exports",
        &format!("/data/stackbill {}\n", line.join(" ")),
    );
    releases.put("/cacerts", members::CA_PEM.as_bytes().to_vec());
    let url = releases.serve();
    Cluster {
        dir,
        first,
        url,
        releases,
    }
}

/// `join-command --role ROLE` on the first host; the join file's path.
fn join_command(cluster: &Cluster, role: &str) -> (PathBuf, String) {
    let assert = cluster
        .on_first(&["join-command", "--role", role])
        .success();
    let path = cluster
        .first
        .path(&format!("/etc/stackinstall/join-{role}.toml"));
    (path, stdout(&assert) + &stderr(&assert))
}

/// `join --server URL --role ROLE --token-file FILE` for `cluster`.
fn join_args(cluster: &Cluster, role: &str, file: &Path) -> Vec<String> {
    [
        "join",
        "--server",
        &cluster.url,
        "--role",
        role,
        "--token-file",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([file.display().to_string()])
    .collect()
}

fn join(node: &World, cluster: &Cluster, role: &str, file: &Path) -> assert_cmd::assert::Assert {
    node.command().args(join_args(cluster, role, file)).assert()
}

fn node_object(cluster: &Cluster, name: &str) -> Option<serde_json::Value> {
    let store = stackinstall_fakes::store::Store::new(&cluster.path());
    let nodes = stackinstall_fakes::store::Resource::of_kind("Node").unwrap();
    store.get(nodes, None, name)
}

fn token_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    table["token"].as_str().unwrap().to_string()
}

/// Every place a token must never be: each call's argv and environment,
/// the logs and what the commands printed.
fn assert_no_token(worlds: &[&World], token: &str, printed: &[String]) {
    let secret = token.split("::").nth(1).unwrap();
    for world in worlds {
        for call in world.calls() {
            assert!(
                !call.line().contains(secret),
                "token in argv: {}",
                call.line()
            );
            for (name, value) in &call.env {
                assert!(
                    !value.contains(secret),
                    "token in the environment ({name}) of `{}`",
                    call.line()
                );
            }
        }
        assert!(!world.logs().contains(secret), "token in a log");
    }
    for text in printed {
        assert!(!text.contains(secret), "token printed: {text}");
    }
}

#[test]
fn an_agent_joins_with_a_bootstrap_token_kept_off_every_command_line() {
    let cluster = first_host(&[FIRST, "192.0.2.11"], false);
    let (file, printed) = join_command(&cluster, "agent");
    assert!(printed.contains("stackinstall join --server https://192.0.2.10:6443 --role agent --token-file /etc/stackinstall/join-agent.toml"), "{printed}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = token_of(&file);
    assert!(
        token.contains('.'),
        "an agent gets a bootstrap token, not the server token: {token}"
    );
    let (node, _node_releases) = host(&cluster.path(), "worker1", "192.0.2.11");
    node.set_packages(&[]);
    let assert = join(&node, &cluster, "agent", &file).success();
    let output = stdout(&assert) + &stderr(&assert);
    assert!(output.contains("joined"), "{output}");
    // K3s as an agent, configured by its file with the token by file.
    let config = node.read("/etc/rancher/k3s/config.yaml");
    assert!(
        config.contains(&format!("server: \"{}\"", cluster.url)),
        "{config}"
    );
    assert!(
        config.contains("token-file: \"/etc/stackinstall/k3s-join-token\""),
        "{config}"
    );
    assert!(
        !config.contains("cluster-cidr"),
        "an agent takes no server flags: {config}"
    );
    let token_file = node.path("/etc/stackinstall/k3s-join-token");
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        node.packages().contains(&"nfs-common".to_string()),
        "{:?}",
        node.packages()
    );
    let starts = std::fs::read_to_string(node.state("k3s-starts")).unwrap();
    assert_eq!(
        starts, "provider in place\n",
        "the provider is wired before K3s starts"
    );
    let worker = node_object(&cluster, "worker1").expect("the agent's Node");
    assert_eq!(
        worker["status"]["nodeInfo"]["kubeletVersion"],
        "v1.29.0+k3s1"
    );
    // `nodes` on the first host lists both, Ready.
    let listed = cluster.on_first(&["nodes"]).success();
    let table = stdout(&listed);
    let worker_line = table
        .lines()
        .find(|l| l.starts_with("worker1"))
        .unwrap_or_default();
    let columns: Vec<&str> = worker_line.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "worker1",
            "agent",
            "v1.29.0+k3s1",
            "yes",
            "no",
            "yes",
            "yes",
            "192.0.2.11"
        ],
        "name, role, version, Ready, etcd, provider, NFS client, address:\n{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("first") && l.contains("server")),
        "{table}"
    );
    // A second run converges: nothing left to do.
    node.clear_calls();
    join(&node, &cluster, "agent", &file).success();
    assert!(
        node.lines_of("k3s-install").is_empty(),
        "the second join ran the install script again"
    );
    assert_no_token(&[&cluster.first, &node], &token, &[printed, output, table]);
}

#[test]
fn a_node_whose_address_the_export_does_not_serve_is_refused_before_any_change() {
    let cluster = first_host(&[FIRST], false);
    let (file, _) = join_command(&cluster, "agent");
    let (node, _releases) = host(&cluster.path(), "worker2", "192.0.2.12");
    let assert = join(&node, &cluster, "agent", &file).code(2);
    let error = stderr(&assert);
    assert!(
        error.contains("does not") || error.contains("serves 192.0.2.10 only"),
        "{error}"
    );
    assert!(
        error.contains("`[nfs] node_addresses`") && error.contains("install --redo nfs"),
        "{error}"
    );
    assert!(!node.path("/etc/rancher/k3s/config.yaml").exists());
    assert!(!node.path("/etc/stackinstall/k3s-join-token").exists());
    assert!(node.lines_of("k3s-install").is_empty());
}

#[test]
fn a_node_pinning_another_k3s_is_refused_as_version_skew() {
    let cluster = first_host(&[FIRST, "192.0.2.11"], false);
    let (file, _) = join_command(&cluster, "agent");
    let (mut node, _releases) = host(&cluster.path(), "worker1", "192.0.2.11");
    node.set_env("STACKINSTALL_VERSIONS__K3S", "v1.29.5+k3s1");
    let error = stderr(&join(&node, &cluster, "agent", &file).code(2));
    assert!(
        error.contains("pins K3s v1.29.5+k3s1, the cluster runs v1.29.0+k3s1"),
        "{error}"
    );
    assert!(node.lines_of("k3s-install").is_empty());
}

#[test]
fn a_taken_node_name_and_a_clock_off_by_minutes_are_refused() {
    let cluster = first_host(&[FIRST, "192.0.2.11"], false);
    let (file, _) = join_command(&cluster, "agent");
    let (node, _releases) = host(&cluster.path(), "first", "192.0.2.11");
    let error = stderr(&join(&node, &cluster, "agent", &file).code(2));
    assert!(
        error.contains("already has a node named `first`"),
        "{error}"
    );
    let (node, _releases) = host(&cluster.path(), "worker1", "192.0.2.11");
    cluster.releases.set_clock_offset(300);
    let error = stderr(&join(&node, &cluster, "agent", &file).code(2));
    assert!(
        error.contains("clock is 300 s off") || error.contains("s off the server's"),
        "{error}"
    );
    assert!(node.lines_of("k3s-install").is_empty());
}

#[test]
fn a_server_joins_an_etcd_cluster_with_its_flags_and_a_mismatch_is_refused() {
    let cluster = first_host(&[FIRST, "192.0.2.21", "192.0.2.22"], true);
    // SQLite clusters get no server join file; this one has etcd.
    let (file, _) = join_command(&cluster, "server");
    let token = token_of(&file);
    assert!(
        token.contains("::server:"),
        "a server joins with the server token"
    );
    let (mut odd, _r) = host(&cluster.path(), "server2", "192.0.2.21");
    odd.set_env("STACKINSTALL_CLUSTER__POD_CIDR", "10.50.0.0/16");
    let error = stderr(&join(&odd, &cluster, "server", &file).code(2));
    assert!(error.contains("`[cluster] pod_cidr` is 10.50.0.0/16 here, but the cluster's servers run with cluster-cidr 10.42.0.0/16"), "{error}");
    assert!(odd.lines_of("k3s-install").is_empty());
    let (server, _r2) = host(&cluster.path(), "server2", "192.0.2.21");
    let output = stderr(&join(&server, &cluster, "server", &file).success());
    let config = server.read("/etc/rancher/k3s/config.yaml");
    assert!(
        config.contains("cluster-cidr: \"10.42.0.0/16\"") && config.contains("  - traefik"),
        "{config}"
    );
    let joined = node_object(&cluster, "server2").expect("the server's Node");
    assert_eq!(
        joined["metadata"]["labels"]["node-role.kubernetes.io/etcd"],
        "true"
    );
    let table = stdout(&cluster.on_first(&["nodes"]).success());
    assert!(
        table.contains("warning: 2 etcd members"),
        "two servers are flagged: {table}"
    );
    assert_no_token(&[&cluster.first, &server], &token, &[output, table]);
}

#[test]
fn a_server_join_file_needs_etcd_first() {
    let cluster = first_host(&[FIRST], false);
    let assert = cluster
        .on_first(&["join-command", "--role", "server"])
        .code(2);
    assert!(
        stderr(&assert).contains("stackinstall ha enable"),
        "{}",
        stderr(&assert)
    );
}

#[test]
fn removing_a_node_keeps_quorum_and_never_the_last_server() {
    let cluster = first_host(&[FIRST, "192.0.2.21", "192.0.2.22", "192.0.2.11"], true);
    let (file, _) = join_command(&cluster, "server");
    let (two, _r2) = host(&cluster.path(), "server2", "192.0.2.21");
    join(&two, &cluster, "server", &file).success();
    let (three, _r3) = host(&cluster.path(), "server3", "192.0.2.22");
    join(&three, &cluster, "server", &file).success();
    // server3 down: removing server2 would leave 1 started member of 2.
    three.stop_k3s();
    let error = stderr(&cluster.on_first(&["nodes", "remove", "server2"]).code(2));
    assert!(error.contains("no quorum"), "{error}");
    assert!(node_object(&cluster, "server2").is_some());
    // With all three up, server3 goes (its etcd member with its Node).
    three.start_k3s();
    cluster.on_first(&["nodes", "remove", "server3"]).success();
    assert!(node_object(&cluster, "server3").is_none());
    cluster.on_first(&["nodes", "remove", "server2"]).success();
    let error = stderr(&cluster.on_first(&["nodes", "remove", "first"]).code(2));
    assert!(error.contains("last server"), "{error}");
    let _ = DOMAIN;
}

#[test]
fn ha_enable_backs_up_then_moves_sqlite_to_etcd_and_servers_may_join() {
    let cluster = first_host(&[FIRST, "192.0.2.21"], false);
    let first = &cluster.first;
    let assert = first.command().args(["ha", "enable"]).assert().success();
    let output = stdout(&assert) + &stderr(&assert);
    let config = first.read("/etc/rancher/k3s/config.yaml");
    assert!(config.contains("cluster-init: true"), "{config}");
    assert!(first.path("/var/lib/rancher/k3s/server/db/etcd").exists());
    let backups: Vec<String> = std::fs::read_dir(first.path("/var/lib/stackinstall/backups"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        backups
            .iter()
            .any(|name| name.starts_with("backup-before-ha-enable-")),
        "the backup before the move: {backups:?}\n{output}"
    );
    let node = node_object(&cluster, "first").unwrap();
    assert_eq!(
        node["metadata"]["labels"]["node-role.kubernetes.io/etcd"],
        "true"
    );
    // Once is enough; an install afterwards keeps the file as it is.
    let again = stdout(&first.command().args(["ha", "enable"]).assert().success());
    assert!(
        again.contains("already keeps its data in embedded etcd"),
        "{again}"
    );
    first.clear_calls();
    first.install(&[]).success();
    assert!(
        first
            .lines_of("systemctl")
            .iter()
            .all(|l| !l.contains("restart k3s"))
    );
    let (file, _) = join_command(&cluster, "server");
    let (server, _r) = host(&cluster.path(), "server2", "192.0.2.21");
    join(&server, &cluster, "server", &file).success();
}

/// Three servers of one etcd cluster, each its own world.
fn three_servers() -> (Cluster, World, World, Vec<Releases>) {
    let cluster = first_host(&[FIRST, "192.0.2.21", "192.0.2.22"], true);
    let (file, _) = join_command(&cluster, "server");
    let (two, r2) = host(&cluster.path(), "server2", "192.0.2.21");
    join(&two, &cluster, "server", &file).success();
    let (three, r3) = host(&cluster.path(), "server3", "192.0.2.22");
    join(&three, &cluster, "server", &file).success();
    (cluster, two, three, vec![r2, r3])
}

#[test]
fn a_server_leaves_with_quorum_and_is_refused_without() {
    let (cluster, two, three, _releases) = three_servers();
    three.stop_k3s();
    let error = stderr(&two.command().args(["leave"]).assert().code(2));
    assert!(error.contains("no quorum"), "{error}");
    assert!(
        two.path("/usr/local/bin/k3s-uninstall.sh").exists(),
        "nothing changed"
    );
    three.start_k3s();
    let output = stdout(&three.command().args(["leave"]).assert().success());
    assert!(output.contains("left the cluster"), "{output}");
    assert!(node_object(&cluster, "server3").is_none());
    assert!(!three.path("/usr/local/bin/k3s-uninstall.sh").exists());
    assert!(!three.path("/etc/stackinstall/k3s-join-token").exists());
    // The first host is untouched: its K3s runs, its export is there.
    assert!(cluster.first.k3s_running());
    assert!(cluster.first.path("/etc/exports").exists());
    let error = stderr(&cluster.on_first(&["leave"]).code(2));
    assert!(error.contains("did not join a cluster"), "{error}");
}

#[test]
fn an_agent_leaves_once_a_server_took_its_node_out() {
    let cluster = first_host(&[FIRST, "192.0.2.11"], false);
    let (file, _) = join_command(&cluster, "agent");
    let (node, _r) = host(&cluster.path(), "worker1", "192.0.2.11");
    join(&node, &cluster, "agent", &file).success();
    let error = stderr(&node.command().args(["leave"]).assert().code(2));
    assert!(error.contains("nodes remove worker1"), "{error}");
    cluster.on_first(&["nodes", "remove", "worker1"]).success();
    assert!(node_object(&cluster, "worker1").is_none());
    node.command().args(["leave", "--yes"]).assert().success();
    assert!(!node.path("/usr/local/bin/k3s-agent-uninstall.sh").exists());
    assert!(!node.path("/etc/rancher/k3s/config.yaml").exists());
}

#[test]
fn a_join_killed_anywhere_converges_on_the_next_run() {
    let cluster = first_host(&[FIRST, "192.0.2.11"], false);
    let (file, _) = join_command(&cluster, "agent");
    let args = join_args(&cluster, "agent", &file);
    let (reference, _r) = host(&cluster.path(), "reference", "192.0.2.11");
    let points = reference.kill_trace(&args);
    assert!(points.len() >= 10, "{points:?}");
    for (index, point) in points.iter().enumerate() {
        let name = format!("killed{index}");
        let (node, _r) = host(&cluster.path(), &name, "192.0.2.11");
        assert!(node.killed_at(&args, point), "not killed at {point}");
        let again = node.command().args(&args).assert();
        assert!(
            again.get_output().status.success(),
            "after {point}: {}",
            stderr(&again)
        );
        let config = node.read("/etc/rancher/k3s/config.yaml");
        assert!(config.contains("token-file"), "after {point}: {config}");
        let worker =
            node_object(&cluster, &name).unwrap_or_else(|| panic!("no node after {point}"));
        assert_eq!(
            worker["status"]["nodeInfo"]["kubeletVersion"],
            "v1.29.0+k3s1"
        );
        node.clear_calls();
        node.command().args(&args).assert().success();
        assert!(
            node.lines_of("k3s-install").is_empty(),
            "a third run after {point} changed K3s"
        );
        assert!(
            node.lines_of("apt-get").is_empty(),
            "a third run after {point} ran apt"
        );
    }
    crate::support::report(&format!(
        "join: killed at each of its {} kill points, every re-run converged",
        points.len()
    ));
}

#[test]
fn a_leave_killed_anywhere_converges_on_the_next_run() {
    let (cluster, two, three, _releases) = three_servers();
    let args = vec!["leave".to_string()];
    let points = three.kill_trace(&args);
    assert!(
        points.iter().any(|p| p.contains("kubectl delete node")),
        "{points:?}"
    );
    for point in &points {
        // server3 back in the cluster, as before its leave.
        let (file, _) = join_command(&cluster, "server");
        let _ = std::fs::remove_dir_all(three.path("/var/lib/stackinstall"));
        join(&three, &cluster, "server", &file).success();
        assert!(three.killed_at(&args, point), "not killed at {point}");
        three.command().args(&args).assert().success();
        assert!(node_object(&cluster, "server3").is_none(), "after {point}");
        assert!(
            !three.path("/usr/local/bin/k3s-uninstall.sh").exists(),
            "after {point}"
        );
    }
    assert!(node_object(&cluster, "server2").is_some() && two.k3s_running());
    crate::support::report(&format!(
        "leave: killed at each of its {} kill points, every re-run converged",
        points.len()
    ));
}

#[test]
fn doctor_names_an_etcd_without_quorum_and_nodes_of_two_versions() {
    let (cluster, two, three, _releases) = three_servers();
    two.stop_k3s();
    three.stop_k3s();
    let assert = cluster.on_first(&["doctor", "--checks", "cluster", "--output", "json"]);
    let report = stdout(&assert);
    assert!(report.contains("etcd-no-quorum"), "{report}");
    assert!(report.contains("1 of 3 etcd members are Ready"), "{report}");
    two.start_k3s();
    three.start_k3s();
    let store = stackinstall_fakes::store::Store::new(&cluster.path());
    let mut node = node_object(&cluster, "server3").unwrap();
    node["status"]["nodeInfo"]["kubeletVersion"] = serde_json::json!("v1.28.5+k3s1");
    store.put(&node).unwrap();
    let report = stdout(&cluster.on_first(&["doctor", "--checks", "cluster", "--output", "json"]));
    assert!(report.contains("node-version-skew"), "{report}");
    assert!(!report.contains("etcd-no-quorum"), "{report}");
}

#[test]
fn two_servers_joining_at_once_go_one_after_the_other() {
    let cluster = first_host(&[FIRST, "192.0.2.21", "192.0.2.22"], true);
    let (file, _) = join_command(&cluster, "server");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("lock_token"),
        "a server's join file can take the lock"
    );
    // Another server is joining: it holds the Lease.
    let store = hold_lease(&cluster, "server3", 900);
    let (second, _r) = host(&cluster.path(), "server2", "192.0.2.21");
    let mut child = second
        .std_command()
        .args(join_args(&cluster, "server", &file))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // It tries the lock, finds it held, and keeps waiting: three refused
    // creates, and K3s's install script not run meanwhile.
    let refused = || {
        second
            .calls()
            .iter()
            .filter(|call| {
                call.program == "kubectl" && call.args.first().is_some_and(|a| a == "create")
            })
            .count()
    };
    let started = std::time::Instant::now();
    while refused() < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the second join ended while the lock was held"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the join never tried the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        second.lines_of("k3s-install").is_empty(),
        "joined while another server held the lock"
    );
    // The other server is done: it lets go; the second goes on.
    let leases = stackinstall_fakes::store::Resource::of_kind("Lease").unwrap();
    store.delete(leases, Some("kube-system"), "stackinstall-server-join");
    assert!(child.wait().unwrap().success());
    assert!(node_object(&cluster, "server2").is_some());
    assert!(
        store
            .get(leases, Some("kube-system"), "stackinstall-server-join")
            .is_none(),
        "the lock is let go"
    );
    assert!(
        !second
            .path("/etc/stackinstall/join-lock.kubeconfig")
            .exists(),
        "the lock's token is removed"
    );
    let lock_token = toml::from_str::<toml::Table>(&text).unwrap()["lock_token"]
        .as_str()
        .unwrap()
        .to_string();
    for call in second.calls() {
        assert!(!call.line().contains(&lock_token), "the lock token in argv");
    }
    assert!(
        !second.logs().contains(&lock_token),
        "the lock token in a log"
    );
}

#[test]
fn join_plan_shows_the_node_profile_and_changes_nothing() {
    let cluster = first_host(&[FIRST, "192.0.2.11"], false);
    let (file, _) = join_command(&cluster, "agent");
    let token = token_of(&file);
    let (node, _r) = host(&cluster.path(), "worker1", "192.0.2.11");
    node.set_packages(&[]);
    let assert = node
        .command()
        .args(join_args(&cluster, "agent", &file))
        .arg("--plan")
        .assert()
        .success();
    let plan = stdout(&assert);
    assert!(plan.contains("INSTALL_K3S_EXEC='agent'"), "{plan}");
    assert!(plan.contains("/etc/rancher/k3s/config.yaml"), "{plan}");
    assert!(plan.contains("nfs-common"), "{plan}");
    assert!(plan.contains("not on a joined node"), "{plan}");
    assert!(!node.path("/etc/rancher/k3s/config.yaml").exists());
    assert!(!node.path("/etc/stackinstall/k3s-join-token").exists());
    assert!(node.lines_of("k3s-install").is_empty() && node.lines_of("apt-get").is_empty());
    assert_no_token(&[&node], &token, &[plan, stderr(&assert)]);
}

#[test]
fn a_host_replaced_under_another_name_at_the_same_address_is_told_to_remove_the_old_node() {
    let cluster = first_host(&[FIRST, "192.0.2.21"], true);
    let (file, _) = join_command(&cluster, "server");
    let (old, _r) = host(&cluster.path(), "server2", "192.0.2.21");
    join(&old, &cluster, "server", &file).success();
    old.stop_k3s();
    let (file, _) = join_command(&cluster, "server");
    let (new, _r2) = host(&cluster.path(), "server2b", "192.0.2.21");
    let error = stderr(&join(&new, &cluster, "server", &file).code(2));
    assert!(
        error.contains("still has node `server2` at this host's address"),
        "{error}"
    );
    assert!(error.contains("nodes remove server2"), "{error}");
    assert!(new.lines_of("k3s-install").is_empty());
}

/// The Node `name`'s kubelet version in the shared cluster.
fn version_of(cluster: &Cluster, name: &str) -> String {
    let node = node_object(cluster, name).unwrap_or_else(|| panic!("no node {name}"));
    node["status"]["nodeInfo"]["kubeletVersion"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The backups a host took before an upgrade.
fn backups_before_upgrade(world: &World) -> Vec<String> {
    std::fs::read_dir(world.path("/var/lib/stackinstall/backups"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("backup-before-k3s-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_cluster_is_upgraded_servers_one_at_a_time_then_the_agents() {
    let (old, new) = ("v1.29.0+k3s1", "v1.29.5+k3s1");
    let cluster = first_host(&[FIRST, "192.0.2.21", "192.0.2.31"], true);
    let (file, _) = join_command(&cluster, "server");
    let (mut two, two_releases) = host(&cluster.path(), "server2", "192.0.2.21");
    join(&two, &cluster, "server", &file).success();
    let (file, _) = join_command(&cluster, "agent");
    let (mut agent, agent_releases) = host(&cluster.path(), "worker1", "192.0.2.31");
    agent.set_packages(&[]);
    join(&agent, &cluster, "agent", &file).success();
    for releases in [&cluster.releases, &two_releases, &agent_releases] {
        crate::upgrade::publish_k3s(releases, new);
    }
    let upgrade_first = || {
        cluster
            .first
            .command()
            .args(["install", "--domain", DOMAIN, "--self-signed", "--yes"])
            .env("STACKINSTALL_VERSIONS__K3S", new)
            .assert()
    };
    let unpacked = |world: &World| {
        let name = &backups_before_upgrade(world)[0];
        let bytes = std::fs::read(world.path(&format!("/var/lib/stackinstall/backups/{name}")));
        stackinstall::backup::unpack(&bytes.unwrap(), &stackinstall::backup::Protection::None)
            .expect("the backup verifies")
    };

    // The second server down: the first's upgrade would leave one etcd
    // member of two started. Refused before anything changes.
    two.stop_k3s();
    let before = cluster.first.files(false);
    let refused = stderr(&upgrade_first().code(2));
    assert!(
        refused.contains("1 of the cluster's 2 etcd members is not Ready (server2)"),
        "{refused}"
    );
    assert_eq!(
        cluster.first.files(false),
        before,
        "a refused upgrade changed files"
    );
    two.start_k3s();

    // The first server goes first, backed up, and names who follows. It
    // takes the servers' lock: another server held it (its join killed,
    // the Lease left to expire), so it waits for the Lease to expire.
    let store = hold_lease(&cluster, "server3", 2);
    let leases = stackinstall_fakes::store::Resource::of_kind("Lease").unwrap();
    cluster.first.clear_calls();
    let upgraded = upgrade_first().success();
    let kubectl = cluster.first.lines_of("kubectl");
    let at = |words: &str| {
        (kubectl.iter())
            .position(|line| line.contains(words))
            .unwrap_or_else(|| panic!("no `{words}` in {kubectl:#?}"))
    };
    assert!(at("get lease stackinstall-server-join") < at("delete lease stackinstall-server-join"));
    let installed = (cluster.first.calls().iter())
        .position(|call| call.line().contains("k3s-install"))
        .expect("the install script ran");
    let taken = (cluster.first.calls().iter())
        .rposition(|call| call.line().contains("create -f -"))
        .expect("the Lease was created");
    assert!(taken < installed, "the lock is taken before K3s changes");
    assert!(
        (store.get(leases, Some("kube-system"), "stackinstall-server-join")).is_none(),
        "the lock is let go"
    );
    let said = stderr(&upgraded);
    assert!(
        said.contains("then the other servers one at a time (server2), then the agents (worker1)"),
        "{said}"
    );
    assert_eq!(version_of(&cluster, "first"), new);
    assert_eq!(version_of(&cluster, "server2"), old);
    assert_eq!(backups_before_upgrade(&cluster.first).len(), 1);
    let members = unpacked(&cluster.first);
    assert!(
        (members.member(stackinstall::backup::members::K3S_ETCD_SNAPSHOT)).is_some(),
        "the first server's backup holds the etcd snapshot"
    );

    // An agent's file waits for every server.
    let refused = cluster
        .on_first(&["join-command", "--role", "agent"])
        .code(2);
    let said = stderr(&refused);
    assert!(
        said.contains("and server2 (server, v1.29.0+k3s1) is not there yet"),
        "{said}"
    );

    // The second server joins again with the cluster's new version: backed
    // up first (its etcd snapshot and token), then upgraded in place.
    let (file, _) = join_command(&cluster, "server");
    two.set_env("STACKINSTALL_VERSIONS__K3S", new);
    let rejoined = join(&two, &cluster, "server", &file);
    let said = stderr(&rejoined);
    assert!(rejoined.get_output().status.success(), "{said}");
    assert!(
        said.contains("backup before the upgrade of K3s v1.29.0+k3s1 → v1.29.5+k3s1"),
        "{said}"
    );
    assert!(said.contains("then the agents (worker1)"), "{said}");
    assert_eq!(version_of(&cluster, "server2"), new);
    assert!(two.read("/usr/local/bin/k3s").contains(new));
    assert_eq!(backups_before_upgrade(&two).len(), 1);
    let members = unpacked(&two);
    for member in [
        stackinstall::backup::members::K3S_ETCD_SNAPSHOT,
        stackinstall::backup::members::K3S_TOKEN,
    ] {
        assert!(
            members.member(member).is_some(),
            "{member} not in the backup"
        );
    }
    let lease = store.get(leases, Some("kube-system"), "stackinstall-server-join");
    assert!(lease.is_none(), "the join lock was let go: {lease:?}");

    // Then the agent: no backup (it holds none of the cluster's data).
    let (file, _) = join_command(&cluster, "agent");
    agent.set_env("STACKINSTALL_VERSIONS__K3S", new);
    let rejoined = join(&agent, &cluster, "agent", &file);
    let said = stderr(&rejoined);
    assert!(rejoined.get_output().status.success(), "{said}");
    assert!(!said.contains("backup before"), "{said}");
    assert_eq!(version_of(&cluster, "worker1"), new);
    assert!(backups_before_upgrade(&agent).is_empty());

    let listed = stdout(&cluster.on_first(&["nodes"]).success());
    assert!(!listed.contains("different K3s versions"), "{listed}");
    // Every node on the new K3s: a re-run of each changes nothing.
    let again = cluster
        .first
        .command()
        .args([
            "install",
            "--domain",
            DOMAIN,
            "--self-signed",
            "--yes",
            "--output",
            "json",
        ])
        .env("STACKINSTALL_VERSIONS__K3S", new)
        .assert()
        .success();
    let changed: Vec<_> = (crate::support::outcomes(&again).into_iter())
        .filter(|(_, result)| result == "changed")
        .collect();
    assert!(changed.is_empty(), "the re-run changed {changed:?}");
    for node in [&two, &agent] {
        let role = if std::ptr::eq(node, &two) {
            "server"
        } else {
            "agent"
        };
        let (file, _) = join_command(&cluster, role);
        let said = stderr(&join(node, &cluster, role, &file).success());
        assert!(!said.contains("upgrade K3s"), "{said}");
    }
    crate::support::report(
        "join: a cluster of two servers and an agent upgraded in K3s's order: the first server refused while the second was down, then backed up and upgraded naming who follows; the agent's join file refused until every server ran the new K3s; the second server backed up and upgraded by `join`; the agent upgraded without a backup",
    );
}

/// The servers' Lease held by `holder` from now, for `seconds`, in the
/// shared cluster; the cluster's store.
fn hold_lease(cluster: &Cluster, holder: &str, seconds: u64) -> stackinstall_fakes::store::Store {
    let store = stackinstall_fakes::store::Store::new(&cluster.path());
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    store
        .put(&serde_json::json!({
            "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
            "metadata": { "name": "stackinstall-server-join", "namespace": "kube-system" },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": seconds,
                "acquireTime": now, "renewTime": now },
        }))
        .unwrap();
    store
}

/// `nodes --output json` on the first host: the nodes, and the text.
fn listed_nodes(cluster: &Cluster) -> (Vec<serde_json::Value>, String) {
    let listed = stdout(&cluster.on_first(&["nodes", "--output", "json"]).success());
    let nodes: serde_json::Value = serde_json::from_str(&listed).unwrap();
    (
        nodes["nodes"].as_array().cloned().unwrap_or_default(),
        listed,
    )
}

/// How many datastores a server set aside to join a restored cluster.
fn datastores_set_aside(node: &World) -> usize {
    std::fs::read_dir(node.path("/var/lib/rancher/k3s/server"))
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("db.before-rejoin-")
        })
        .count()
}

/// `backup --unencrypted` on the first host; the archive's path.
fn back_up_first(cluster: &Cluster) -> PathBuf {
    let archive = cluster.first.dir.path().join("cluster.tar.gz");
    let backed_up = (cluster.first.command())
        .args(["backup", "--unencrypted", "--out"])
        .arg(&archive)
        .assert();
    assert!(
        backed_up.get_output().status.success(),
        "{}",
        stderr(&backed_up)
    );
    archive
}

/// `restore --yes ARCHIVE` on the first host. A cluster of K3s alone has
/// no Gateway for the backup to take the domain from: the restore's
/// converge is told it.
fn restore_first(cluster: &Cluster, archive: &Path) -> assert_cmd::assert::Assert {
    (cluster.first.command())
        .args(["restore", "--yes"])
        .arg(archive)
        .env("STACKINSTALL_INSTALL__DOMAIN", DOMAIN)
        .env("STACKINSTALL_INSTALL__SELF_SIGNED", "true")
        .assert()
}

#[test]
fn a_restore_is_made_on_the_first_server_and_the_other_servers_join_again() {
    let cluster = first_host(&[FIRST, "192.0.2.21"], true);
    let (file, _) = join_command(&cluster, "server");
    let (two, _two_releases) = host(&cluster.path(), "server2", "192.0.2.21");
    join(&two, &cluster, "server", &file).success();
    let archive = back_up_first(&cluster);

    // Not on a server that joined: the restore is the first server's.
    let before = two.files(false);
    let refused = stderr(
        &two.command()
            .args(["restore", "--yes"])
            .arg(&archive)
            .assert()
            .code(2),
    );
    assert!(
        refused.contains("a restore is made on the cluster's first server"),
        "{refused}"
    );
    assert_eq!(two.files(false), before, "a refused restore changed files");

    let restored = restore_first(&cluster, &archive);
    let said = stderr(&restored);
    assert!(restored.get_output().status.success(), "{said}");
    assert!(
        said.contains("the other servers (server2) must join it again"),
        "{said}"
    );
    // The second server's etcd is of the cluster before the reset: it
    // stays out (not Ready) and its K3s cannot start as it is.
    let node = node_object(&cluster, "server2").unwrap();
    let (nodes, listed) = listed_nodes(&cluster);
    let second = (nodes.iter())
        .find(|node| node["name"] == "server2")
        .unwrap_or_else(|| panic!("{listed}; {node}"));
    assert_eq!(second["ready"], false, "{listed}");

    // It joins again with a new file: its old datastore set aside, K3s
    // started empty, Ready in the restored cluster.
    let (file, _) = join_command(&cluster, "server");
    let plan = stdout(
        &two.command()
            .args(join_args(&cluster, "server", &file))
            .arg("--plan")
            .assert()
            .success(),
    );
    assert!(plan.contains("move its datastore"), "{plan}");
    let rejoined = join(&two, &cluster, "server", &file);
    let said = stderr(&rejoined);
    assert!(rejoined.get_output().status.success(), "{said}");
    let aside = datastores_set_aside(&two);
    assert_eq!(aside, 1, "the old datastore is kept aside");
    let (nodes, listed) = listed_nodes(&cluster);
    assert!(nodes.iter().all(|node| node["ready"] == true), "{listed}");
    // A second run of the same join sets nothing aside again.
    let again = stderr(&join(&two, &cluster, "server", &file).success());
    assert!(!again.contains("aside"), "{again}");
    crate::support::report(
        "join: a restore refused on a joined server; made on the first server (cluster reset), naming the other server to join again, which was not Ready until its `join` set its old datastore aside and it joined the restored cluster",
    );
}

#[test]
fn a_rejoin_after_a_restore_killed_anywhere_converges_and_sets_the_datastore_aside_once() {
    let cluster = first_host(&[FIRST, "192.0.2.21"], true);
    let archive = back_up_first(&cluster);
    restore_first(&cluster, &archive).success();
    let (file, _) = join_command(&cluster, "server");
    let args = join_args(&cluster, "server", &file);
    // A server that held the cluster's data before the restore: joined,
    // then its etcd data made the old cluster's (the fake's generation).
    let stale_server = |name: &str| {
        let (node, releases) = host(&cluster.path(), name, "192.0.2.21");
        node.command().args(&args).assert().success();
        node.write(members::MEMBER_OF, "0\n");
        (node, releases)
    };
    let (reference, _r) = stale_server("reference");
    let points = reference.kill_trace(&args);
    assert_eq!(datastores_set_aside(&reference), 1);
    let set_aside = (points.iter())
        .position(|point| point.contains("rename"))
        .unwrap_or_else(|| panic!("no rename among {points:#?}"));
    assert!(set_aside > 0, "{points:?}");
    // Every trial's host stays up: a joining server waits for every node.
    let mut hosts = Vec::new();
    for (index, point) in points.iter().enumerate() {
        let name = format!("killed{index}");
        let (node, releases) = stale_server(&name);
        assert!(node.killed_at(&args, point), "not killed at {point}");
        let again = node.command().args(&args).assert();
        assert!(
            again.get_output().status.success(),
            "after {point}: {}",
            stderr(&again)
        );
        assert_eq!(
            datastores_set_aside(&node),
            1,
            "after {point}: the datastore set aside once"
        );
        let ready = node_object(&cluster, &name).map(|node| {
            stackinstall_fakes::programs::members::with_readiness(node, &cluster.path())
        });
        assert_eq!(
            ready
                .as_ref()
                .map(|node| node["status"]["conditions"][0]["status"].clone()),
            Some(serde_json::json!("True")),
            "after {point}: {ready:?}"
        );
        let third = stderr(&node.command().args(&args).assert().success());
        assert!(
            !third.contains("aside"),
            "a third run after {point} set aside again: {third}"
        );
        hosts.push((node, releases));
    }
    crate::support::report(&format!(
        "join: a server's rejoin after a restore killed at each of its {} kill points converged on the next run: its old datastore set aside exactly once, the server Ready in the restored cluster",
        points.len()
    ));
}

#[test]
fn a_node_down_does_not_stop_the_first_servers_install_which_names_it() {
    let cluster = first_host(&[FIRST, "192.0.2.11"], false);
    let (file, _) = join_command(&cluster, "agent");
    let (agent, _r) = host(&cluster.path(), "worker1", "192.0.2.11");
    agent.set_packages(&[]);
    join(&agent, &cluster, "agent", &file).success();
    agent.set_unit("k3s-agent", true, false);
    // K3s here is done and its node Ready: the agent down stops nothing.
    let rerun = cluster.first.install(&["--yes"]);
    assert!(rerun.get_output().status.success(), "{}", stderr(&rerun));
    // The step looked at again says which node is down, and waits for none.
    let plan = cluster
        .first
        .install(&["--plan", "--redo", "k3s"])
        .success();
    let said = stdout(&plan);
    assert!(
        said.contains(
            "K3s v1.29.0+k3s1 is installed and its node is Ready; other nodes not Ready: worker1"
        ),
        "{said}"
    );
    assert!(!said.contains("wait until"), "{said}");
    crate::support::report(
        "join: an agent down: the first server's re-run succeeds (its own node is Ready), and the k3s step names the agent not Ready rather than waiting for it",
    );
}
