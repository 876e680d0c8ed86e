//! `stackinstall backup` after a full install (the fake cluster, the real
//! MariaDB, RabbitMQ and SecantusDB): every member in the archive with its
//! SHA-256, the data really in it (a row, a document, the user's
//! definitions), K3s stopped only while its SQLite datastore is copied;
//! `--verify` passes, a changed byte or member is refused; `--unencrypted`
//! is said loudly and root-only; no key and no terminal writes nothing;
//! the passphrase asked twice in a real pseudo-terminal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::full::quick_full_world;
use crate::support::servers::{self, block_on, mysql_as_root, setting};
use crate::support::{World, report, stderr, stdout};
use stackinstall::backup::{self, Protection, members};
use stackinstall::secret::Secret;

/// Where the tests keep the backup key, in the root.
const KEY_FILE: &str = "/etc/stackinstall/backup.key";

/// Writes a new age key at `KEY_FILE` (0600) and points the world at it.
pub fn with_key(world: &mut World) -> Secret {
    let key = backup::new_key_file();
    world.write(KEY_FILE, key.expose());
    std::fs::set_permissions(world.path(KEY_FILE), std::fs::Permissions::from_mode(0o600)).unwrap();
    world.set_env("STACKINSTALL_BACKUP__KEY_FILE", KEY_FILE);
    key
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The world's data in each server: a row in `USER_app`, a document in
/// the MongoDB database `USER_data`.
fn put_data(user: &str) {
    mysql_as_root(&[
        format!(
            "CREATE TABLE IF NOT EXISTS `{user}_app`.accounts (id INT PRIMARY KEY, name VARCHAR(40))"
        ),
        format!("REPLACE INTO `{user}_app`.accounts VALUES (7, 'row-of-{user}')"),
    ]);
    let admin = setting("STACKINSTALL_TEST_MONGODB_ADMIN_USER");
    let password = setting("STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD");
    block_on(async {
        let client = servers::mongodb_client(Some((&admin, &password)));
        let collection = client
            .database(&format!("{user}_data"))
            .collection::<mongodb::bson::Document>("tickets");
        collection.drop().await.ok();
        collection
            .insert_one(mongodb::bson::doc! { "_id": 1, "note": format!("document-of-{user}") })
            .await
            .unwrap();
    });
}

/// An installed full world with its data and a backup key.
pub fn installed_world(label: &str) -> (World, String, Secret) {
    let user = servers::unique(label);
    let mut world = quick_full_world(&user);
    world.install(&["--yes"]).success();
    put_data(&user);
    let key = with_key(&mut world);
    (world, user, key)
}

/// `backup --out FILE` in `world`; the archive's path.
pub fn take_backup(world: &World, name: &str, extra: &[&str]) -> (PathBuf, String, String) {
    let out = world.dir.path().join(name);
    let assert = world
        .command()
        .args(["backup", "--out"])
        .arg(&out)
        .args(extra)
        .assert()
        .success();
    (out, stdout(&assert), stderr(&assert))
}

#[test]
fn a_backup_holds_every_member_with_its_data_and_verifies() {
    let (world, user, key) = installed_world("backup");
    world.clear_calls();
    let (out, printed, _) = take_backup(&world, "host.tar.gz.age", &[]);
    assert_eq!(mode_of(&out), 0o600);
    assert!(
        printed.contains("Encrypted with age to the key"),
        "{printed}"
    );
    let bytes = std::fs::read(&out).unwrap();
    assert!(backup::is_encrypted(&bytes));
    let archive = backup::unpack(&bytes, &Protection::KeyFile(key)).unwrap();
    let names: Vec<&str> = (archive.manifest.members.iter())
        .map(|m| m.name.as_str())
        .collect();
    for name in [
        members::CREDENTIALS,
        members::STATE,
        members::CONFIG,
        members::TLS_CERTIFICATE,
        members::TLS_KEY,
        members::RELEASE_VALUES,
        members::K3S_TOKEN,
        "k3s/db/state.db",
        members::MYSQL_DUMP,
        members::RABBITMQ_DEFINITIONS,
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        archive.manifest.left_out.is_empty(),
        "{:?}",
        archive.manifest.left_out
    );
    let text = |name: &str| String::from_utf8_lossy(archive.member(name).unwrap()).into_owned();
    assert_eq!(
        text(members::CREDENTIALS),
        world.read("/etc/stackinstall/credentials.toml")
    );
    assert_eq!(
        text(members::TLS_KEY),
        world.read("/etc/stackinstall/tls/tls.key")
    );
    assert_eq!(
        text(members::K3S_TOKEN),
        world.read("/var/lib/rancher/k3s/server/token")
    );
    let dump = text(members::MYSQL_DUMP);
    assert!(
        dump.contains(&format!("row-of-{user}")),
        "the row is not in the dump"
    );
    assert!(dump.contains(&format!(
        "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{user}_conf`"
    )));
    let mysql_password =
        toml::from_str::<toml::Table>(&text(members::CREDENTIALS)).unwrap()["mysql"]["password"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        text(members::RELEASE_VALUES).contains(&mysql_password),
        "the values hold the passwords"
    );
    let definitions: serde_json::Value =
        serde_json::from_str(&text(members::RABBITMQ_DEFINITIONS)).unwrap();
    assert!(
        definitions["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == user.as_str()),
        "the user is in the definitions"
    );
    let tickets = archive
        .member(&members::mongodb_member(&format!("{user}_data"), "tickets"))
        .expect("the collection is in the archive");
    let document = mongodb::bson::Document::from_reader(tickets).unwrap();
    assert_eq!(
        document.get_str("note").unwrap(),
        format!("document-of-{user}")
    );

    // K3s was stopped for the copy and started again.
    let systemctl = world.lines_of("systemctl");
    let stop = systemctl
        .iter()
        .position(|l| l.contains("stop k3s"))
        .expect("k3s stopped");
    let start = systemctl
        .iter()
        .position(|l| l.contains("start k3s"))
        .expect("k3s started");
    assert!(stop < start, "{systemctl:?}");
    assert!(world.k3s_running());

    let verify = world
        .command()
        .args(["backup", "--verify"])
        .arg(&out)
        .assert()
        .success();
    let verified = stdout(&verify);
    assert!(
        verified.contains(&format!("verified: all {} members match", names.len())),
        "{verified}"
    );
    report(&format!(
        "backup: {} members, {} bytes encrypted, the row, the document and the user's definitions in it; verified",
        names.len(),
        bytes.len()
    ));

    // One byte changed: age refuses the file, nothing is read.
    let mut changed = bytes.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    let tampered = world.dir.path().join("tampered.tar.gz.age");
    std::fs::write(&tampered, &changed).unwrap();
    let refused = world
        .command()
        .args(["backup", "--verify"])
        .arg(&tampered)
        .assert()
        .code(1);
    let said = stderr(&refused);
    assert!(
        said.contains("is refused: it is encrypted and cannot be decrypted"),
        "{said}"
    );

    // Unencrypted: said loudly, root-only; a changed member is named.
    let (plain, _, warned) = take_backup(&world, "plain.tar.gz", &["--unencrypted"]);
    assert!(warned.contains("is NOT ENCRYPTED"), "{warned}");
    assert_eq!(mode_of(&plain), 0o600);
    let archive = backup::unpack(&std::fs::read(&plain).unwrap(), &Protection::None).unwrap();
    let mut entries = archive.entries.clone();
    let dump = entries
        .iter_mut()
        .find(|e| e.name == members::MYSQL_DUMP)
        .unwrap();
    dump.bytes = String::from_utf8_lossy(&dump.bytes)
        .replace(&format!("row-of-{user}"), "row-of-mallory")
        .into_bytes();
    let repacked = backup::pack(&archive.manifest, &entries, &Protection::None).unwrap();
    std::fs::write(&tampered, repacked).unwrap();
    let refused = world
        .command()
        .args(["backup", "--verify"])
        .arg(&tampered)
        .assert()
        .code(1);
    let said = stderr(&refused);
    assert!(
        said.contains("member `mysql/dump.sql` does not match the manifest"),
        "{said}"
    );
    report(
        "backup: a changed byte (encrypted) and a changed member (unencrypted) refused by --verify",
    );
}

#[test]
fn without_a_key_file_or_a_terminal_nothing_is_written() {
    let world = World::engine();
    world.install(&["--only", "credentials", "--yes"]).success();
    let said = refused_backup(&world);
    assert!(said.contains("nothing was written"), "{said}");
    assert!(said.contains("[backup] key_file"), "{said}");
}

/// `backup --out FILE` refused (exit 2), no file written: what it said.
pub fn refused_backup(world: &World) -> String {
    let out = world.dir.path().join("never.tar.gz.age");
    let assert = world
        .command()
        .args(["backup", "--out"])
        .arg(&out)
        .assert()
        .code(2);
    assert!(!out.exists());
    stderr(&assert)
}

#[test]
fn a_key_file_others_may_read_is_refused() {
    let mut world = World::engine();
    world.install(&["--only", "credentials", "--yes"]).success();
    with_key(&mut world);
    std::fs::set_permissions(world.path(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = refused_backup(&world);
    assert!(
        said.contains("cannot be used: others may read it"),
        "{said}"
    );
}

#[test]
fn the_passphrase_is_asked_twice_on_a_terminal_and_again_to_verify() {
    let world = World::engine();
    world.install(&["--only", "credentials", "--yes"]).success();
    let out = world.dir.path().join("typed.tar.gz.age");
    let out_text = out.display().to_string();
    let passphrase = "correct horse battery staple 4";
    let mut session = spawn(&world, &["backup", "--out", &out_text]);
    session
        .exp_string("Passphrase to encrypt the backup with")
        .unwrap();
    session.send_line(passphrase).unwrap();
    session.exp_string("The same again").unwrap();
    session.send_line("something else").unwrap();
    session.exp_string("the two passphrases differ").unwrap();
    session
        .exp_string("Passphrase to encrypt the backup with")
        .unwrap();
    session.send_line(passphrase).unwrap();
    session.exp_string("The same again").unwrap();
    session.send_line(passphrase).unwrap();
    let (code, rest) = exit_code(session);
    assert_eq!(code, 0, "{rest}");
    assert!(!rest.contains(passphrase), "the passphrase was shown");
    let bytes = std::fs::read(&out).unwrap();
    assert!(backup::needs_passphrase(&bytes));
    let archive = backup::unpack(&bytes, &Protection::Passphrase(Secret::new(passphrase))).unwrap();
    assert!(archive.member(members::CREDENTIALS).is_some());
    assert!(
        (archive.manifest.left_out.iter())
            .any(|left| left.why.contains("`mysql` step has not run")),
        "{:?}",
        archive.manifest.left_out
    );

    let mut session = spawn(&world, &["backup", "--verify", &out_text]);
    session.exp_string("Passphrase of the backup").unwrap();
    session.send_line("a wrong one").unwrap();
    let (code, rest) = exit_code(session);
    assert_eq!(code, 1, "{rest}");
    assert!(rest.contains("cannot be decrypted"), "{rest}");
    let mut session = spawn(&world, &["backup", "--verify", &out_text]);
    session.exp_string("Passphrase of the backup").unwrap();
    session.send_line(passphrase).unwrap();
    let (code, rest) = exit_code(session);
    assert_eq!(code, 0, "{rest}");
    assert!(rest.contains("verified: all"), "{rest}");
    report(
        "backup: the passphrase asked twice in a pty (a mismatch asked again), a wrong one refused by --verify, the right one verifies",
    );
}

/// The binary in a pseudo-terminal (rexpect), with `args`.
fn spawn(world: &World, args: &[&str]) -> rexpect::session::PtySession {
    let mut command = world.std_command();
    command.args(args);
    rexpect::session::spawn_command(command, Some(60_000)).expect("a pty session")
}

/// Waits for the end of the output; the exit code and the output.
fn exit_code(mut session: rexpect::session::PtySession) -> (i32, String) {
    let rest = session.exp_eof().expect("the program ends");
    match session.process().wait().expect("its status") {
        rexpect::process::WaitStatus::Exited(_, code) => (code, rest),
        other => panic!("ended by {other:?}:\n{rest}"),
    }
}

/// The accounts' rows of `USER_app` as root.
fn rows_of(user: &str) -> Vec<String> {
    block_on(async {
        use sqlx::Row;
        let mut connection = servers::mysql_root().await;
        let query = format!("SELECT name FROM `{user}_app`.accounts ORDER BY id");
        match sqlx::query(&query).fetch_all(&mut connection).await {
            Ok(rows) => rows.iter().map(|row| row.get::<String, _>(0)).collect(),
            Err(_) => Vec::new(),
        }
    })
}

/// The notes of the documents in `USER_data.tickets`.
fn notes_of(user: &str) -> Vec<String> {
    let admin = setting("STACKINSTALL_TEST_MONGODB_ADMIN_USER");
    let password = setting("STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD");
    block_on(async {
        use futures_util_free::collect;
        let client = servers::mongodb_client(Some((&admin, &password)));
        let collection = client
            .database(&format!("{user}_data"))
            .collection::<mongodb::bson::Document>("tickets");
        collect(collection.find(mongodb::bson::doc! {}).await.unwrap()).await
    })
}

/// A cursor's documents' notes, without a stream combinator crate.
mod futures_util_free {
    pub async fn collect(mut cursor: mongodb::Cursor<mongodb::bson::Document>) -> Vec<String> {
        let mut notes = Vec::new();
        while cursor.advance().await.unwrap() {
            let document = cursor.deserialize_current().unwrap();
            notes.push(document.get_str("note").unwrap_or_default().to_string());
        }
        notes
    }
}

/// The password of `service` in the world's credentials file.
fn password_of(world: &World, service: &str) -> String {
    let credentials: toml::Table =
        toml::from_str(&world.read("/etc/stackinstall/credentials.toml")).unwrap();
    credentials[service]["password"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_restore_onto_an_empty_root_brings_the_data_back_and_a_rerun_changes_nothing() {
    let (world, user, key) = installed_world("restore");
    let (archive, _, _) = take_backup(&world, "host.tar.gz.age", &[]);
    // The host is lost, and its data with it.
    mysql_as_root(&[
        format!("DELETE FROM `{user}_app`.accounts"),
        format!("DROP USER IF EXISTS '{user}'@'%'"),
    ]);
    block_on(async {
        let admin = setting("STACKINSTALL_TEST_MONGODB_ADMIN_USER");
        let password = setting("STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD");
        let client = servers::mongodb_client(Some((&admin, &password)));
        client
            .database(&format!("{user}_data"))
            .drop()
            .await
            .unwrap();
    });
    servers::rabbitmqctl(&["delete_user", &user], "");
    assert!(rows_of(&user).is_empty() && notes_of(&user).is_empty());

    // A fresh root with the same servers' settings and the backup's key.
    let mut fresh = quick_full_world(&user);
    fresh.write(KEY_FILE, key.expose());
    std::fs::set_permissions(fresh.path(KEY_FILE), std::fs::Permissions::from_mode(0o600)).unwrap();
    fresh.set_env("STACKINSTALL_BACKUP__KEY_FILE", KEY_FILE);
    let restore = fresh
        .command()
        .args(["restore", "--yes"])
        .arg(&archive)
        .assert();
    let said = stderr(&restore);
    assert!(restore.get_output().status.success(), "{said}");
    assert_eq!(
        fresh.read("/etc/stackinstall/credentials.toml"),
        world.read("/etc/stackinstall/credentials.toml")
    );
    assert_eq!(
        fresh.read("/etc/stackinstall/tls/tls.key"),
        world.read("/etc/stackinstall/tls/tls.key")
    );
    assert_eq!(
        fresh.read("/var/lib/rancher/k3s/server/db/state.db"),
        world.read("/var/lib/rancher/k3s/server/db/state.db")
    );
    assert_eq!(rows_of(&user), vec![format!("row-of-{user}")]);
    assert_eq!(notes_of(&user), vec![format!("document-of-{user}")]);
    servers::amqp_login(&user, &password_of(&fresh, "rabbitmq")).expect("RabbitMQ login");
    let mysql_password = password_of(&fresh, "mysql");
    block_on(async {
        use sqlx::Connection;
        let options = sqlx::mysql::MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(setting("STACKINSTALL_TEST_MYSQL_PORT").parse().unwrap())
            .username(&user)
            .password(&mysql_password);
        sqlx::mysql::MySqlConnection::connect_with(&options)
            .await
            .expect("MySQL login with the restored password");
    });
    assert!(fresh.k3s_running());

    // A re-run with the restored configuration changes nothing.
    let rerun = fresh
        .command()
        .args(["install", "--yes", "--output", "json", "--config"])
        .arg(fresh.path("/etc/stackinstall/config.toml"))
        .assert()
        .success();
    let outcomes = crate::support::outcomes(&rerun);
    let changed: Vec<_> = (outcomes.iter())
        .filter(|(_, result)| *result == "changed")
        .collect();
    assert!(changed.is_empty(), "the re-run changed {changed:?}");
    report(&format!(
        "restore: onto an empty root, the row, the document, the RabbitMQ and MySQL logins back; a re-run: {} steps, none changed",
        outcomes.len()
    ));
}

#[test]
fn a_restore_is_refused_before_any_change_for_another_profile_a_newer_stackinstall_or_a_changed_member()
 {
    let world = World::engine();
    world.install(&["--only", "credentials", "--yes"]).success();
    let entries = vec![backup::Entry::new(
        members::CREDENTIALS,
        "the credentials file",
        b"[mysql]\nusername = \"x\"\npassword = \"from-the-backup-0123456789\"\n".to_vec(),
    )];
    let good = backup::manifest_of("stackbill-poc", &entries, Vec::new());
    let cases: Vec<(&str, backup::Manifest, Vec<backup::Entry>, i32, &str)> = vec![
        (
            "another profile",
            backup::Manifest {
                profile: "other-app".into(),
                ..good.clone()
            },
            entries.clone(),
            2,
            "pass `--profile other-app`",
        ),
        (
            "a newer stackinstall",
            backup::Manifest {
                stackinstall: "99.0.0".into(),
                ..good.clone()
            },
            entries.clone(),
            2,
            "restore it with stackinstall 99.0.0 or newer",
        ),
        (
            "a changed member",
            good.clone(),
            vec![backup::Entry::new(
                members::CREDENTIALS,
                "x",
                b"[mysql]\npassword = \"mallory\"\n".to_vec(),
            )],
            1,
            "member `stackinstall/credentials.toml` does not match the manifest",
        ),
    ];
    for (case, manifest, entries, code, words) in cases {
        let before = world.files(true);
        let file = world.dir.path().join("refused.tar.gz");
        std::fs::write(
            &file,
            backup::pack(&manifest, &entries, &Protection::None).unwrap(),
        )
        .unwrap();
        let assert = world
            .command()
            .args(["restore", "--yes"])
            .arg(&file)
            .assert()
            .code(code);
        let said = stderr(&assert);
        assert!(said.contains(words), "{case}: {said}");
        assert_eq!(
            world.files(true),
            before,
            "{case}: the restore changed files"
        );
    }
    report(
        "restore: another profile, a newer stackinstall and a changed member refused, no file changed",
    );
}

#[test]
fn an_etcd_datastore_is_snapshotted_by_k3s_and_reset_from_the_snapshot() {
    let (world, _user, _key) = installed_world("etcd");
    world.fake("k3s");
    let etcd = "/var/lib/rancher/k3s/server/db/etcd/member/snap/db";
    world.write(etcd, "etcd data at the backup\n");
    world.clear_calls();
    let (archive, _, _) = take_backup(&world, "etcd.tar.gz.age", &[]);
    let systemctl = world.lines_of("systemctl");
    assert!(
        !systemctl.iter().any(|line| line.contains("stop k3s")),
        "K3s is not stopped for an etcd snapshot: {systemctl:?}"
    );
    let k3s = world.lines_of("k3s");
    assert!(
        k3s.iter().any(|line| line.contains("etcd-snapshot save")),
        "{k3s:?}"
    );
    let snapshots = world.path("/var/lib/stackinstall/backups/.work");
    assert_eq!(
        std::fs::read_dir(&snapshots).unwrap().count(),
        0,
        "the snapshot is removed"
    );

    world.write(etcd, "etcd data changed after the backup\n");
    world.clear_calls();
    let restore = world
        .command()
        .args(["restore", "--yes"])
        .arg(&archive)
        .assert();
    assert!(
        restore.get_output().status.success(),
        "{}",
        stderr(&restore)
    );
    assert_eq!(world.read(etcd), "etcd data at the backup\n");
    let k3s = world.lines_of("k3s");
    let reset = k3s
        .iter()
        .find(|line| line.contains("--cluster-reset"))
        .expect("a cluster reset");
    assert!(reset.contains("--token-file="), "{reset}");
    let token = world.read("/var/lib/rancher/k3s/server/token");
    assert!(!reset.contains(token.trim()), "the token is in argv");
    assert!(world.k3s_running());
    report(
        "restore: etcd snapshot by `k3s etcd-snapshot save` (K3s not stopped), reset with `k3s server --cluster-reset` (token from its file)",
    );
}

#[test]
fn a_backup_killed_anywhere_is_taken_by_the_next_run_with_k3s_running_again() {
    let (world, _user, key) = installed_world("backupkill");
    let out = world.dir.path().join("killed.tar.gz.age");
    let args: [&std::ffi::OsStr; 3] = ["backup".as_ref(), "--out".as_ref(), out.as_os_str()];
    let points = world.kill_trace(&args);
    assert!(
        points
            .iter()
            .any(|p| p.contains("run systemctl stop k3s: after")),
        "{points:?}"
    );
    let mut k3s_left_stopped = 0;
    for point in &points {
        let _ = std::fs::remove_file(&out);
        assert!(world.killed_at(&args, point), "not killed at {point}");
        if !world.k3s_running() {
            k3s_left_stopped += 1;
        }
        let again = world.command().args(args).assert();
        assert!(
            again.get_output().status.success(),
            "after {point}: {}",
            stderr(&again)
        );
        assert!(
            world.k3s_running(),
            "K3s left stopped after a kill at {point}"
        );
        let archive = backup::unpack(
            &std::fs::read(&out).unwrap(),
            &Protection::KeyFile(key.clone()),
        );
        assert!(archive.is_ok(), "after {point}: {archive:?}");
    }
    assert!(
        k3s_left_stopped > 0,
        "no kill left K3s stopped: the test saw too little"
    );
    report(&format!(
        "backup: killed at each of its {} points ({k3s_left_stopped} left K3s stopped); each next run wrote a good archive and K3s ran again",
        points.len()
    ));
}

#[test]
fn a_restore_killed_anywhere_converges_when_run_again() {
    let (world, user, key) = installed_world("restorekill");
    let (archive, _, _) = take_backup(&world, "host.tar.gz.age", &[]);
    let args: [&std::ffi::OsStr; 3] = ["restore".as_ref(), "--yes".as_ref(), archive.as_os_str()];
    let points: Vec<String> = world
        .kill_trace(&args)
        .into_iter()
        .filter(|point| point.starts_with("-: "))
        .collect();
    assert!(
        points.iter().any(|p| p.contains("run mariadb")),
        "{points:?}"
    );
    for point in &points {
        mysql_as_root(&[format!("DELETE FROM `{user}_app`.accounts")]);
        assert!(world.killed_at(&args, point), "not killed at {point}");
        let again = world.command().args(args).assert();
        assert!(
            again.get_output().status.success(),
            "after {point}: {}",
            stderr(&again)
        );
        assert_eq!(
            rows_of(&user),
            vec![format!("row-of-{user}")],
            "after {point}"
        );
        assert!(world.k3s_running(), "after {point}");
        servers::amqp_login(&user, &password_of(&world, "rabbitmq")).expect("RabbitMQ login");
    }
    let rerun = world
        .command()
        .args(["install", "--yes", "--output", "json", "--config"])
        .arg(world.path("/etc/stackinstall/config.toml"))
        .assert()
        .success();
    let outcomes = crate::support::outcomes(&rerun);
    let changed: Vec<_> = (outcomes.iter())
        .filter(|(_, result)| *result == "changed")
        .collect();
    assert!(changed.is_empty(), "the re-run changed {changed:?}");
    let _ = key;
    report(&format!(
        "restore: killed at each of its {} own points, run again: the row back, K3s running, RabbitMQ login; a final re-run changed nothing",
        points.len()
    ));
}
