//! Upgrades of what the install put there (`src/upgrade.rs`): after a full
//! install with the fake cluster and the real servers, a pinned K3s of
//! another version is an upgrade when the move is one K3s makes (the plan
//! says `upgrade K3s FROM → TO`), and refused before anything changes,
//! naming the version to go through, when it skips a minor, goes down, or
//! leaves the pinned Istio's Kubernetes range.

use crate::support::full::quick_full_world;
use crate::support::servers;
use crate::support::{World, json, plan_lines, report, stderr};

/// `install` with `versions` set from the environment.
fn with_versions(
    world: &World,
    versions: &[(&str, &str)],
    args: &[&str],
) -> assert_cmd::assert::Assert {
    let mut command = world.command();
    command.args([
        "install",
        "--domain",
        crate::support::DOMAIN,
        "--self-signed",
        "--yes",
    ]);
    command.args(args);
    for (key, value) in versions {
        command.env(format!("STACKINSTALL_VERSIONS__{key}"), value);
    }
    command.assert()
}

#[test]
fn a_k3s_upgrade_is_planned_and_skips_downgrades_and_unsupported_pairs_are_refused_before_any_change()
 {
    let world = quick_full_world(&servers::unique("upgrade"));
    world.install(&["--yes"]).success();

    let plan = with_versions(
        &world,
        &[("K3S", "v1.29.5+k3s1")],
        &["--plan", "--output", "json"],
    )
    .success();
    let lines = plan_lines(&json(&plan), &["k3s"]).join("\n");
    assert!(
        lines.contains("upgrade K3s v1.29.0+k3s1 → v1.29.5+k3s1"),
        "the plan does not say it is an upgrade:\n{lines}"
    );

    let refusals: [(&[(&str, &str)], &str); 3] = [
        (
            &[("K3S", "v1.31.0+k3s1")],
            "pin the newest v1.30.x+k3s1 first",
        ),
        (&[("K3S", "v1.28.5+k3s1")], "that is a downgrade"),
        (
            &[("K3S", "v1.30.2+k3s1")],
            "Istio 1.20.3 does not support Kubernetes 1.30",
        ),
    ];
    for (versions, words) in refusals {
        let before = world.files(false);
        world.clear_calls();
        let refused = with_versions(&world, versions, &[]).code(2);
        let said = stderr(&refused);
        assert!(said.contains(words), "{versions:?}: {said}");
        assert_eq!(world.files(false), before, "{versions:?}: files changed");
        let changing: Vec<String> = (world.calls().iter())
            .map(|call| call.line())
            .filter(|line| {
                ["apply", "upgrade", "install", "restart", "delete"]
                    .iter()
                    .any(|verb| line.contains(verb))
            })
            .collect();
        assert!(changing.is_empty(), "{versions:?}: {changing:?}");
    }
    report(
        "upgrade: a K3s patch upgrade planned as such; a skipped minor, a downgrade and a Kubernetes outside Istio's range refused before any change, each naming the way through",
    );
}

/// K3s `version` on the release server: its binary (which prints the
/// version, as `k3s --version` does), the release's checksums and the
/// install script.
pub fn publish_k3s(releases: &crate::support::cluster::Releases, version: &str) {
    let binary =
        format!("#!/bin/sh\necho 'k3s version {version} (4b8e5f8c)'\necho 'go version go1.21.9'\n");
    let sums = format!(
        "{}  k3s\n",
        crate::support::cluster::sha256(binary.as_bytes())
    );
    releases.put(&format!("/k3s/{version}/k3s"), binary.into_bytes());
    releases.put(
        &format!("/k3s/{version}/sha256sum-amd64.txt"),
        sums.into_bytes(),
    );
    releases.put(
        &format!("/k3s-script/{version}/install.sh"),
        b"#!/bin/sh\nexec k3s-install \"$@\"\n".to_vec(),
    );
}

#[test]
fn a_k3s_upgrade_takes_a_backup_first_and_converges() {
    let (mut world, releases) =
        crate::support::full::full_world_and_releases(&servers::unique("upgradebackup"));
    servers::quick_rabbitmqctl(&world);
    world.install(&["--yes"]).success();
    let key = crate::backup::with_key(&mut world);
    let new = "v1.29.5+k3s1";
    publish_k3s(&releases, new);
    world.clear_calls();
    let upgrade = with_versions(&world, &[("K3S", new)], &[]);
    let said = stderr(&upgrade);
    assert!(upgrade.get_output().status.success(), "{said}");
    assert!(world.read("/usr/local/bin/k3s").contains(new));
    assert!(
        said.contains("backup before the upgrade of K3s v1.29.0+k3s1 → v1.29.5+k3s1"),
        "{said}"
    );
    // The summary at the end repeats where the backup is.
    let summary = crate::support::stdout(&upgrade);
    assert!(
        summary.contains(
            "Backup before the upgrade of K3s v1.29.0+k3s1 → v1.29.5+k3s1: /var/lib/stackinstall/backups/backup-before-k3s-v1.29.5+k3s1-"
        ),
        "{summary}"
    );

    let backups = world.path("/var/lib/stackinstall/backups");
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.to_string_lossy()
                .contains("backup-before-k3s-v1.29.5+k3s1")
        })
        .expect("the backup before the upgrade");
    let bytes = std::fs::read(&archive).unwrap();
    let unpacked =
        stackinstall::backup::unpack(&bytes, &stackinstall::backup::Protection::KeyFile(key))
            .expect("the backup decrypts and verifies");
    assert!(
        unpacked
            .member(stackinstall::backup::members::K3S_TOKEN)
            .is_some()
    );
    let lines: Vec<String> = world.calls().iter().map(|call| call.line()).collect();
    let backup_at = lines
        .iter()
        .position(|line| line.contains("get values"))
        .expect("the backup ran");
    let upgrade_at = lines
        .iter()
        .position(|line| line.contains("k3s-install"))
        .expect("the upgrade ran");
    assert!(
        backup_at < upgrade_at,
        "the backup came after the upgrade: {lines:?}"
    );

    let rerun = with_versions(&world, &[("K3S", new)], &["--output", "json"]).success();
    let outcomes = crate::support::outcomes(&rerun);
    let changed: Vec<_> = (outcomes.iter())
        .filter(|(_, result)| *result == "changed")
        .collect();
    assert!(changed.is_empty(), "the re-run changed {changed:?}");
    report(
        "upgrade: K3s v1.29.0 → v1.29.5 took an encrypted backup first (it verifies), upgraded in place, a re-run changed nothing",
    );
}

#[test]
fn a_release_that_fails_its_wait_is_rolled_back_to_the_last_good_revision() {
    let world = quick_full_world(&servers::unique("rollback"));
    world.install(&["--yes"]).success();
    let state = world.read("/var/lib/stackinstall/state.toml");
    assert!(state.contains("good_revision = 1"), "{state}");

    // Someone upgrades the release (Helm's history in the fake's state:
    // revision 1 superseded by 2), and revision 2's pods never come Ready.
    let history = world.state("helm/stackbill.json");
    let mut revisions: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    assert_eq!(revisions.len(), 1, "{revisions:?}");
    revisions[0]["status"] = serde_json::json!("superseded");
    revisions.push(serde_json::json!({"revision": 2, "status": "deployed",
        "description": "Upgrade complete", "chart": "stackbill-1.1.0"}));
    std::fs::write(&history, serde_json::to_string(&revisions).unwrap()).unwrap();
    world.set_pods(&serde_json::json!({"items": [
        {"metadata": {"name": "sb-core-2"}, "status": {"phase": "Running",
         "conditions": [{"type": "Ready", "status": "False"}]}}
    ]}));
    let mut command = world.command();
    command
        .args([
            "install",
            "--domain",
            crate::support::DOMAIN,
            "--self-signed",
            "--yes",
        ])
        .args(["--redo", "wait"])
        .env("STACKINSTALL_WAIT__TIMEOUT_SECONDS", "2")
        .env("STACKINSTALL_WAIT__POLL_MILLISECONDS", "200");
    let failed = command.assert().code(1);
    let said = stderr(&failed);
    assert!(
        said.contains("rolled back to revision 1, the last one whose pods came Ready"),
        "{said}"
    );
    let rollbacks: Vec<String> = (world.lines_of("helm").into_iter())
        .filter(|line| line.contains("rollback"))
        .collect();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert!(rollbacks[0].contains(" 1 "), "{rollbacks:?}");
    report(
        "upgrade: a release revision whose pods never came Ready rolled back to revision 1 (the last good one), and the run said so",
    );
}

#[test]
fn an_istio_upgrade_of_one_minor_is_prechecked_backed_up_and_installed_and_two_are_refused() {
    let (mut world, releases) =
        crate::support::full::full_world_and_releases(&servers::unique("istioupgrade"));
    servers::quick_rabbitmqctl(&world);
    world.install(&["--yes"]).success();
    crate::backup::with_key(&mut world);
    let new = "1.21.0";
    let istio = crate::support::cluster::tarball(
        &format!("istio-{new}/bin/istioctl"),
        &format!("#!/bin/sh\necho {new}\n"),
    );
    let file = format!("istio-{new}-linux-amd64.tar.gz");
    releases.put(
        &format!("/istio/{new}/{file}.sha256"),
        format!("{}  {file}\n", crate::support::cluster::sha256(&istio)).into_bytes(),
    );
    releases.put(&format!("/istio/{new}/{file}"), istio);

    let before = world.files(false);
    let refused = with_versions(&world, &[("ISTIO", "1.22.1")], &[]).code(2);
    let said = stderr(&refused);
    assert!(said.contains("pin the newest 1.21.x first"), "{said}");
    assert_eq!(
        world.files(false),
        before,
        "a refused upgrade changed files"
    );

    world.clear_calls();
    let upgrade = with_versions(&world, &[("ISTIO", new)], &[]);
    let said = stderr(&upgrade);
    assert!(upgrade.get_output().status.success(), "{said}");
    assert!(
        said.contains("backup before the upgrade of Istio 1.20.3 → 1.21.0"),
        "{said}"
    );
    assert!(world.read("/usr/local/bin/istioctl").contains(new));
    let istioctl = world.lines_of("istioctl");
    let precheck = istioctl
        .iter()
        .position(|l| l.contains("x precheck"))
        .expect("a precheck");
    let install = istioctl
        .iter()
        .position(|l| l.contains("install -y"))
        .expect("an install");
    assert!(precheck < install, "{istioctl:?}");
    let rerun = with_versions(&world, &[("ISTIO", new)], &["--output", "json"]).success();
    let outcomes = crate::support::outcomes(&rerun);
    let changed: Vec<_> = (outcomes.iter())
        .filter(|(_, result)| *result == "changed")
        .collect();
    assert!(changed.is_empty(), "the re-run changed {changed:?}");
    report(
        "upgrade: Istio 1.20.3 → 1.22.1 refused naming 1.21.x; 1.20.3 → 1.21.0 backed up, prechecked (istioctl x precheck) and installed in place; a re-run changed nothing",
    );
}

/// A Helm release archive of `version` on the world's release server.
fn publish_helm(releases: &crate::support::cluster::Releases, version: &str) {
    let helm = crate::support::cluster::tarball(
        "linux-amd64/helm",
        &format!("#!/bin/sh\nprintf {version}\n"),
    );
    let file = format!("helm-{version}-linux-amd64.tar.gz");
    releases.put(
        &format!("/helm/{file}.sha256sum"),
        format!("{}  {file}\n", crate::support::cluster::sha256(&helm)).into_bytes(),
    );
    releases.put(&format!("/helm/{file}"), helm);
}

#[test]
fn a_helm_the_install_put_there_is_upgraded_in_place_and_a_downgrade_or_new_major_is_refused() {
    let (world, releases) = crate::support::cluster::cluster_world();
    world.install(&["--yes"]).success();
    let new = "v3.15.4";
    publish_helm(&releases, new);

    let plan = with_versions(&world, &[("HELM", new)], &["--plan", "--output", "json"]).success();
    let lines = plan_lines(&json(&plan), &["helm"]).join("\n");
    assert!(
        lines.contains("upgrade Helm v3.14.2 → v3.15.4: download"),
        "the plan does not say it is an upgrade:\n{lines}"
    );

    for (version, words) in [
        ("v3.13.3", "that is a downgrade"),
        (
            "v4.0.0",
            "stackinstall upgrades Helm within major version 3 only",
        ),
    ] {
        publish_helm(&releases, version);
        let before = world.files(false);
        world.clear_calls();
        let refused = with_versions(&world, &[("HELM", version)], &[]).code(2);
        let said = stderr(&refused);
        assert!(said.contains(words), "{version}: {said}");
        assert_eq!(world.files(false), before, "{version}: files changed");
        let changing: Vec<String> = (world.calls().iter())
            .map(|call| call.line())
            .filter(|line| {
                ["apply", "upgrade", "install", "restart", "delete"]
                    .iter()
                    .any(|verb| line.contains(verb))
            })
            .collect();
        assert!(changing.is_empty(), "{version}: {changing:?}");
    }

    let upgrade = with_versions(&world, &[("HELM", new)], &["--output", "json"]);
    let said = stderr(&upgrade);
    assert!(upgrade.get_output().status.success(), "{said}");
    assert!(world.read("/usr/local/bin/helm").contains(new));
    let outcomes = crate::support::outcomes(&upgrade);
    assert_eq!(outcomes.get("helm").map(String::as_str), Some("changed"));
    let rerun = with_versions(&world, &[("HELM", new)], &["--output", "json"]).success();
    let changed: Vec<_> = (crate::support::outcomes(&rerun).into_iter())
        .filter(|(_, result)| result == "changed")
        .collect();
    assert!(changed.is_empty(), "the re-run changed {changed:?}");
    report(
        "upgrade: Helm v3.14.2 → v3.15.4 planned as `upgrade Helm` and installed in place (a re-run changed nothing); v3.13.3 (down) and v4.0.0 (new major) refused before any change",
    );
}

#[test]
fn a_helm_of_another_version_that_was_there_before_the_install_stays_refused() {
    let (world, releases) = crate::support::cluster::cluster_world();
    publish_helm(&releases, "v3.15.4");
    world.write("/usr/local/bin/helm", "#!/bin/sh\nprintf v3.15.4\n");
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(world.path("/usr/local/bin/helm"), executable).unwrap();
    let refused = world.install(&["--yes"]).code(2);
    let said = stderr(&refused);
    assert!(
        said.contains("stackinstall does not replace another Helm"),
        "{said}"
    );
    assert_eq!(
        world.read("/usr/local/bin/helm"),
        "#!/bin/sh\nprintf v3.15.4\n"
    );
    report(
        "upgrade: a Helm v3.15.4 that was on the host before the install is refused, not replaced",
    );
}

/// A node of the fake cluster at the K3s `version`; a server is an etcd
/// member.
fn node(name: &str, server: bool, version: &str, ready: bool) -> serde_json::Value {
    let labels = match server {
        true => serde_json::json!({"node-role.kubernetes.io/control-plane": "true",
            "node-role.kubernetes.io/master": "true", "node-role.kubernetes.io/etcd": "true"}),
        false => serde_json::json!({}),
    };
    let ready = if ready { "True" } else { "Unknown" };
    serde_json::json!({"kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": ready}],
                   "nodeInfo": {"kubeletVersion": version}}})
}

#[test]
fn a_k3s_upgrade_of_the_first_server_waits_for_quorum_and_stragglers_and_names_the_order() {
    let (world, _releases) = crate::support::cluster::cluster_world();
    world.write("/etc/hostname", "node1\n");
    world.install(&["--yes"]).success();
    let (old, new) = ("v1.29.0+k3s1", "v1.29.5+k3s1");
    world.put_object(node("node1", true, old, true));
    world.put_object(node("server-2", true, old, false));
    world.put_object(node("agent-1", false, old, true));
    let refusals = [
        (
            "1 of the cluster's 2 etcd members is not Ready (server-2): etcd's quorum must be healthy first",
            node("server-2", true, old, true),
        ),
        (
            "agent-1 (agent, v1.28.9+k3s1) still runs a K3s older than this server's v1.29.0+k3s1",
            node("agent-1", false, "v1.28.9+k3s1", true),
        ),
    ];
    for (index, (words, mended)) in refusals.into_iter().enumerate() {
        if index == 1 {
            world.put_object(node("agent-1", false, "v1.28.9+k3s1", true));
        }
        let before = world.files(false);
        let refused = with_versions(&world, &[("K3S", new)], &[]).code(2);
        let said = stderr(&refused);
        assert!(said.contains(words), "{said}");
        assert_eq!(
            world.files(false),
            before,
            "a refused upgrade changed files"
        );
        world.put_object(mended);
    }
    world.put_object(node("agent-1", false, old, true));

    // Every member Ready, no node behind: this server goes first, and the
    // plan names who follows, in K3s's order.
    let plan = with_versions(&world, &[("K3S", new)], &["--plan", "--output", "json"]).success();
    let lines = plan_lines(&json(&plan), &["k3s"]).join("\n");
    assert!(
        lines.contains("upgrade K3s v1.29.0+k3s1 → v1.29.5+k3s1"),
        "{lines}"
    );
    assert!(
        lines.contains("then the other servers one at a time (server-2), then the agents (agent-1): on each `sudo stackinstall join` with a new join file"),
        "{lines}"
    );
    let checks = plan_lines(&json(&plan), &["preflight"]).join("\n");
    assert!(
        checks.contains("of 3 node(s), every other etcd member Ready and none behind v1.29.0+k3s1"),
        "{checks}"
    );
    report(
        "upgrade: the first server's K3s upgrade refused while another etcd member was not Ready and while an agent was a version behind; then planned, naming the other servers one at a time, then the agents",
    );
}
