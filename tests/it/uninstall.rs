//! `stackinstall uninstall`: install in the fake cluster world of
//! `cluster.rs`, uninstall with each scope, and check what the fakes
//! were asked to delete, which files remain under the root, and what the
//! state file says; `--delete-db` against the real MariaDB and RabbitMQ.

use stackinstall::state::Server;
use std::collections::BTreeSet;

use crate::support::servers::{
    block_on, mongodb_admin, mongodb_user_exists, mysql_as_root as mysql_root, mysql_root as root,
    rabbitmq_users, rabbitmq_vhosts, rabbitmqctl, unique,
};
use crate::support::{Action, Call, Rule, World, cluster, full, json, servers, stderr, stdout};

const CLUSTER_STEPS: &str = "credentials,k3s,helm,istio,storage,namespace,tls,gateway";

/// The cluster world, with `iptables-save` and `ip` that show what K3s
/// leaves behind.
fn world() -> World {
    let (mut world, _releases) = cluster::cluster_world();
    world.fakes(&["iptables-save", "ip"]);
    world.configure(|config| {
        config.iptables_chains = vec![
            ":INPUT ACCEPT [0:0]".into(),
            ":KUBE-FORWARD - [0:0]".into(),
            ":CNI-HOSTPORT-DNAT - [0:0]".into(),
        ];
        config.ip_links = vec![
            "1: lo: <LOOPBACK> mtu 65536".into(),
            "5: cni0: <BROADCAST> mtu 1450".into(),
        ];
    });
    world.set_env("STACKINSTALL_ONLY", CLUSTER_STEPS);
    world.set_env("STACKINSTALL_CLUSTER__HOST_IP", "10.1.2.3");
    world
}

fn uninstall(world: &World, args: &[&str]) -> assert_cmd::assert::Assert {
    world.command().arg("uninstall").args(args).assert()
}

/// The `kubectl delete`, `istioctl uninstall`, `helm uninstall` calls and
/// the K3s uninstall script, as lines.
fn deletions(world: &World) -> Vec<String> {
    world
        .calls()
        .iter()
        .filter(|call| {
            matches!(
                (call.program.as_str(), call.args.first().map(String::as_str)),
                ("kubectl", Some("delete"))
                    | ("istioctl", Some("uninstall"))
                    | ("helm", Some("uninstall"))
                    | ("apt-get", _)
            )
        })
        .map(Call::line)
        .collect()
}

/// The state file, as the library reads it.
fn read_state(world: &World) -> stackinstall::state::State {
    let file = stackinstall::state::StateFile::new(&stackinstall::host::Host::new(&world.root));
    file.load().unwrap()
}

/// The steps with a checkpoint in `state.toml`.
fn checkpoints(world: &World) -> BTreeSet<String> {
    let state: toml::Table =
        toml::from_str(&world.read("/var/lib/stackinstall/state.toml")).unwrap();
    state
        .get("steps")
        .and_then(toml::Value::as_table)
        .map(|steps| steps.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Whether the fake cluster has the object `KIND/NAMESPACE/NAME`.
fn object_exists(world: &World, object: &str) -> bool {
    let [kind, namespace, name] =
        <[&str; 3]>::try_from(object.split('/').collect::<Vec<_>>()).expect("KIND/NAMESPACE/NAME");
    world.object(kind, namespace, name).is_some()
}

/// Whether K3s's uninstall script ran.
fn k3s_uninstalled(world: &World) -> bool {
    world
        .calls()
        .iter()
        .any(|call| call.program == "k3s-uninstall")
}

#[test]
fn default_scope_removes_the_gateway_and_tls_secrets_and_keeps_the_rest() {
    let world = world();
    world.install(&[]).success();
    let credentials = world.read("/etc/stackinstall/credentials.toml");
    world.clear_calls();

    let run = uninstall(&world, &["--yes"]).success();
    let out = stdout(&run);
    assert_eq!(
        deletions(&world),
        [
            "kubectl delete virtualservice stackbill-vs --ignore-not-found -n sb-apps",
            "kubectl delete gateway stackbill-gateway --ignore-not-found -n sb-apps",
            "kubectl delete secret stackbill-tls-secret --ignore-not-found -n istio-system",
            "kubectl delete secret stackbill-tls-secret --ignore-not-found -n sb-apps",
        ],
        "{out}"
    );
    assert!(!object_exists(&world, "gateway/sb-apps/stackbill-gateway"));
    assert!(object_exists(&world, "namespace/-/sb-apps"));
    assert_eq!(
        checkpoints(&world),
        set(&[
            "credentials",
            "k3s",
            "helm",
            "istio",
            "storage",
            "namespace"
        ])
    );
    assert!(
        object_exists(&world, "storageclass/-/nfs-client"),
        "the provisioner goes only with --delete-infra"
    );
    assert_eq!(
        world.read("/etc/stackinstall/credentials.toml"),
        credentials
    );
    for binary in ["k3s", "helm", "istioctl", "k3s-uninstall.sh"] {
        assert!(
            world.path(&format!("/usr/local/bin/{binary}")).exists(),
            "{binary}"
        );
    }
    assert!(out.contains("Kept on purpose:"), "{out}");
    assert!(out.contains("`--delete-namespace` removes it"), "{out}");
    assert!(out.contains("`--delete-db` removes it"), "{out}");
    let logs: Vec<String> = world
        .files(true)
        .into_keys()
        .filter(|path| path.starts_with("/var/log/stackinstall/uninstall-"))
        .collect();
    assert_eq!(logs.len(), 1, "one uninstall log: {logs:?}");

    world.clear_calls();
    let second = uninstall(&world, &["--yes"]).success();
    assert!(
        stdout(&second).contains("Nothing to remove"),
        "{}",
        stdout(&second)
    );
    assert!(deletions(&world).is_empty());

    world.clear_calls();
    let again = world.install(&["--output", "json"]).success();
    let report = json(&again);
    let result = |id: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["id"] == id)
            .unwrap()["result"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(result("tls"), "changed");
    assert_eq!(result("gateway"), "changed");
    assert_eq!(result("namespace"), "already-done");
    assert_eq!(result("k3s"), "already-done");
    assert_eq!(
        world.read("/etc/stackinstall/credentials.toml"),
        credentials
    );
}

#[test]
fn without_a_terminal_and_without_yes_nothing_is_removed() {
    let world = world();
    world.install(&[]).success();
    let before = world.read("/var/lib/stackinstall/state.toml");
    world.clear_calls();
    let run = uninstall(&world, &["--all"]).code(2);
    let error = stderr(&run);
    assert!(error.contains("no terminal"), "{error}");
    assert!(error.contains("--yes"), "{error}");
    assert!(
        stdout(&run).contains("kubectl delete namespace sb-apps"),
        "the list is printed first: {}",
        stdout(&run)
    );
    assert!(deletions(&world).is_empty());
    assert!(!k3s_uninstalled(&world));
    assert_eq!(world.read("/var/lib/stackinstall/state.toml"), before);
}

#[test]
fn plan_shows_what_would_go_and_changes_nothing() {
    let world = world();
    world.install(&[]).success();
    let before = world.files(false);
    world.clear_calls();
    let run = uninstall(&world, &["--plan", "--all"]).success();
    let out = stdout(&run);
    for expected in [
        "kubectl delete gateway stackbill-gateway",
        "kubectl delete namespace sb-apps --ignore-not-found (and everything in it, PVCs included)",
        "istioctl uninstall --purge -y",
        "k3s-uninstall.sh",
        "remove /etc/stackinstall/credentials.toml",
        "remove /usr/local/bin/helm",
    ] {
        assert!(out.contains(expected), "{expected}:\n{out}");
    }
    assert!(deletions(&world).is_empty());
    assert_eq!(world.files(false), before);

    let json = uninstall(&world, &["--plan", "--output", "json"]).success();
    let plan: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let ids: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gateway", "tls", "preflight"]);
    assert!(
        plan["kept"].to_string().contains("--delete-infra"),
        "{plan}"
    );
}

#[test]
fn delete_pvc_then_delete_namespace() {
    let world = world();
    world.install(&[]).success();
    for claim in ["data-mysql-0", "uploads"] {
        world.put_object(serde_json::json!({ "kind": "PersistentVolumeClaim",
            "metadata": { "name": claim, "namespace": "sb-apps" },
            "spec": { "storageClassName": "nfs-client" } }));
    }
    world.put_object(
        serde_json::json!({ "kind": "StorageClass", "metadata": { "name": "nfs-client" },
        "parameters": { "archiveOnDelete": "true" } }),
    );
    world.clear_calls();

    let run = uninstall(&world, &["--delete-pvc", "--yes"]).success();
    let deleted = deletions(&world);
    for claim in ["data-mysql-0", "uploads"] {
        let line = format!("kubectl delete pvc {claim} --ignore-not-found -n sb-apps");
        assert!(deleted.contains(&line), "{line}: {deleted:?}");
    }
    assert!(stdout(&run).contains("archived-"), "{}", stdout(&run));
    assert!(object_exists(&world, "namespace/-/sb-apps"));
    assert!(checkpoints(&world).contains("namespace"));

    world.clear_calls();
    let again = uninstall(&world, &["--delete-pvc", "--yes"]).success();
    assert!(
        stdout(&again).contains("Nothing to remove"),
        "{}",
        stdout(&again)
    );

    uninstall(&world, &["--delete-namespace", "--yes"]).success();
    assert_eq!(
        deletions(&world),
        ["kubectl delete namespace sb-apps --ignore-not-found"]
    );
    assert!(!object_exists(&world, "namespace/-/sb-apps"));
    assert_eq!(
        checkpoints(&world),
        set(&["credentials", "k3s", "helm", "istio", "storage"])
    );
}

#[test]
fn all_removes_the_cluster_reports_leftovers_and_a_new_install_has_new_passwords() {
    let world = world();
    world.install(&[]).success();
    let credentials = world.read("/etc/stackinstall/credentials.toml");
    world.clear_calls();

    let run = uninstall(&world, &["--all", "--yes"]).success();
    let out = stdout(&run);
    let deleted = deletions(&world);
    assert!(
        deleted.contains(&"istioctl uninstall --purge -y".to_string()),
        "{deleted:?}"
    );
    assert!(
        deleted.contains(&"kubectl delete namespace istio-system --ignore-not-found".to_string())
    );
    assert!(k3s_uninstalled(&world), "{out}");
    let position = |line: &str| deleted.iter().position(|d| d == line);
    let provisioner = position(
        "helm uninstall --namespace kube-system --wait -- nfs-subdir-external-provisioner",
    );
    let namespace = position("kubectl delete namespace sb-apps --ignore-not-found");
    assert!(
        provisioner.is_some() && namespace < provisioner,
        "the provisioner goes after the namespace's PVCs: {deleted:?}"
    );
    assert!(!object_exists(&world, "storageclass/-/nfs-client"));
    for binary in ["helm", "istioctl"] {
        assert!(
            !world.path(&format!("/usr/local/bin/{binary}")).exists(),
            "{binary}"
        );
    }
    assert!(!world.path("/etc/stackinstall/credentials.toml").exists());
    assert!(
        !world.path("/root/.kube/config").exists(),
        "root's copy of the kubeconfig goes with K3s"
    );
    assert_eq!(checkpoints(&world), BTreeSet::new());
    for leftover in [
        "iptables chain KUBE-FORWARD",
        "iptables chain CNI-HOSTPORT-DNAT",
        "network link cni0",
    ] {
        assert!(out.contains(leftover), "{leftover}:\n{out}");
    }

    let second = uninstall(&world, &["--all", "--yes"]).success();
    assert!(stdout(&second).contains("Nothing to remove"));

    world.install(&[]).success();
    let fresh = world.read("/etc/stackinstall/credentials.toml");
    assert_ne!(fresh, credentials, "new passwords after --delete-db");
    assert!(world.k3s_running());
}

#[test]
fn a_failed_removal_does_not_stop_the_others_and_a_rerun_finishes() {
    let world = world();
    world.install(&[]).success();
    world.rule(
        Rule::new(
            "kubectl",
            &["delete", "secret"],
            Action::Fail {
                code: 1,
                stderr: "Error from server (Forbidden): secrets \"stackbill-tls-secret\" is forbidden: User \"system:node:node1\" cannot delete resource \"secrets\"\n".into(),
            },
        )
        .while_file("fail-delete-secret"),
    );
    world.touch_state("fail-delete-secret");
    world.clear_calls();

    let run = uninstall(&world, &["--yes"]).code(1);
    let out = stdout(&run);
    assert!(out.contains("Failed (2):"), "{out}");
    assert!(
        out.contains("is forbidden"),
        "the stderr tail is shown: {out}"
    );
    assert!(
        stderr(&run).contains("2 of the removals failed"),
        "{}",
        stderr(&run)
    );
    assert!(!object_exists(&world, "gateway/sb-apps/stackbill-gateway"));
    let left = checkpoints(&world);
    assert!(
        left.contains("tls") && !left.contains("gateway"),
        "{left:?}"
    );

    std::fs::remove_file(world.state("fail-delete-secret")).unwrap();
    world.clear_calls();
    uninstall(&world, &["--yes"]).success();
    assert_eq!(
        deletions(&world),
        [
            "kubectl delete secret stackbill-tls-secret --ignore-not-found -n istio-system",
            "kubectl delete secret stackbill-tls-secret --ignore-not-found -n sb-apps",
        ]
    );
    assert!(!checkpoints(&world).contains("tls"));
}

// ------------------------------------------- --delete-db on real servers --

/// A world whose MySQL and RabbitMQ steps use the test servers, packages
/// reported installed (so the servers count as pre-existing).
fn database_world(user: &str) -> World {
    let mut world = World::new();
    world.host_fakes();
    servers::with_mysql(&mut world, user);
    servers::with_rabbitmq(&mut world, user);
    world.set_env("STACKINSTALL_ONLY", "credentials,mysql,rabbitmq");
    world
}

#[test]
fn delete_db_drops_our_databases_and_users_and_leaves_bystanders() {
    let user = unique("db");
    let bystander = unique("by");
    let world = database_world(&user);
    mysql_root(&[
        format!("CREATE DATABASE `{bystander}`"),
        format!("CREATE USER '{bystander}'@'%' IDENTIFIED BY 'Bystander1'"),
    ]);
    rabbitmqctl(&["add_user", &bystander], "Bystander1");
    let installed = world.install(&[]);
    assert!(
        installed.get_output().status.success(),
        "{}",
        stderr(&installed)
    );
    let seen = mysql_root(&[]);
    assert!(seen.contains(&format!("{user}_app")) && seen.contains(&format!("user:{user}")));
    assert!(rabbitmq_users().contains(&user));
    let credentials = world.read("/etc/stackinstall/credentials.toml");

    let kept = uninstall(&world, &["--yes"]).success();
    assert!(
        stdout(&kept).contains("`--delete-db` removes it"),
        "{}",
        stdout(&kept)
    );
    assert!(
        mysql_root(&[]).contains(&format!("{user}_app")),
        "default keeps the databases"
    );

    let run = uninstall(&world, &["--delete-db", "--yes"]);
    assert!(
        run.get_output().status.success(),
        "{}{}",
        stdout(&run),
        stderr(&run)
    );
    let out = stdout(&run);
    assert!(
        out.contains("they were on the host before the install"),
        "{out}"
    );
    let seen = mysql_root(&[]);
    for gone in [
        format!("{user}_app"),
        format!("{user}_conf"),
        format!("user:{user}"),
    ] {
        assert!(!seen.contains(&gone), "{gone} is still there");
    }
    for kept in [bystander.clone(), format!("user:{bystander}")] {
        assert!(seen.contains(&kept), "the bystander {kept} was removed");
    }
    let users = rabbitmq_users();
    assert!(!users.contains(&user), "{users:?}");
    assert!(users.contains(&bystander), "{users:?}");
    assert!(!world.path("/etc/stackinstall/credentials.toml").exists());
    assert!(
        !world
            .path("/etc/mysql/mariadb.conf.d/stackbill.cnf")
            .exists()
    );
    assert!(
        !world.calls().iter().any(|call| call.program == "apt-get"),
        "pre-existing servers keep their packages"
    );
    assert!(!checkpoints(&world).contains("mysql"));

    let again = uninstall(&world, &["--delete-db", "--yes"]).success();
    assert!(
        stdout(&again).contains("Nothing to remove"),
        "{}",
        stdout(&again)
    );

    let reinstalled = world.install(&[]);
    assert!(
        reinstalled.get_output().status.success(),
        "{}",
        stderr(&reinstalled)
    );
    assert_ne!(
        world.read("/etc/stackinstall/credentials.toml"),
        credentials
    );

    uninstall(&world, &["--delete-db", "--yes"]).success();
    mysql_root(&[
        format!("DROP DATABASE `{bystander}`"),
        format!("DROP USER '{bystander}'@'%'"),
    ]);
    rabbitmqctl(&["delete_user", &bystander], "");
}

// ------------------------------- only what the install made, on real servers --

/// `database_world` with the `mongodb` step too (SecantusDB, through its
/// admin account) and a vhost of its own.
fn servers_world(user: &str) -> World {
    let mut world = database_world(user);
    servers::with_mongodb(&mut world, user);
    world.set_env("STACKINSTALL_RABBITMQ__VHOST", &format!("{user}_vhost"));
    world.set_env("STACKINSTALL_ONLY", "credentials,mysql,mongodb,rabbitmq");
    world
}

#[test]
fn delete_db_keeps_the_databases_users_and_vhost_that_were_there_before() {
    let user = unique("pre");
    let world = servers_world(&user);
    let (theirs, ours) = (format!("{user}_conf"), format!("{user}_app"));
    // Left by an older installer: a database with data, the very user the
    // profile names (another password), the RabbitMQ user and vhost, the
    // MongoDB user, and a /etc/mongod.conf of its own.
    mysql_root(&[
        format!("CREATE DATABASE `{theirs}`"),
        format!("CREATE TABLE `{theirs}`.`settings` (name VARCHAR(40), value VARCHAR(40))"),
        format!("INSERT INTO `{theirs}`.`settings` VALUES ('theme', 'dark'), ('lang', 'de')"),
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'OldScript1'"),
    ]);
    rabbitmqctl(&["add_vhost", &format!("{user}_vhost")], "");
    rabbitmqctl(&["add_user", &user], "OldScript1");
    mongodb_admin(mongodb::bson::doc! {
        "createUser": &user, "pwd": "OldScript1", "roles": [{ "role": "read", "db": "admin" }]
    })
    .unwrap();
    world.write("/etc/mongod.conf", "# the operator's own settings\n");

    let installed = world.install(&[]);
    assert!(
        installed.get_output().status.success(),
        "{}",
        stderr(&installed)
    );
    assert!(mysql_root(&[]).contains(&ours));
    assert_ne!(
        world.read("/etc/mongod.conf"),
        "# the operator's own settings\n"
    );

    let run = uninstall(&world, &["--delete-db", "--yes"]);
    let out = stdout(&run);
    assert!(run.get_output().status.success(), "{out}{}", stderr(&run));
    let kept_lines = [
        format!("database `{theirs}` (was there before the install)"),
        format!("MySQL user `{user}` (was there before the install)"),
        format!("RabbitMQ user `{user}` (was there before the install)"),
        format!("RabbitMQ vhost `{user}_vhost` (was there before the install)"),
        format!("MongoDB user `{user}` (was there before the install)"),
        "it holds the passwords of kept users (mysql, mongodb, rabbitmq)".to_string(),
    ];
    for line in &kept_lines {
        assert!(out.contains(line.as_str()), "{line}:\n{out}");
    }
    let seen = mysql_root(&[]);
    assert!(!seen.contains(&ours), "our database is gone");
    assert!(seen.contains(&theirs) && seen.contains(&format!("user:{user}")));
    let rows: Vec<String> = block_on(async {
        let mut connection = root().await;
        sqlx::query_scalar(&format!(
            "SELECT CAST(CONCAT(name, '=', value) AS CHAR) FROM `{theirs}`.`settings` ORDER BY name"
        ))
        .fetch_all(&mut connection)
        .await
        .unwrap()
    });
    assert_eq!(rows, ["lang=de", "theme=dark"], "their rows are intact");
    assert!(rabbitmq_users().contains(&user));
    assert!(rabbitmq_vhosts().contains(&format!("{user}_vhost")));
    assert!(mongodb_user_exists(&user));
    assert_eq!(
        world.read("/etc/mongod.conf"),
        "# the operator's own settings\n",
        "their mongod.conf is put back"
    );
    assert!(!world.path("/etc/mongod.conf.stackinstall-backup").exists());
    assert!(world.path("/etc/stackinstall/credentials.toml").exists());
    println!(
        "pre-existing objects tried and kept: {} (database with 2 rows, MySQL user, RabbitMQ user and vhost, MongoDB user, mongod.conf)",
        6
    );

    let again = uninstall(&world, &["--delete-db", "--yes"]).success();
    assert!(
        stdout(&again).contains("Nothing to remove"),
        "{}",
        stdout(&again)
    );

    mysql_root(&[
        format!("DROP DATABASE `{theirs}`"),
        format!("DROP USER '{user}'@'%'"),
    ]);
    rabbitmqctl(&["delete_user", &user], "");
    rabbitmqctl(&["delete_vhost", &format!("{user}_vhost")], "");
    mongodb_admin(mongodb::bson::doc! { "dropUser": &user }).unwrap();
}

#[test]
fn a_state_without_origins_keeps_and_lists_what_it_cannot_attribute() {
    let user = unique("old");
    let world = database_world(&user);
    let installed = world.install(&[]);
    assert!(
        installed.get_output().status.success(),
        "{}",
        stderr(&installed)
    );
    // The same host as an older stackinstall leaves it: its state file
    // (today's format before origins were recorded) says which steps are
    // done and which servers were there, nothing about each object.
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/state-before-origins.toml"),
    )
    .unwrap();
    world.write("/var/lib/stackinstall/state.toml", &fixture);

    let run = uninstall(&world, &["--delete-db", "--yes"]);
    let out = stdout(&run);
    assert!(run.get_output().status.success(), "{out}{}", stderr(&run));
    let unattributed = [
        format!("database `{user}_app`"),
        format!("database `{user}_conf`"),
        format!("MySQL user `{user}`"),
        format!("RabbitMQ user `{user}`"),
    ];
    for what in &unattributed {
        let line = format!("{what} (the state does not say that the install made it");
        assert!(out.contains(&line), "{line}:\n{out}");
    }
    let seen = mysql_root(&[]);
    for kept in [
        format!("{user}_app"),
        format!("{user}_conf"),
        format!("user:{user}"),
    ] {
        assert!(seen.contains(&kept), "{kept} was removed on a guess");
    }
    assert!(rabbitmq_users().contains(&user));
    assert!(world.path("/etc/stackinstall/credentials.toml").exists());
    println!(
        "objects an older state cannot attribute, kept and listed: {}",
        unattributed.len()
    );

    mysql_root(&[
        format!("DROP DATABASE `{user}_app`"),
        format!("DROP DATABASE `{user}_conf`"),
        format!("DROP USER '{user}'@'%'"),
    ]);
    rabbitmqctl(&["delete_user", &user], "");
}

/// The number in the report's `Failed (N):` line, 0 without one.
fn failed_count(out: &str) -> usize {
    out.lines()
        .find_map(|line| line.strip_prefix("Failed ("))
        .and_then(|rest| rest.split(')').next())
        .map_or(0, |count| count.parse().unwrap())
}

#[test]
fn the_api_going_down_fails_only_the_cluster_removals_and_a_later_uninstall_finishes() {
    let user = unique("api");
    let world = full::quick_full_world(&user);
    let installed = world.install(&[]);
    assert!(
        installed.get_output().status.success(),
        "{}",
        stderr(&installed)
    );
    let scope = ["--delete-db", "--delete-namespace", "--yes"];

    // K3s is gone (its API refuses): each step that must look at the
    // cluster fails, and is listed; the databases' removals are done.
    world.stop_k3s();
    let down = uninstall(&world, &scope).code(1);
    let out = stdout(&down);
    let failed_down = failed_count(&out);
    assert!(failed_down > 0, "{out}");
    assert!(out.contains("look at what to remove"), "{out}");
    assert!(
        out.contains("was refused"),
        "the API's answer is shown: {out}"
    );
    assert!(
        stderr(&down).contains("of the removals failed"),
        "{}",
        stderr(&down)
    );
    let seen = mysql_root(&[]);
    assert!(
        !seen.contains(&format!("user:{user}")),
        "our MySQL user went anyway"
    );
    assert!(!seen.contains(&format!("{user}_app")));
    assert!(!rabbitmq_users().contains(&user));
    assert!(!mongodb_user_exists(&user));
    assert!(!checkpoints(&world).contains("mysql"));

    // The API is back, and goes down again after the first `kubectl delete`.
    world.start_k3s();
    world.rule(
        Rule::new("kubectl", &["delete"], Action::StopK3sAfter)
            .while_file("down-after-delete")
            .once(),
    );
    world.touch_state("down-after-delete");
    let mid = uninstall(&world, &scope).code(1);
    let out = stdout(&mid);
    let failed_mid = failed_count(&out);
    assert!(failed_mid > 0, "{out}");
    assert!(out.contains("Removed ("), "{out}");

    world.start_k3s();
    let finished = uninstall(&world, &scope);
    assert!(
        finished.get_output().status.success(),
        "{}{}",
        stdout(&finished),
        stderr(&finished)
    );
    let again = uninstall(&world, &scope).success();
    assert!(
        stdout(&again).contains("Nothing to remove"),
        "{}",
        stdout(&again)
    );
    println!(
        "removal failures injected and survived: {failed_down} with the API down from the start (the databases' removals done), {failed_mid} with it going down mid-uninstall; a third uninstall finished"
    );
}

#[test]
fn istio_that_was_there_before_is_kept_by_delete_infra() {
    let world = world();
    world.put_object(
        serde_json::json!({ "kind": "Namespace", "metadata": { "name": "istio-system" } }),
    );
    world.put_object(serde_json::json!({ "kind": "Deployment",
        "metadata": { "name": "istiod", "namespace": "istio-system" }, "status": { "readyReplicas": 1 } }));
    world.install(&[]).success();
    world.clear_calls();

    let run = uninstall(&world, &["--delete-infra", "--yes"]).success();
    let out = stdout(&run);
    let deleted = deletions(&world);
    assert!(
        !deleted
            .iter()
            .any(|line| line.starts_with("istioctl uninstall")),
        "{deleted:?}"
    );
    assert!(
        !deleted
            .iter()
            .any(|line| line.contains("namespace istio-system")),
        "{deleted:?}"
    );
    assert!(object_exists(&world, "deployment/istio-system/istiod"));
    assert!(object_exists(&world, "namespace/-/istio-system"));
    assert!(
        out.contains("Istio's control plane (istio-system, istiod) (was there before the install)"),
        "{out}"
    );
    assert!(!world.path("/etc/stackinstall/istio-operator.yaml").exists());
    assert!(k3s_uninstalled(&world), "our K3s goes");
    println!("pre-existing objects tried and kept: 1 (Istio's control plane)");
}

/// dpkg's database holds `installed` at first, and `apt-get` changes it
/// (`apt-get install mariadb-server` brings its versioned packages along,
/// as apt does).
fn fake_packages(world: &World, installed: &[&str]) {
    world.fakes(&["dpkg-query", "apt-get"]);
    world.set_packages(installed);
    world.configure(|config| {
        config.apt_forbidden = false;
        config.package_dependencies.insert(
            "mariadb-server".into(),
            vec![
                "mariadb-server-10.11".into(),
                "mariadb-server-core-10.11".into(),
            ],
        );
    });
}

#[test]
fn a_server_the_install_put_there_is_stopped_and_its_versioned_packages_purged() {
    let user = unique("pkg");
    let mut world = servers_world(&user);
    world.set_env("STACKINSTALL_MYSQL__PACKAGE", "mariadb-server");
    world.set_env("STACKINSTALL_ONLY", "credentials,mysql,mongodb");
    fake_packages(&world, &["mongodb-org"]);
    let installed = world.install(&[]);
    assert!(
        installed.get_output().status.success(),
        "{}",
        stderr(&installed)
    );
    let mut state = read_state(&world);
    assert_eq!(state.facts.mysql.packages, ["mariadb-server"], "{state:?}");
    // As an install that put mongodb-org there leaves the state and host.
    state.facts.mongodb.preexisting = Some(false);
    state.facts.mongodb.packages = vec!["mongodb-org".into()];
    world.write(
        "/var/lib/stackinstall/state.toml",
        &toml::to_string(&state).unwrap(),
    );
    let mut packages = world.packages();
    packages.extend(
        [
            "mongodb-org-server",
            "mongodb-org-mongos",
            "mongodb-org-database",
        ]
        .map(String::from),
    );
    world.set_packages(&packages.iter().map(String::as_str).collect::<Vec<_>>());
    world.clear_calls();

    let run = uninstall(&world, &["--delete-db", "--yes"]);
    assert!(
        run.get_output().status.success(),
        "{}{}",
        stdout(&run),
        stderr(&run)
    );
    let calls: Vec<String> = world
        .calls()
        .iter()
        .filter(|call| {
            call.program == "apt-get" || call.args.first().is_some_and(|a| a == "disable")
        })
        .map(Call::line)
        .collect();
    assert_eq!(
        calls,
        [
            "systemctl disable --now mongod",
            "apt-get -o DPkg::Lock::Timeout=300 -q -y purge mongodb-org mongodb-org-database mongodb-org-mongos mongodb-org-server",
            "systemctl disable --now mariadb.service",
            "apt-get -o DPkg::Lock::Timeout=300 -q -y purge mariadb-server mariadb-server-10.11 mariadb-server-core-10.11",
        ]
    );
    let left = world.packages();
    assert!(left.is_empty(), "every package went: {left:?}");
    assert!(!mysql_root(&[]).contains(&format!("user:{user}")));
    assert!(!mongodb_user_exists(&user));
    assert!(!world.path("/etc/mongod.conf").exists());
}

#[test]
fn an_export_block_without_its_end_marker_is_named_and_nothing_is_removed() {
    let mut world = World::new();
    world.host_fakes();
    world.fake("exportfs");
    world.set_env("STACKINSTALL_ONLY", "nfs");
    world.write("/etc/exports", "/srv/backup 192.168.1.0/24(ro)\n");
    let installed = world.install(&[]);
    assert!(
        installed.get_output().status.success(),
        "{}",
        stderr(&installed)
    );
    // Someone cut the end marker, and other software added a line after.
    let cut: String = world
        .read("/etc/exports")
        .lines()
        .filter(|line| !line.starts_with("# END stackinstall"))
        .map(|line| format!("{line}\n"))
        .chain(["/srv/media 10.0.0.0/8(ro)\n".to_string()])
        .collect();
    world.write("/etc/exports", &cut);

    let run = uninstall(&world, &["--delete-db", "--yes"]).code(1);
    let out = stdout(&run);
    assert!(out.contains("`/etc/exports` line 2"), "{out}");
    assert!(out.contains("no end marker"), "{out}");
    assert_eq!(world.read("/etc/exports"), cut, "nothing was removed");
    assert!(checkpoints(&world).contains("nfs"));
}

#[test]
fn a_full_install_installs_every_missing_package_in_one_apt_transaction() {
    let user = unique("apt");
    let world = full::quick_full_world(&user);
    fake_packages(&world, &[]);
    // MongoDB's signing key as a host that has it already: nothing to fetch.
    world.write("/usr/share/keyrings/mongodb-server-7.0.asc", "key");
    let apt_calls = |world: &World| -> Vec<String> {
        (world.calls().iter())
            .filter(|call| call.program == "apt-get")
            .map(Call::line)
            .collect()
    };

    // The package's install starts RabbitMQ: its plugin list is written
    // before, so the node boots with the management plugin.
    std::fs::remove_file(world.path("/etc/rabbitmq/enabled_plugins")).unwrap();
    let plan = json(&world.install(&["--plan", "--output", "json"]));
    let packages = (plan["steps"].as_array().unwrap().iter())
        .find(|step| step["id"] == "packages")
        .expect("the plan has the packages step");
    let details: Vec<&str> = (packages["actions"].as_array().unwrap().iter())
        .map(|action| action["detail"].as_str().unwrap())
        .collect();
    let plugins = details
        .iter()
        .position(|detail| detail.contains("/etc/rabbitmq/enabled_plugins"));
    let install = details
        .iter()
        .position(|detail| detail.contains(" install "));
    assert!(
        matches!((plugins, install), (Some(plugins), Some(install)) if plugins < install),
        "the plugin list comes before the apt install: {details:#?}"
    );

    let first = world.install(&[]);
    assert!(first.get_output().status.success(), "{}", stderr(&first));
    let calls = apt_calls(&world);
    assert!(
        !world
            .calls()
            .iter()
            .any(|call| call.program == "rabbitmq-plugins"),
        "the node booted with its plugin"
    );
    assert_eq!(
        calls,
        [
            "apt-get -o DPkg::Lock::Timeout=300 -q update",
            "apt-get -o DPkg::Lock::Timeout=300 -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install mysql-server mongodb-org rabbitmq-server nfs-kernel-server",
        ],
        "{}",
        stderr(&first)
    );
    assert!(
        world
            .path("/etc/apt/sources.list.d/mongodb-org-7.0.list")
            .exists()
    );
    let state = read_state(&world);
    for (server, package) in [
        (Server::Mysql, "mysql-server"),
        (Server::Mongodb, "mongodb-org"),
        (Server::Rabbitmq, "rabbitmq-server"),
        (Server::Nfs, "nfs-kernel-server"),
    ] {
        let facts = state.facts.server(server);
        assert!(
            facts.installed_by_us() && facts.packages == [package],
            "{server:?} is recorded as put there by the install:\n{state:?}"
        );
    }

    world.clear_calls();
    let again = world.install(&[]);
    assert!(again.get_output().status.success(), "{}", stderr(&again));
    assert_eq!(
        apt_calls(&world),
        Vec::<String>::new(),
        "a re-run installs nothing"
    );
    println!(
        "apt: {} calls for 4 missing server packages ({}), 0 on a re-run",
        calls.len(),
        calls[1].rsplit(" install ").next().unwrap_or_default()
    );
}

#[test]
fn packages_of_steps_left_out_are_not_installed() {
    let user = unique("aptskip");
    let world = full::quick_full_world(&user);
    fake_packages(&world, &[]);
    let run = world.install(&["--only", "credentials,mysql,nfs"]);
    assert!(run.get_output().status.success(), "{}", stderr(&run));
    let installs: Vec<String> = (world.calls().iter())
        .filter(|call| call.program == "apt-get" && call.args.contains(&"install".to_string()))
        .map(Call::line)
        .collect();
    assert_eq!(installs.len(), 1, "{installs:?}");
    assert!(
        installs[0].ends_with(" install mysql-server nfs-kernel-server"),
        "{installs:?}"
    );
    assert!(
        !world
            .path("/etc/apt/sources.list.d/mongodb-org-7.0.list")
            .exists()
    );

    world.clear_calls();
    let skipped = world.install(&["--skip-db"]);
    assert!(
        skipped.get_output().status.success(),
        "{}",
        stderr(&skipped)
    );
    let text = stderr(&skipped);
    assert!(
        text.contains("- skipped (--skip-db): packages, mysql, mongodb, rabbitmq, nfs"),
        "{text}"
    );
    assert!(
        !world.calls().iter().any(|call| call.program == "apt-get"),
        "{text}"
    );
    println!("apt: packages of 2 steps left out not installed; --skip-db installs none");
}
