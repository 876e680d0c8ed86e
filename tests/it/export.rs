//! The NFS export is no door into the host or between pods (issue 25): a
//! local user cannot reach a volume's files, the parent the install made
//! stays root's alone (narrowed again, and reported, when widened), an
//! existing wider parent is refused before anything changes, a set-uid
//! file a pod left is found by `doctor` (and a stopped bind mount), the
//! squash options are checked together, a mount unit rewritten by a run
//! killed before its restart is restarted by the next run, and uninstall
//! removes the bind mount's unit but keeps the data. The export's clients (the node addresses, never the pod network)
//! are asserted in `databases.rs`; `doctor`'s finding of a pod network
//! client in `doctor.rs`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::security::{as_nobody, doctor_nfs_findings, nfs_world, status_nfs_health, traversable};
use crate::support::{World, report, stderr, stdout};

const UNIT: &str = "data-stackbill.mount";

/// The fake systemd's record of the export's mount unit: (enabled, active).
fn mount_unit_state(world: &World) -> Option<(bool, bool)> {
    let text = fs::read_to_string(world.state("systemd.json")).ok()?;
    let units: serde_json::Value = serde_json::from_str(&text).unwrap();
    let unit = &units["units"][UNIT];
    Some((unit["enabled"].as_bool()?, unit["active"].as_bool()?))
}

/// Mode and owner of the world's `path`.
fn mode_and_owner(world: &World, path: &str) -> (u32, u32, u32) {
    let metadata = fs::metadata(world.path(path)).unwrap();
    (metadata.mode() & 0o7777, metadata.uid(), metadata.gid())
}

#[test]
fn a_local_user_cannot_list_read_or_write_a_volume_after_the_install() {
    let world = nfs_world();
    // Every directory above the world's root as `/` is: others may enter.
    traversable(world.dir.path());
    world.install(&["--only", "nfs"]).success();
    // A volume as the provisioner makes it (0777), with a file a pod wrote.
    let volume = world.path("/data/stackbill/sb-apps-sb-data-pvc-1");
    fs::create_dir(&volume).unwrap();
    fs::set_permissions(&volume, fs::Permissions::from_mode(0o777)).unwrap();
    let file = volume.join("orders.db");
    fs::write(&file, "rows\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();

    let attempts = [
        ("list the volume", format!("ls '{}'", volume.display())),
        ("read the file", format!("cat '{}'", file.display())),
        (
            "write the file",
            format!("echo changed >> '{}'", file.display()),
        ),
        (
            "make a file",
            format!("touch '{}'", volume.join("planted").display()),
        ),
    ];
    let mut reached = Vec::new();
    for (what, script) in &attempts {
        let (done, why) = as_nobody(script, &[]);
        eprintln!("nobody: {what}: {}", if done { "done" } else { why.trim() });
        if done {
            reached.push(*what);
        }
    }
    assert!(reached.is_empty(), "nobody could {reached:?}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "rows\n");
    assert!(!volume.join("planted").exists());
    assert_eq!(mode_and_owner(&world, "/data"), (0o700, 0, 0));
    report(&format!(
        "export: nobody tried {} things on a volume's file after the install, {} succeeded",
        attempts.len(),
        reached.len()
    ));
}

#[test]
fn a_widened_parent_the_install_made_is_reported_and_narrowed_by_the_next_run() {
    let world = nfs_world();
    world.install(&["--only", "nfs"]).success();
    assert_eq!(mode_and_owner(&world, "/data"), (0o700, 0, 0));
    let state = world.read("/var/lib/stackinstall/state.toml");
    assert!(state.contains("export_parent = \"created\""), "{state}");
    assert_eq!(status_nfs_health(&world), "ok");

    fs::set_permissions(world.path("/data"), fs::Permissions::from_mode(0o755)).unwrap();
    let health = status_nfs_health(&world);
    assert!(
        health.contains("`/data`") && health.contains("now mode 0755"),
        "status says {health}"
    );
    let findings = doctor_nfs_findings(&world);
    assert!(
        findings
            .iter()
            .any(|f| f.contains("nfs-export-parent") && f.contains("now mode 0755")),
        "doctor found {findings:?}"
    );

    let rerun = world.install(&["--only", "nfs"]).success();
    let said = format!("{}{}", stdout(&rerun), stderr(&rerun));
    assert!(said.contains("running it again"), "{said}");
    assert_eq!(mode_and_owner(&world, "/data"), (0o700, 0, 0));
    assert_eq!(status_nfs_health(&world), "ok");
    assert!(doctor_nfs_findings(&world).is_empty());
    report(
        "export: a parent widened to 0755 after the install reported by status and doctor, narrowed to 0700 by the next run",
    );
}

#[test]
fn an_existing_parent_others_may_enter_is_refused_before_anything_changes() {
    let world = nfs_world();
    let data = world.path("/data");
    fs::create_dir_all(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["--only", "nfs", "--plan"][..], &["--only", "nfs"]] {
        let refused = world.install(args).failure();
        let said = format!("{}{}", stdout(&refused), stderr(&refused));
        assert!(
            said.contains("`/data`, the parent of the export directory, is mode 0755"),
            "{said}"
        );
        assert!(
            said.contains("`sudo chown root:root /data && sudo chmod 0700 /data`"),
            "{said}"
        );
    }
    assert_eq!(mode_and_owner(&world, "/data").0, 0o755, "left as it was");
    assert!(!world.path("/data/stackbill").exists());
    assert!(!world.path("/etc/exports").exists());
    assert!(!world.path("/etc/systemd/system").join(UNIT).exists());
    assert!(
        !world
            .calls()
            .iter()
            .any(|call| call.line().starts_with("systemctl enable")
                || call.line().starts_with("exportfs -r")),
        "nothing was started or exported"
    );

    // Made root's alone as the hint says: accepted, recorded as found.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    world.install(&["--only", "nfs"]).success();
    let state = world.read("/var/lib/stackinstall/state.toml");
    assert!(state.contains("export_parent = \"found\""), "{state}");
    report(
        "export: an existing 0755 parent refused by the plan and the run, nothing changed; accepted once 0700",
    );
}

#[test]
fn a_set_uid_file_under_the_export_is_found_by_doctor() {
    let world = nfs_world();
    world.install(&["--only", "nfs"]).success();
    assert!(doctor_nfs_findings(&world).is_empty());
    // What a pod's root leaves with `no_root_squash`: a set-uid root shell.
    let volume = world.path("/data/stackbill/sb-apps-sb-data-pvc-1/bin");
    fs::create_dir_all(&volume).unwrap();
    let planted = volume.join("sh");
    fs::write(&planted, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o4755)).unwrap();
    let group = volume.join("tool");
    fs::write(&group, "").unwrap();
    fs::set_permissions(&group, fs::Permissions::from_mode(0o2755)).unwrap();

    let output = world
        .command()
        .args(["doctor", "--output", "json", "--checks", "host"])
        .output()
        .unwrap();
    let doctor: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let finding = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["check"] == "host.nfs")
        .flat_map(|check| check["findings"].as_array().cloned().unwrap_or_default())
        .find(|finding| finding["class"] == "nfs-set-id")
        .unwrap_or_else(|| panic!("{doctor:#}"));
    assert_eq!(finding["severity"], "warning", "{finding:#}");
    let evidence = finding["evidence"].to_string();
    for file in [
        "/data/stackbill/sb-apps-sb-data-pvc-1/bin/sh (mode 4755)",
        "/data/stackbill/sb-apps-sb-data-pvc-1/bin/tool (mode 2755)",
    ] {
        assert!(evidence.contains(file), "{finding:#}");
    }
    report("export: a set-uid and a set-gid file planted under the export, both named by doctor");
}

#[test]
fn the_bind_mount_is_a_unit_the_install_starts_and_uninstall_removes_keeping_the_data() {
    let world = nfs_world();
    world.install(&["--only", "nfs"]).success();
    let unit = world.read(&format!("/etc/systemd/system/{UNIT}"));
    for line in [
        "What=/data/stackbill",
        "Where=/data/stackbill",
        "Options=bind,nosuid,nodev",
        "Before=nfs-server.service",
    ] {
        assert!(unit.lines().any(|l| l == line), "{unit}");
    }
    assert_eq!(mount_unit_state(&world), Some((true, true)));
    let lines: Vec<String> = world.calls().iter().map(|call| call.line()).collect();
    let position = |wanted: &str| lines.iter().position(|line| line == wanted);
    let mounted = position(&format!("systemctl enable --now {UNIT}")).expect("mounted");
    let exported = position("exportfs -ra").expect("exported");
    assert!(
        mounted < exported,
        "mounted before it is exported: {lines:?}"
    );

    let data = world.path("/data/stackbill/sb-apps-sb-data-pvc-1");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("orders.db"), "rows\n").unwrap();
    world.clear_calls();
    world
        .command()
        .args(["uninstall", "--delete-db", "--yes"])
        .assert()
        .success();
    let lines: Vec<String> = world.calls().iter().map(|call| call.line()).collect();
    assert!(
        lines.contains(&format!("systemctl disable --now {UNIT}")),
        "{lines:?}"
    );
    assert!(!world.path("/etc/systemd/system").join(UNIT).exists());
    assert!(
        mount_unit_state(&world).is_none_or(|state| state == (false, false)),
        "stopped and disabled"
    );
    // Stopped by hand instead: doctor says the export is not bound.
    world.install(&["--only", "nfs"]).success();
    assert!(doctor_nfs_findings(&world).is_empty());
    let file = world.state("systemd.json");
    let mut units: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    units["units"][UNIT]["active"] = false.into();
    fs::write(&file, units.to_string()).unwrap();
    let findings = doctor_nfs_findings(&world);
    assert!(
        findings.iter().any(|f| f.contains("nfs-export-mount")),
        "doctor found {findings:?}"
    );
    assert_eq!(
        fs::read_to_string(data.join("orders.db")).unwrap(),
        "rows\n",
        "the data stays"
    );
    assert_eq!(mode_and_owner(&world, "/data"), (0o700, 0, 0));
    report(
        "export: the mount unit started before the export, removed by uninstall --delete-db; the volume's data kept",
    );
}

#[test]
fn a_mount_unit_rewritten_by_a_killed_run_is_remounted_by_the_next() {
    let world = nfs_world();
    world.install(&["--only", "nfs"]).success();
    let path = format!("/etc/systemd/system/{UNIT}");
    let wanted = world.read(&path);
    // The unit as it was mounted before: without `nosuid,nodev` (an older
    // unit, or one edited by hand), so the step rewrites it.
    world.write(
        &path,
        &wanted.replace("Options=bind,nosuid,nodev", "Options=bind"),
    );
    let point = format!("nfs: write {UNIT}: renamed #1");
    world.install_killed_at(&point, &["--only", "nfs"]);
    assert_eq!(world.read(&path), wanted, "the killed run wrote the unit");
    let restarts = |world: &World| {
        (world.lines_of("systemctl").iter())
            .filter(|line| *line == &format!("systemctl restart {UNIT}"))
            .count()
    };
    assert_eq!(restarts(&world), 0, "killed before the restart");
    let state = world.read("/var/lib/stackinstall/state.toml");
    assert!(
        state.contains(UNIT),
        "the restart recorded as pending: {state}"
    );

    // The file is right now, but the bind mount still has the old options
    // until the unit is restarted: the next run does it, once.
    let rerun = world.install(&["--only", "nfs"]).success();
    assert_eq!(restarts(&world), 1, "{}", stderr(&rerun));
    let state = world.read("/var/lib/stackinstall/state.toml");
    assert!(!state.contains(UNIT), "nothing left pending: {state}");
    world.clear_calls();
    world.install(&["--only", "nfs"]).success();
    assert_eq!(restarts(&world), 0, "the third run restarted it again");
    report(&format!(
        "export: a run killed at `{point}` left the mount unit written; the next run restarted it once, the one after that not again"
    ));
}

#[test]
fn the_squash_options_are_checked_together() {
    let world = World::new();
    let refused = |env: &[(&str, &str)], said: &str| {
        let mut command = world.command();
        for (key, value) in env {
            command.env(key, value);
        }
        let run = command
            .args(["render", "--domain", crate::support::DOMAIN, "--out"])
            .arg(world.dir.path().join("out"))
            .assert()
            .code(2);
        assert!(stderr(&run).contains(said), "{}", stderr(&run));
    };
    refused(
        &[("STACKINSTALL_NFS__SQUASH", "all_squash")],
        "`nfs.squash` = \"all_squash\" from environment variable",
    );
    refused(
        &[("STACKINSTALL_NFS__ANONUID", "1000")],
        "is used only with `nfs.squash` = \"root_squash\" or \"all_squash\"",
    );
    refused(
        &[("STACKINSTALL_NFS__EXPORT_OPTIONS", "rw,sync,no_root_squash")],
        "must not hold a squash option",
    );
    world
        .command()
        .env("STACKINSTALL_NFS__SQUASH", "root_squash")
        .env("STACKINSTALL_NFS__ANONUID", "1000")
        .env("STACKINSTALL_NFS__ANONGID", "1000")
        .args(["render", "--domain", crate::support::DOMAIN, "--out"])
        .arg(world.dir.path().join("out"))
        .assert()
        .success();
    assert!(world.dir.path().join("out").join(UNIT).exists());
}
