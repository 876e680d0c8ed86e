//! Security of what the install writes (issue 12): the owner and mode of
//! every file and directory a full install writes, checked against one
//! table; links planted where the tool writes or reads its own files,
//! refused; existing directories (`render --out /tmp`, the NFS export)
//! keeping their mode and owner; K3s's kubeconfig readable by root only.
//! The installed binary the timer runs and `ecr-refresh` under the run lock
//! are tested in `application.rs`, next to the other registry tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::cluster;
use crate::support::{DOMAIN, World, full, report, servers, stderr, stdout};
use stackinstall_fakes::config::{Action, Rule};

// ------------------------------------------------ owner and mode (item 1) --

/// Who must own an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The user the install runs as (root).
    Root,
    /// The world's `mongodb` user (the test's own uid here).
    Mongodb,
    /// `nobody:nogroup`.
    Nobody,
}

/// What an entry holds: a secret (password, key, token, kubeconfig) must
/// be 0600 in a directory no one else can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Secret,
    Public,
    Directory,
}

use Holds::{Directory, Public, Secret};
use Owner::{Mongodb, Nobody, Root};

/// THE table: every file and directory a full install writes, by path (a
/// trailing `*` matches any rest of the name), with its owner and mode. A
/// path that is written but not here fails the test: classify it.
const TABLE: &[(&str, Holds, Owner, u32)] = &[
    ("/etc/stackinstall", Directory, Root, 0o700),
    ("/etc/stackinstall/credentials.toml", Secret, Root, 0o600),
    ("/etc/stackinstall/tls", Directory, Root, 0o700),
    ("/etc/stackinstall/tls/tls.key", Secret, Root, 0o600),
    ("/etc/stackinstall/tls/tls.crt", Public, Root, 0o644),
    ("/etc/stackinstall/istio-operator.yaml", Public, Root, 0o644),
    ("/etc/stackinstall/ecr-refresh.toml", Public, Root, 0o644),
    ("/etc/rancher", Directory, Root, 0o755),
    ("/etc/rancher/k3s", Directory, Root, 0o755),
    ("/etc/rancher/k3s/k3s.yaml", Secret, Root, 0o600),
    // K3s's configuration: networks, port, names; no token.
    ("/etc/rancher/k3s/config.yaml", Public, Root, 0o644),
    ("/root/.kube", Directory, Root, 0o700),
    ("/root/.kube/config", Secret, Root, 0o600),
    ("/var/lib/mongodb", Directory, Root, 0o755),
    ("/var/lib/mongodb/encryption", Secret, Mongodb, 0o600),
    ("/etc/mongod.conf", Public, Root, 0o644),
    ("/etc/mysql", Directory, Root, 0o755),
    ("/etc/mysql/mariadb.conf.d", Directory, Root, 0o755),
    (
        "/etc/mysql/mariadb.conf.d/stackbill.cnf",
        Public,
        Root,
        0o644,
    ),
    ("/etc/mysql/mysql.conf.d", Directory, Root, 0o755),
    ("/etc/mysql/mysql.conf.d/stackbill.cnf", Public, Root, 0o644),
    ("/etc/exports", Public, Root, 0o644),
    // Only root enters it: no local user reaches the volumes (issue 25).
    ("/data", Directory, Root, 0o700),
    ("/data/stackbill", Directory, Nobody, 0o777),
    ("/etc/systemd", Directory, Root, 0o755),
    ("/etc/systemd/system", Directory, Root, 0o755),
    (
        "/etc/systemd/system/stackinstall-ecr-refresh.service",
        Public,
        Root,
        0o644,
    ),
    (
        "/etc/systemd/system/stackinstall-ecr-refresh.timer",
        Public,
        Root,
        0o644,
    ),
    // The NFS export bound onto itself `nosuid,nodev` (issue 25).
    (
        "/etc/systemd/system/data-stackbill.mount",
        Public,
        Root,
        0o644,
    ),
    ("/usr", Directory, Root, 0o755),
    ("/usr/local", Directory, Root, 0o755),
    ("/usr/local/bin", Directory, Root, 0o755),
    ("/usr/local/bin/stackinstall", Public, Root, 0o755),
    ("/usr/local/bin/k3s", Public, Root, 0o755),
    ("/usr/local/bin/helm", Public, Root, 0o755),
    ("/usr/local/bin/istioctl", Public, Root, 0o755),
    // Written by K3s's install script (a fake here, as the real one does).
    ("/usr/local/bin/k3s-uninstall.sh", Public, Root, 0o755),
    ("/var", Directory, Root, 0o755),
    ("/var/lib", Directory, Root, 0o755),
    // `exportfs -ra`'s table of what is exported (exportfs(8), FILES),
    // written by nfs-utils, mode as the package makes it.
    ("/var/lib/nfs", Directory, Root, 0o755),
    ("/var/lib/nfs/etab", Public, Root, 0o644),
    ("/var/lib/rancher", Directory, Root, 0o755),
    // K3s's own (the fake K3s writes them as K3s does): its server
    // directory and datastore root's alone, the token 0600.
    ("/var/lib/rancher/k3s", Directory, Root, 0o755),
    ("/var/lib/rancher/k3s/server", Directory, Root, 0o700),
    ("/var/lib/rancher/k3s/server/token", Secret, Root, 0o600),
    ("/var/lib/rancher/k3s/server/db", Directory, Root, 0o700),
    (
        "/var/lib/rancher/k3s/server/db/state.db",
        Secret,
        Root,
        0o600,
    ),
    (
        "/var/lib/rancher/credentialprovider",
        Directory,
        Root,
        0o755,
    ),
    // The kubelet's image credential provider: its config names the
    // registry and the plugin (no credential), the plugin is a link to the
    // root-owned installed binary (a link's own mode is always 0777).
    (
        "/var/lib/rancher/credentialprovider/config.yaml",
        Public,
        Root,
        0o644,
    ),
    (
        "/var/lib/rancher/credentialprovider/bin",
        Directory,
        Root,
        0o755,
    ),
    (
        "/var/lib/rancher/credentialprovider/bin/stackinstall",
        Public,
        Root,
        0o777,
    ),
    ("/var/lib/stackinstall", Directory, Root, 0o755),
    ("/var/lib/stackinstall/state.toml", Public, Root, 0o644),
    // Root's alone: `flock` works on a read-only descriptor (issue 21).
    ("/var/lib/stackinstall/lock", Public, Root, 0o600),
    ("/var/lib/stackinstall/downloads", Directory, Root, 0o700),
    ("/var/log", Directory, Root, 0o755),
    ("/var/log/stackinstall", Directory, Root, 0o700),
    // Logs are redacted, and private all the same.
    ("/var/log/stackinstall/install-*", Secret, Root, 0o600),
];

fn classify(path: &str) -> Option<(Holds, Owner, u32)> {
    TABLE.iter().find_map(|(pattern, holds, owner, mode)| {
        let matches = match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == *pattern,
        };
        matches.then_some((*holds, *owner, *mode))
    })
}

/// Every entry under the root (files, directories, links) with what a
/// write changes: mode, owner, inode, modification time.
fn entries(world: &World) -> BTreeMap<String, (u32, u32, u32, u64, i64, i64)> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeMap<String, (u32, u32, u32, u64, i64, i64)>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let metadata = fs::symlink_metadata(&path).unwrap();
            let shown = format!("/{}", path.strip_prefix(root).unwrap().display());
            found.insert(
                shown,
                (
                    metadata.mode(),
                    metadata.uid(),
                    metadata.gid(),
                    metadata.ino(),
                    metadata.mtime(),
                    metadata.mtime_nsec(),
                ),
            );
            if metadata.is_dir() {
                walk(root, &path, found);
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(&world.root, &world.root, &mut found);
    found
}

fn uid_of(world: &World, owner: Owner) -> (u32, u32) {
    match owner {
        // SAFETY: geteuid and getegid have no preconditions.
        Owner::Root => unsafe { (libc::geteuid(), libc::getegid()) },
        Owner::Nobody => (65534, 65534),
        Owner::Mongodb => {
            let passwd = world.read("/etc/passwd");
            let line = passwd.lines().find(|l| l.starts_with("mongodb:")).unwrap();
            let fields: Vec<&str> = line.split(':').collect();
            (fields[2].parse().unwrap(), fields[3].parse().unwrap())
        }
    }
}

#[test]
fn every_file_a_full_install_writes_has_the_owner_and_mode_of_its_table_entry() {
    assert!(
        TABLE
            .iter()
            .all(|(_, holds, _, mode)| *holds != Secret || *mode == 0o600),
        "the table itself: every secret is 0600"
    );
    let world = full::quick_full_world(&servers::unique("modes"));
    let before = entries(&world);
    world.install(&[]).success();
    world.install(&[]).success();
    let after = entries(&world);

    let mut problems = Vec::new();
    let (mut files, mut directories, mut secrets) = (0, 0, 0);
    for (path, metadata) in &after {
        let is_dir = metadata.0 & libc::S_IFMT == libc::S_IFDIR;
        // A directory that was there is written to when a file is added in
        // it: only a new one, or a new mode or owner, is the install's.
        let unchanged = match (before.get(path), is_dir) {
            (Some(old), true) => {
                old.0 == metadata.0
                    && old.1 == metadata.1
                    && old.2 == metadata.2
                    && old.3 == metadata.3
            }
            (old, _) => old == Some(metadata),
        };
        if unchanged {
            continue;
        }
        let (mode, uid, gid) = (metadata.0 & 0o7777, metadata.1, metadata.2);
        let Some((holds, owner, wanted)) = classify(path) else {
            problems.push(format!(
                "{path} (mode {mode:04o}) is not in the table: classify it"
            ));
            continue;
        };
        match is_dir {
            true => directories += 1,
            false => files += 1,
        }
        if (holds == Directory) != is_dir {
            problems.push(format!(
                "{path}: a directory is expected: {}",
                holds == Directory
            ));
        }
        if mode != wanted || (uid, gid) != uid_of(&world, owner) {
            problems.push(format!(
                "{path}: mode {mode:04o} owner {uid}:{gid}, the table says {wanted:04o} {owner:?}"
            ));
        }
        if holds == Secret {
            secrets += 1;
            let parent = Path::new(path).parent().unwrap().to_str().unwrap();
            let directory = fs::metadata(world.path(parent)).unwrap();
            if directory.mode() & 0o022 != 0 || ![0, uid].contains(&directory.uid()) {
                problems.push(format!(
                    "{path}: its directory {parent} (mode {:04o}, owner {}) can be written by others",
                    directory.mode() & 0o7777,
                    directory.uid()
                ));
            }
        }
    }
    // The tool's own kubectl, helm and istioctl calls name K3s's kubeconfig.
    let cluster_calls: Vec<_> = world
        .calls()
        .into_iter()
        .filter(|c| ["kubectl", "helm", "istioctl"].contains(&c.program.as_str()))
        .collect();
    for call in &cluster_calls {
        if call.env("KUBECONFIG") != Some("/etc/rancher/k3s/k3s.yaml") {
            problems.push(format!("`{}` ran without KUBECONFIG", call.line()));
        }
    }
    report(&format!(
        "owner and mode: {} entries checked against the table ({files} files, {directories} directories, {secrets} holding secrets), {} cluster calls with KUBECONFIG, {} problems",
        files + directories,
        cluster_calls.len(),
        problems.len()
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(secrets >= 6 && files >= 15, "the walk saw too little");
    assert_eq!(
        world.read("/root/.kube/config"),
        world.read("/etc/rancher/k3s/k3s.yaml"),
        "root's kubeconfig is K3s's"
    );
}

#[test]
fn a_kubeconfig_left_readable_by_an_earlier_install_is_made_0600() {
    let (world, _releases) = cluster::cluster_world();
    world.install(&["--only", "k3s"]).success();
    let kubeconfig = world.path("/etc/rancher/k3s/k3s.yaml");
    // What an install with `--write-kubeconfig-mode 644` left.
    fs::set_permissions(&kubeconfig, fs::Permissions::from_mode(0o644)).unwrap();
    world.clear_calls();
    world.install(&["--only", "k3s"]).success();
    let again = world
        .calls()
        .into_iter()
        .filter(|c| c.program == "k3s-install")
        .count();
    assert_eq!(again, 1, "the install script ran again with the new flags");
    let mode = fs::metadata(&kubeconfig).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    let copy = world.path("/root/.kube/config");
    assert_eq!(fs::metadata(&copy).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(
        fs::metadata(copy.parent().unwrap()).unwrap().mode() & 0o7777,
        0o700
    );
}

#[test]
fn no_file_a_full_install_writes_holds_the_root_it_was_written_under() {
    let world = full::quick_full_world(&servers::unique("prefix"));
    let before = entries(&world);
    world.install(&[]).success();
    let after = entries(&world);
    let root = world
        .root
        .to_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let (mut files, mut links, mut leaks) = (0, 0, Vec::new());
    for (path, metadata) in &after {
        // The run's own log says where this run wrote, root included: a
        // record for a person, read by no program on the host.
        if before.get(path) == Some(metadata) || path.starts_with("/var/log/stackinstall/") {
            continue;
        }
        let host_path = world.path(path);
        let kind = metadata.0 & libc::S_IFMT;
        let text = match kind {
            libc::S_IFREG => {
                files += 1;
                fs::read(&host_path).unwrap()
            }
            libc::S_IFLNK => {
                links += 1;
                fs::read_link(&host_path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            }
            _ => continue,
        };
        if text
            .windows(root.len())
            .any(|window| window == root.as_bytes())
        {
            let lines: Vec<String> = String::from_utf8_lossy(&text)
                .lines()
                .filter(|line| line.contains(&root))
                .take(5)
                .map(str::to_string)
                .collect();
            leaks.push(format!("{path}: {lines:#?}"));
        }
    }
    report(&format!(
        "files a full install wrote under --root: {files} files and {links} links read, {} hold the root",
        leaks.len()
    ));
    assert!(files > 20, "the install wrote its files: {files}");
    assert!(
        leaks.is_empty(),
        "these hold `{root}`, a path only this run has: {leaks:?}"
    );
}

/// The k3s step's state and health in `status --output json`, and its
/// decision in `install --plan --output json`.
fn k3s_in_status_and_plan(world: &World) -> (String, String, String) {
    let status = world
        .command()
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let step = (status["steps"].as_array().unwrap().iter())
        .find(|step| step["id"] == "k3s")
        .unwrap()
        .clone();
    let plan = world
        .command()
        .args(["install", "--domain", DOMAIN, "--self-signed", "--plan"])
        .args(["--output", "json", "--only", "k3s"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned = (plan["steps"].as_array().unwrap().iter())
        .find(|step| step["id"] == "k3s")
        .unwrap()
        .to_string();
    (
        step["state"].as_str().unwrap().to_string(),
        step["health"].as_str().unwrap_or_default().to_string(),
        planned,
    )
}

#[test]
fn plan_and_status_agree_on_a_kubeconfig_made_readable_after_the_install() {
    let (world, _releases) = cluster::cluster_world();
    world.install(&["--only", "k3s"]).success();
    let (state, health, planned) = k3s_in_status_and_plan(&world);
    assert_eq!((state.as_str(), health.as_str()), ("done", "ok"));
    assert!(planned.contains("\"done\""), "{planned}");
    let kubeconfig = world.path("/etc/rancher/k3s/k3s.yaml");
    fs::set_permissions(&kubeconfig, fs::Permissions::from_mode(0o644)).unwrap();
    let (_, health, planned) = k3s_in_status_and_plan(&world);
    assert!(health.contains("is readable by other users"), "{health}");
    assert!(
        planned
            .contains("done earlier, but `/etc/rancher/k3s/k3s.yaml` is readable by other users"),
        "the plan says what status says: {planned}"
    );
    assert!(
        planned.contains("install script"),
        "and what the run will do: {planned}"
    );
}

#[test]
fn roots_kubeconfig_linked_to_k3s_file_is_accepted_and_kept() {
    let (world, _releases) = cluster::cluster_world();
    let link = world.path("/root/.kube/config");
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    // The two forms of the layout: an absolute and a relative link.
    for target in [
        "/etc/rancher/k3s/k3s.yaml",
        "../../etc/rancher/k3s/k3s.yaml",
    ] {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let run = world.install(&["--only", "k3s", "--redo", "k3s"]);
        assert!(
            run.get_output().status.success(),
            "{target}: {}",
            stderr(&run)
        );
        assert_eq!(fs::read_link(&link).unwrap(), Path::new(target), "kept");
        assert!(kubeconfig_backups(&world).is_empty(), "nothing to back up");
    }
    // A link elsewhere is still not followed.
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let run = world.install(&["--only", "k3s", "--redo", "k3s"]).failure();
    assert!(
        stderr(&run).contains("refusing to follow it"),
        "{}",
        stderr(&run)
    );
}

/// The backups of root's kubeconfig under `/root/.kube`, with their text.
fn kubeconfig_backups(world: &World) -> Vec<(PathBuf, String)> {
    let mut backups: Vec<(PathBuf, String)> = fs::read_dir(world.path("/root/.kube"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("config.stackinstall-backup-")
        })
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    backups.sort();
    backups
}

#[test]
fn an_operators_kubeconfig_is_kept_as_a_backup_before_the_copy_replaces_it() {
    let (world, _releases) = cluster::cluster_world();
    let theirs = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://prod.example.com:6443\n  name: prod\n";
    world.write("/root/.kube/config", theirs);
    let copy = world.path("/root/.kube/config");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(copy.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();

    world.install(&["--only", "k3s"]).success();
    let k3s = world.read("/etc/rancher/k3s/k3s.yaml");
    assert_eq!(
        world.read("/root/.kube/config"),
        k3s,
        "root gets K3s's kubeconfig"
    );
    let backups = kubeconfig_backups(&world);
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        backups[0].1, theirs,
        "the operator's file is kept byte for byte"
    );
    assert_eq!(fs::metadata(&backups[0].0).unwrap().mode() & 0o7777, 0o600);

    // K3s's kubeconfig changes (new certificates; `--redo k3s` looks
    // again): our older copy is replaced without another backup; someone's
    // edit of it is kept.
    let renewed = k3s.replace("ZmFrZSBrZXk=", "bmV3IGtleQ==");
    world.write("/etc/rancher/k3s/k3s.yaml", &renewed);
    let plan = stdout(
        &world
            .install(&["--only", "k3s", "--redo", "k3s", "--plan"])
            .success(),
    );
    assert!(
        plan.contains("copy /etc/rancher/k3s/k3s.yaml to /root/.kube/config")
            && !plan.contains("stackinstall-backup"),
        "our own older copy needs no backup:\n{plan}"
    );
    world.install(&["--only", "k3s", "--redo", "k3s"]).success();
    assert_eq!(world.read("/root/.kube/config"), renewed);
    assert_eq!(kubeconfig_backups(&world).len(), 1);

    let edited = format!("{renewed}# the operator's context for prod\n");
    world.write("/root/.kube/config", &edited);
    let plan = stdout(
        &world
            .install(&["--only", "k3s", "--redo", "k3s", "--plan"])
            .success(),
    );
    assert!(
        plan.contains("the /root/.kube/config there differs from K3s's and was not written by stackinstall: it is kept as /root/.kube/config.stackinstall-backup-TIME (mode 0600)"),
        "{plan}"
    );
    let run = stderr(&world.install(&["--only", "k3s", "--redo", "k3s"]).success());
    assert!(
        run.contains("kept as /root/.kube/config.stackinstall-backup-"),
        "{run}"
    );
    let backups = kubeconfig_backups(&world);
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(backups.iter().any(|(_, text)| *text == edited));
    assert_eq!(world.read("/root/.kube/config"), renewed);
    report(
        "root's kubeconfig: 2 files not written by stackinstall kept as backups (0600), 1 older copy of ours replaced without one",
    );
}

// ------------------------------------------------ planted links (item 2) --

const PRECIOUS: &str = "root:x:0:0:root:/root:/bin/bash\n";

/// A file the attacker wants overwritten (or read): `/etc/passwd` stands in.
fn plant_victim(world: &World) -> PathBuf {
    let path = world.dir.path().join("victim-passwd");
    fs::write(&path, PRECIOUS).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// `.NAME.stackinstall-tmp` next to `target`.
fn temporary(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap().to_str().unwrap();
    target.with_file_name(format!(".{name}.stackinstall-tmp"))
}

/// One attack: what ran, and whether it was refused as it should be.
struct Attack {
    name: String,
    refused: bool,
    why: String,
}

/// Plants `link -> victim`, runs `run`, and checks the outcome: a failure
/// whose message names `link` as a symbolic link, the victim unchanged and
/// the link left as it was (no write went through it).
fn attack(
    name: &str,
    link: &Path,
    victim: &Path,
    run: impl FnOnce() -> assert_cmd::assert::Assert,
) -> Attack {
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(victim, link).unwrap();
    let assert = run();
    let output = format!("{}{}", stdout(&assert), stderr(&assert));
    let code = assert.get_output().status.code();
    let mut why = Vec::new();
    if code != Some(1) {
        why.push(format!("exit code {code:?}, not 1"));
    }
    let named = format!(
        "`{}` is a symbolic link; refusing to follow it",
        link.display()
    );
    if !output.contains(&named) {
        why.push(format!("the output does not say {named}"));
    }
    if !output.contains("hint: stackinstall never writes or reads its files through a link") {
        why.push("no hint".into());
    }
    if fs::read_to_string(victim).unwrap() != PRECIOUS
        || fs::metadata(victim).unwrap().mode() & 0o7777 != 0o644
    {
        why.push("the link's target was changed".into());
    }
    if fs::read_link(link).ok().as_deref() != Some(victim) {
        why.push("the link was replaced or removed".into());
    }
    Attack {
        name: name.into(),
        refused: why.is_empty(),
        why: format!("{}\n{output}", why.join("; ")),
    }
}

fn mongodb_world(user: &str) -> World {
    let mut world = World::new();
    world.host_fakes();
    servers::with_mongodb(&mut world, user);
    world
}

#[test]
fn links_planted_at_the_temporary_name_or_the_target_are_refused() {
    let mut attacks = Vec::new();
    for at_temporary in [true, false] {
        let position = if at_temporary {
            "temporary name"
        } else {
            "target"
        };

        // The MongoDB key file, in a directory the `mongodb` user owns.
        let world = mongodb_world(&servers::unique("link"));
        let key = world.path("/var/lib/mongodb/encryption");
        let link = if at_temporary {
            temporary(&key)
        } else {
            key.clone()
        };
        let victim = plant_victim(&world);
        attacks.push(attack(
            &format!("key file, {position}"),
            &link,
            &victim,
            || world.install(&["--only", "credentials", "--only", "mongodb"]),
        ));

        // The credentials file.
        let world = World::new();
        let credentials = world.path("/etc/stackinstall/credentials.toml");
        let link = match at_temporary {
            true => temporary(&credentials),
            false => credentials.clone(),
        };
        let victim = plant_victim(&world);
        attacks.push(attack(
            &format!("credentials file, {position}"),
            &link,
            &victim,
            || world.install(&["--only", "credentials"]),
        ));

        // A file `render --out` writes, in a directory someone else can write.
        let world = World::new();
        let out = world.dir.path().join("shared");
        fs::create_dir_all(&out).unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o1777)).unwrap();
        let gateway = out.join("gateway.yaml");
        let link = if at_temporary {
            temporary(&gateway)
        } else {
            gateway.clone()
        };
        let victim = plant_victim(&world);
        attacks.push(attack(
            &format!("render --out file, {position}"),
            &link,
            &victim,
            || {
                world
                    .command()
                    .args(["render", "--domain", DOMAIN, "--out", out.to_str().unwrap()])
                    .assert()
            },
        ));
    }
    let refused = attacks.iter().filter(|a| a.refused).count();
    report(&format!(
        "planted links: {} attacks tried, {refused} refused (link target unchanged, link named in the error)",
        attacks.len()
    ));
    let failed: Vec<String> = attacks
        .iter()
        .filter(|a| !a.refused)
        .map(|a| format!("{}: {}", a.name, a.why))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn a_key_file_hard_linked_to_another_file_is_refused() {
    let world = mongodb_world(&servers::unique("hardlink"));
    let victim = plant_victim(&world);
    let key = world.path("/var/lib/mongodb/encryption");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    fs::hard_link(&victim, &key).unwrap();
    let failed = world
        .install(&["--only", "credentials", "--only", "mongodb"])
        .code(1);
    let text = stderr(&failed);
    assert!(
        text.contains(&format!(
            "`{}` is a hard link to another file",
            key.display()
        )),
        "{text}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), PRECIOUS);
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o7777, 0o644);
}

// ---------------------------------------- existing directories (item 3) --

#[test]
fn render_into_an_existing_directory_keeps_its_mode() {
    let world = World::new();
    let shared = world.dir.path().join("tmp");
    fs::create_dir_all(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    world
        .command()
        .args([
            "render",
            "--domain",
            DOMAIN,
            "--out",
            shared.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert!(shared.join("gateway.yaml").exists());
    let mode = fs::metadata(&shared).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "render --out left the directory's mode alone");

    let fresh = world.dir.path().join("new/out");
    world
        .command()
        .args([
            "render",
            "--domain",
            DOMAIN,
            "--out",
            fresh.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn a_directory_link_planted_where_others_can_write_is_refused() {
    let world = World::new();
    let shared = world.dir.path().join("tmp");
    let victim = world.dir.path().join("etc-standin");
    fs::create_dir_all(&shared).unwrap();
    fs::create_dir_all(&victim).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o755)).unwrap();
    let link = shared.join("review");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut refused = 0;
    for out in [link.clone(), link.join("deeper")] {
        let failed = world
            .command()
            .args(["render", "--domain", DOMAIN, "--out", out.to_str().unwrap()])
            .assert()
            .code(1);
        let error = stderr(&failed);
        assert!(
            error.contains(&format!(
                "`{}` is a symbolic link in a directory other users can write; refusing to follow it",
                link.display()
            )),
            "{error}"
        );
        refused += 1;
    }
    assert_eq!(
        fs::read_dir(&victim).unwrap().count(),
        0,
        "nothing was written through the link"
    );

    // The NFS export path, with `/data` writable by everyone.
    let nfs = nfs_world();
    let data = nfs.path("/data");
    fs::create_dir_all(&data).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&victim, data.join("stackbill")).unwrap();
    let failed = nfs.install(&["--only", "nfs"]).code(1);
    // `/data` itself is refused first: everyone may write it (issue 21).
    assert!(
        stderr(&failed).contains("data` can be written by everyone (mode 0777)"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(
        fs::metadata(&victim).unwrap().mode() & 0o7777,
        0o755,
        "the target's mode is unchanged"
    );
    refused += 1;

    // A link in a directory only root writes is root's own layout: followed.
    let private = world.dir.path().join("private");
    fs::create_dir_all(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&victim, private.join("out")).unwrap();
    world
        .command()
        .args([
            "render",
            "--domain",
            DOMAIN,
            "--out",
            private.join("out").to_str().unwrap(),
        ])
        .assert()
        .success();
    assert!(victim.join("gateway.yaml").exists());
    report(&format!(
        "directory links: {refused} planted links refused (render --out twice, the NFS path), 1 link in a root-only directory followed"
    ));
}

pub(crate) fn nfs_world() -> World {
    let world = World::new();
    world.host_fakes();
    world.fake("exportfs");
    world
}

#[test]
fn an_existing_nfs_directory_is_reported_and_left_alone_unless_the_profile_says() {
    let mut world = nfs_world();
    let directory = world.path("/data/stackbill");
    fs::create_dir_all(&directory).unwrap();
    // A parent only root enters, as the install wants it (issue 25).
    fs::set_permissions(world.path("/data"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&directory, fs::Permissions::from_mode(0o750)).unwrap();
    let before = fs::metadata(&directory).unwrap();
    let (uid, gid) = (before.uid(), before.gid());

    let plan = world.install(&["--only", "nfs", "--plan"]).success();
    let said = format!(
        "/data/stackbill was already there with mode 0750, owner {uid}:{gid} (not owner nobody:nogroup, mode 0777): left as it is; set `[nfs] fix_permissions = true`"
    );
    assert!(stdout(&plan).contains(&said), "{}", stdout(&plan));
    world.install(&["--only", "nfs"]).success();
    let after = fs::metadata(&directory).unwrap();
    assert_eq!(
        (after.mode() & 0o7777, after.uid(), after.gid()),
        (0o750, uid, gid),
        "left as it was"
    );

    world.set_env("STACKINSTALL_NFS__FIX_PERMISSIONS", "true");
    let plan = world.install(&["--only", "nfs", "--plan"]).success();
    assert!(
        stdout(&plan).contains(&format!(
            "change /data/stackbill from mode 0750, owner {uid}:{gid} to owner nobody:nogroup, mode 0777"
        )),
        "{}",
        stdout(&plan)
    );
    world.install(&["--only", "nfs"]).success();
    let fixed = fs::metadata(&directory).unwrap();
    assert_eq!(
        (fixed.mode() & 0o7777, fixed.uid(), fixed.gid()),
        (0o777, 65534, 65534)
    );
    report("nfs: an existing directory reported and kept, then fixed on request");
}

// ------------------------ directories swapped during a run (issue 21, 1) --

/// Makes `path` and every directory above it traversable by others (0755
/// at least, as `/` is): `tempdir()` makes them 0700, and an attack by
/// `nobody` must not fail for that reason alone.
pub(crate) fn traversable(path: &Path) {
    for ancestor in path.ancestors() {
        let Ok(metadata) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = metadata.mode() & 0o7777;
        if mode & 0o055 != 0o055 {
            fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o755)).unwrap();
        }
    }
}

/// Runs `script` with `sh` as `nobody` (group `nogroup`, and `groups` as
/// supplementary groups); returns whether it succeeded and its stderr.
pub(crate) fn as_nobody(script: &str, groups: &[u32]) -> (bool, String) {
    let mut command = std::process::Command::new("setpriv");
    command.args(["--reuid=nobody", "--regid=nogroup"]);
    match groups.is_empty() {
        true => command.arg("--clear-groups"),
        false => command.arg(format!(
            "--groups={}",
            groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )),
    };
    let output = command.args(["sh", "-c", script]).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// How a run with a pause point went.
struct Paused {
    /// It stopped at the point (the attack ran then).
    paused: bool,
    code: Option<i32>,
    stderr: String,
}

/// Runs `command` with `STACKINSTALL_TEST_PAUSE_AT=point`: it stops
/// itself (SIGSTOP) there, `attack` runs, then it goes on (SIGCONT). A run
/// that ends before the point (refused earlier) is reported as such.
fn run_with_pause(
    mut command: std::process::Command,
    point: &str,
    attack: impl FnOnce(),
) -> Paused {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    command
        .env("STACKINSTALL_TEST_PAUSE_AT", point)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().unwrap());
    // Reaped by the `waitpid` calls below (std's `wait` cannot see a stop).
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waiting for and signalling our own child.
    let paused = unsafe {
        libc::waitpid(pid, &mut status, libc::WUNTRACED);
        libc::WIFSTOPPED(status)
    };
    if paused {
        attack();
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::waitpid(pid, &mut status, 0);
        }
    }
    Paused {
        paused,
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stderr: fs::read_to_string(stderr.path()).unwrap(),
    }
}

/// A root-only directory: what the attacker wants root's files in (or
/// exported), standing in for `/etc` or `/`.
fn root_only_victim(world: &World) -> PathBuf {
    let victim = world.dir.path().join("root-only");
    fs::create_dir_all(&victim).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    victim
}

/// A system group that `nobody` is given in the attacks on a directory
/// such a group may write (`/var/log` is `root:syslog 0775` on Ubuntu):
/// `adm`'s gid on Debian and Ubuntu.
const SYSTEM_GROUP: u32 = 4;

/// One swap race: what it was and whether root's write followed the link.
struct Race {
    name: String,
    followed: bool,
    detail: String,
}

/// `render --out PARENT/review` while `nobody`, at the pause between the
/// check and the writes, renames `review` away and puts a link to a
/// root-only directory in its place.
fn render_swap_race(parent_mode: u32, parent_group: u32, groups: &[u32]) -> Race {
    let world = World::new();
    traversable(world.dir.path());
    let victim = root_only_victim(&world);
    let parent = world.dir.path().join("shared");
    let review = parent.join("review");
    fs::create_dir_all(&review).unwrap();
    std::os::unix::fs::chown(&parent, Some(0), Some(parent_group)).unwrap();
    fs::set_permissions(&parent, fs::Permissions::from_mode(parent_mode)).unwrap();
    let mut command = world.std_command();
    command.args([
        "render",
        "--domain",
        DOMAIN,
        "--out",
        review.to_str().unwrap(),
    ]);
    let swap = format!(
        "cd '{}' && mv review review.old && ln -s '{}' review",
        parent.display(),
        victim.display()
    );
    let mut swapped = (false, String::new());
    let run = run_with_pause(command, "review", || swapped = as_nobody(&swap, groups));
    let landed = fs::read_dir(&victim).unwrap().count();
    Race {
        name: format!("render --out, parent {parent_mode:04o} group {parent_group}"),
        followed: landed > 0,
        detail: format!(
            "paused {}, swap done {} ({}), exit {:?}, {landed} files in the root-only directory\n{}",
            run.paused,
            swapped.0,
            swapped.1.trim(),
            run.code,
            run.stderr
        ),
    }
}

/// The `nfs` step while `nobody`, at the pause between the check of the
/// export path and the making of the directory, puts a link to a
/// root-only directory at `/data/stackbill`.
fn nfs_swap_race(data_mode: u32, data_group: u32, groups: &[u32]) -> Race {
    let world = nfs_world();
    traversable(world.dir.path());
    let victim = root_only_victim(&world);
    let data = world.path("/data");
    fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(0), Some(data_group)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(data_mode)).unwrap();
    let mut command = world.std_command();
    command.args([
        "install",
        "--domain",
        DOMAIN,
        "--self-signed",
        "--only",
        "nfs",
    ]);
    let plant = format!(
        "ln -s '{}' '{}'",
        victim.display(),
        data.join("stackbill").display()
    );
    let mut planted = (false, String::new());
    let run = run_with_pause(command, "stackbill", || planted = as_nobody(&plant, groups));
    let exports = fs::read_to_string(world.path("/etc/exports")).unwrap_or_default();
    let victim_mode = fs::metadata(&victim).unwrap().mode() & 0o7777;
    let is_link = fs::symlink_metadata(data.join("stackbill"))
        .is_ok_and(|metadata| metadata.file_type().is_symlink());
    Race {
        name: format!("nfs path, /data {data_mode:04o} group {data_group}"),
        // The run succeeded exporting a path that is a link to the victim,
        // or the victim was made everyone's.
        followed: (run.code == Some(0) && is_link && exports.contains("/data/stackbill "))
            || victim_mode != 0o700,
        detail: format!(
            "paused {}, link planted {} ({}), exit {:?}, victim mode {victim_mode:04o}\n{}",
            run.paused,
            planted.0,
            planted.1.trim(),
            run.code,
            run.stderr
        ),
    }
}

#[test]
fn a_directory_swapped_by_another_user_between_check_and_write_is_not_followed() {
    let races = vec![
        // The reproduction: a non-sticky 0777 parent.
        render_swap_race(0o777, 0, &[]),
        // A parent a system group may write (accepted): the swap happens,
        // the files go to the directory that was checked.
        render_swap_race(0o775, SYSTEM_GROUP, &[SYSTEM_GROUP]),
        nfs_swap_race(0o777, 0, &[]),
        nfs_swap_race(0o775, SYSTEM_GROUP, &[SYSTEM_GROUP]),
    ];
    let followed: Vec<&Race> = races.iter().filter(|race| race.followed).collect();
    report(&format!(
        "swap races: {} tried, {} followed",
        races.len(),
        followed.len()
    ));
    for race in &races {
        eprintln!("{}: {}", race.name, race.detail);
    }
    assert!(
        followed.is_empty(),
        "{}",
        followed
            .iter()
            .map(|race| format!("{}: {}", race.name, race.detail))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// The `host.nfs` findings of `doctor --checks host --output json`.
pub(crate) fn doctor_nfs_findings(world: &World) -> Vec<String> {
    let output = world
        .command()
        .args(["doctor", "--output", "json", "--checks", "host"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&output.stderr));
    });
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["check"] == "host.nfs")
        .flat_map(|check| check["findings"].as_array().cloned().unwrap_or_default())
        .map(|finding| format!("{} {}", finding["class"], finding["what"]))
        .collect()
}

/// The `nfs` step's health as `status --output json` shows it.
pub(crate) fn status_nfs_health(world: &World) -> String {
    let output = world
        .command()
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&output.stderr));
    });
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["id"] == "nfs")
        .map(|step| step["health"].as_str().unwrap_or("").to_string())
        .unwrap()
}

#[test]
fn an_export_directory_swapped_after_the_install_is_an_error_in_status_and_doctor() {
    let mut detected = 0;
    // `/data` made writable by everyone after the install, then by a
    // system group `nobody` is in: either way `nobody` swaps the export.
    for (mode, group) in [(0o777, 0), (0o775, SYSTEM_GROUP)] {
        let world = nfs_world();
        traversable(world.dir.path());
        world.install(&["--only", "nfs"]).success();
        assert_eq!(status_nfs_health(&world), "ok");
        assert!(doctor_nfs_findings(&world).is_empty());
        let data = world.path("/data");
        std::os::unix::fs::chown(&data, Some(0), Some(group)).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(mode)).unwrap();
        let swap = format!(
            "cd '{}' && mv stackbill stackbill.old && ln -s / stackbill",
            data.display()
        );
        let (swapped, why) = as_nobody(&swap, &[group]);
        assert!(swapped, "the swap itself: {why}");
        let health = status_nfs_health(&world);
        assert!(
            health.contains("/data/stackbill") && health != "ok",
            "status says {health}"
        );
        let findings = doctor_nfs_findings(&world);
        assert!(
            findings.iter().any(|f| f.contains("nfs-export")),
            "doctor found {findings:?}"
        );
        detected += 1;
    }
    report(&format!(
        "export directory swapped after the install: {detected} swaps, each an error in status and doctor"
    ));
}

// ------------------------------ the run lock held by another user (21, 3) --

#[test]
fn the_run_lock_cannot_be_held_by_another_user_to_stop_the_renewal() {
    let world = World::new();
    traversable(world.dir.path());
    // A kubectl that cannot tell the token's age: the renewal counts as due.
    world.fake("kubectl");
    world.rule(Rule::new(
        "kubectl",
        &[],
        Action::Fail {
            code: 1,
            stderr: "The connection to the server 127.0.0.1:6443 was refused\n".into(),
        },
    ));
    // The lock file an earlier stackinstall left, 0644 as it made them.
    let lock = world.path("/var/lib/stackinstall/lock");
    world.write("/var/lib/stackinstall/lock", "4242\n");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    let mut holder = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["flock", "-s", lock.to_str().unwrap(), "sh", "-c"])
        .arg("echo held; exec sleep 600")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "held\n", "nobody holds the 0644 lock");
    let refresh = world.command().arg("ecr-refresh").output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refresh.stdout),
        String::from_utf8_lossy(&refresh.stderr)
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_ne!(
        refresh.status.code(),
        Some(0),
        "a due renewal blocked by nobody's lock is a failure the timer shows:\n{said}"
    );
    assert!(said.contains("which is not a stackinstall run"), "{said}");
    assert!(!said.contains("4242"), "a dead pid is never named: {said}");
    let metadata = fs::metadata(&lock).unwrap();
    assert_eq!(
        (metadata.mode() & 0o7777, metadata.uid()),
        (0o600, 0),
        "the lock file is made root's 0600"
    );
    let (held_again, why) = as_nobody(&format!("flock -n -s '{}' true", lock.display()), &[]);
    assert!(!held_again, "nobody cannot open the lock now");
    report(&format!(
        "run lock: nobody's hold of a 0644 lock makes ecr-refresh fail (exit {:?}); the file made 0600 root, nobody's next hold refused ({})",
        refresh.status.code(),
        why.trim()
    ));
}

// ------------------------ the old installer's password file (issue 21, 5) --

#[test]
fn the_old_installers_password_file_is_read_only_from_root_and_only_when_root_owns_it() {
    let legacy = "MYSQL:\n  Username: stackbill\n  Password: ChosenByAnother1\n";
    // (where, owner, mode, HOME of the run, what the refusal says)
    let cases = [
        (
            "/home/alice/stackbill-credentials.txt",
            65534,
            0o644,
            "/home/alice",
            "it is in the invoking user's home",
        ),
        (
            "/root/stackbill-credentials.txt",
            65534,
            0o600,
            "/root",
            "it belongs to uid 65534, not root",
        ),
        (
            "/root/stackbill-credentials.txt",
            0,
            0o666,
            "/root",
            "group or others may write it (mode 0666)",
        ),
    ];
    let mut refused = 0;
    for (place, owner, mode, home, why) in cases {
        let world = World::new();
        world.write(place, legacy);
        let file = world.path(place);
        std::os::unix::fs::chown(&file, Some(owner), Some(owner)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        let run = world
            .command()
            .env("HOME", home)
            .args([
                "install",
                "--domain",
                DOMAIN,
                "--self-signed",
                "--only",
                "credentials",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&run.stderr);
        let credentials = fs::read_to_string(world.path("/etc/stackinstall/credentials.toml"))
            .unwrap_or_default();
        assert!(
            !credentials.contains("ChosenByAnother1"),
            "{place} ({owner}, {mode:o}) became the MySQL password:\n{text}"
        );
        assert!(!run.status.success(), "{text}");
        assert!(
            text.contains(&format!("`{}` is not read: {why}", file.display())),
            "{text}"
        );
        refused += 1;
    }
    // Root's own, 0600: imported.
    let world = World::new();
    world.write("/root/stackbill-credentials.txt", legacy);
    let file = world.path("/root/stackbill-credentials.txt");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    world.install(&["--only", "credentials"]).success();
    assert!(
        world
            .read("/etc/stackinstall/credentials.toml")
            .contains("ChosenByAnother1")
    );
    report(&format!(
        "old installer's password file: {refused} files refused (a user's home, another owner, writable by others), root's 0600 imported"
    ));
}

// ----------------------- private directories and the bundle's logs (21, 6) --

#[test]
fn a_log_directory_another_account_made_is_refused_and_the_bundle_follows_no_log_link() {
    // `/var/log` as Ubuntu has it, `root:syslog 0775`: a member of that
    // group (here `nobody`, given the system group) makes the tool's log
    // directory first.
    let world = World::new();
    traversable(world.dir.path());
    let log = world.path("/var/log");
    fs::create_dir_all(&log).unwrap();
    std::os::unix::fs::chown(&log, Some(0), Some(SYSTEM_GROUP)).unwrap();
    fs::set_permissions(&log, fs::Permissions::from_mode(0o775)).unwrap();
    let ours = log.join("stackinstall");
    let (made, why) = as_nobody(
        &format!("mkdir -m 0777 '{}'", ours.display()),
        &[SYSTEM_GROUP],
    );
    assert!(made, "{why}");
    let run = world.install(&["--only", "credentials"]);
    let text = stderr(&run);
    assert!(!run.get_output().status.success(), "{text}");
    assert!(text.contains(&format!("`{}`", ours.display())), "{text}");
    assert_eq!(
        fs::read_dir(&ours).unwrap().count(),
        0,
        "no log written in another account's directory"
    );
    assert_eq!(fs::metadata(&ours).unwrap().uid(), 65534, "left as it is");

    // The bundle reads the logs: at the pause after the listing, `nobody`
    // (who owns the directory) swaps a log for a link to a root-only file.
    let victim = root_only_victim(&world).join("shadow");
    fs::write(&victim, "root:TopSecretHash42:19000:0:99999:7:::\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let (wrote, why) = as_nobody(
        &format!("echo 'a log line' > '{}/install-1.log'", ours.display()),
        &[],
    );
    assert!(wrote, "{why}");
    let bundle = world.dir.path().join("support.tar.gz");
    let mut command = world.std_command();
    command.args([
        "doctor",
        "--checks",
        "host",
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    let swap = format!(
        "cd '{}' && rm install-1.log && ln -s '{}' install-1.log",
        ours.display(),
        victim.display()
    );
    let mut swapped = (false, String::new());
    let doctor = run_with_pause(command, "bundle-logs", || swapped = as_nobody(&swap, &[]));
    assert!(
        doctor.paused && swapped.0,
        "{}: {}",
        swapped.1,
        doctor.stderr
    );
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(&bundle).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("TopSecretHash42"),
        "the bundle read a root-only file through a log link: {}",
        doctor.stderr
    );
    report(
        "private directories: a log directory nobody made refused (nothing written in it); a log swapped for a link during the bundle not read through",
    );
}

// --------------------------------------------- no core file (issue 21, 8) --

#[test]
fn a_crash_while_holding_passwords_leaves_no_core_file() {
    use std::os::unix::process::CommandExt;
    let world = World::new();
    let canary = "CoreDumpCanaryPassword0123456789";
    let mut credentials = String::from("version = 1\n");
    for service in ["mysql", "mongodb", "rabbitmq"] {
        credentials.push_str(&format!(
            "[{service}]\nusername = \"stackbill\"\npassword = \"{canary}{service}\"\n"
        ));
    }
    world.write("/etc/stackinstall/credentials.toml", &credentials);
    fs::set_permissions(
        world.path("/etc/stackinstall/credentials.toml"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // The core pattern here is `core` (in the crashing process's working
    // directory); the limit is lifted for the child, as a shell's
    // `ulimit -c unlimited` would.
    let pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    assert!(
        !pattern.starts_with('|'),
        "core files go to a program here: {pattern}"
    );
    let cores = world.dir.path().join("cores");
    fs::create_dir_all(&cores).unwrap();
    // At the pause point the passwords are loaded; SIGQUIT (whose default
    // action dumps core) then ends it.
    let mut command = world.std_command();
    command
        .current_dir(&cores)
        .env("STACKINSTALL_TEST_PAUSE_AT", "credentials-loaded")
        .args([
            "install",
            "--domain",
            DOMAIN,
            "--self-signed",
            "--only",
            "credentials",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waiting for and signalling our own child.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WUNTRACED);
        assert!(libc::WIFSTOPPED(status), "it did not reach the point");
        libc::kill(pid, libc::SIGQUIT);
        libc::kill(pid, libc::SIGCONT);
        libc::waitpid(pid, &mut status, 0);
    }
    assert!(libc::WIFSIGNALED(status), "it was not killed by SIGQUIT");
    let dumped = libc::WCOREDUMP(status);
    let leaked: Vec<String> = fs::read_dir(&cores)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            fs::read(path).is_ok_and(|bytes| {
                bytes
                    .windows(canary.len())
                    .any(|window| window == canary.as_bytes())
            })
        })
        .map(|path| path.display().to_string())
        .collect();
    report(&format!(
        "core files: a crash while holding the passwords: core dumped {dumped}, {} files with a password",
        leaked.len()
    ));
    assert!(!dumped && leaked.is_empty(), "core dumped: {leaked:?}");
}
