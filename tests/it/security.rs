//! Security of what the install writes (issue 12): the owner and mode of
//! every file and directory a full install writes, checked against one
//! table; links planted where the tool writes or reads its own files,
//! refused; existing directories (`render --out /tmp`, the NFS export)
//! keeping their mode and owner; K3s's kubeconfig readable by root only.
//! The installed binary the timer runs and `ecr-refresh` under the run lock
//! are tested in `application.rs`, next to the other registry tests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::cluster;
use crate::support::{DOMAIN, World, full, report, servers, stderr, stdout};

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
    ("/data", Directory, Root, 0o755),
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
    ("/var/lib/rancher", Directory, Root, 0o755),
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
    ("/var/lib/stackinstall/lock", Public, Root, 0o644),
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
            && !plan.contains("backup"),
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
    assert!(
        stderr(&failed)
            .contains("stackbill` is a symbolic link in a directory other users can write"),
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

fn nfs_world() -> World {
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
