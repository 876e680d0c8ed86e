//! The command line as the operator types it: the bare form is the install
//! (every install flag, the same output), no arguments without a terminal
//! is the usage, `--skip-db` never makes up a password, `credentials set`,
//! and what a run prints: skipped steps on one line per reason, results in
//! words, a missing prerequisite named, a run without root refused before
//! it reads anything.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use crate::support::{DOMAIN, World, report, stderr, stdout};
use stackinstall::certificate;
use time::{Duration, OffsetDateTime};

/// The uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// Runs `args` with and without `install` in front; returns both outputs.
fn both_forms(world: &World, args: &[&str]) -> [(Option<i32>, String, String); 2] {
    let run = |prefix: &[&str]| {
        let assert = world
            .command()
            .env_remove("STACKINSTALL_ONLY")
            .args(prefix)
            .args(args)
            .assert();
        (
            assert.get_output().status.code(),
            without_free_disk(&stdout(&assert)),
            stderr(&assert),
        )
    };
    [run(&[]), run(&["install"])]
}

/// `text` with the free disk space read by preflight left out: the disk
/// may cross a GiB between the two runs (other tests write beside them).
fn without_free_disk(text: &str) -> String {
    text.lines()
        .map(|line| match line.find(" free disk") {
            Some(end) => {
                let start = line[..end].rfind(", ").map_or(0, |comma| comma + 2);
                format!("{}N GiB{}", &line[..start], &line[end..])
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_bare_form_is_the_install_with_every_install_flag() {
    let world = World::new();
    let now = OffsetDateTime::now_utc();
    let (certificate, key) =
        certificate::self_signed(DOMAIN, now - Duration::days(1), now + Duration::days(90));
    let certificate_path = world.dir.path().join("tls.crt");
    let key_path = world.dir.path().join("tls.key");
    fs::write(&certificate_path, certificate).unwrap();
    fs::write(&key_path, key).unwrap();
    let config = world.dir.path().join("site.toml");
    fs::write(&config, "[wait]\ntimeout_seconds = 900\n").unwrap();
    let (certificate_path, key_path, config) = (
        certificate_path.display().to_string(),
        key_path.display().to_string(),
        config.display().to_string(),
    );
    let pair = ["--ssl-cert", &certificate_path, "--ssl-key", &key_path];
    let flag_sets: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--skip-infra"],
        vec!["--skip-db"],
        vec!["--output", "json"],
        vec!["--only", "credentials"],
        vec!["--from", "tls"],
        vec!["--redo", "credentials"],
        vec!["--yes"],
        vec!["-y"],
        vec!["--profile", "stackbill-poc"],
        vec!["--config", &config],
        vec!["--aws-profile", "stackbill"],
        vec!["--self-signed"],
    ];
    let before = world.files(true);
    let mut checked = 0;
    for flags in &flag_sets {
        let mut args = vec!["--domain", DOMAIN, "--plan"];
        if !flags.contains(&"--self-signed") {
            args.extend(pair);
        }
        args.extend(flags);
        let [bare, install] = both_forms(&world, &args);
        assert_eq!(bare, install, "{args:?}");
        assert!(
            !bare.2.contains("unexpected argument"),
            "{args:?} is accepted: {}",
            bare.2
        );
        checked += 1;
    }
    assert_eq!(world.files(true), before, "plans change nothing");

    // A real run, in two worlds: the same steps, files and words.
    let worlds = [World::engine(), World::engine()];
    let mut runs = Vec::new();
    for (world, prefix) in worlds.iter().zip([&[][..], &["install"]]) {
        let assert = world
            .command()
            .args(prefix)
            .args(["--domain", DOMAIN, "--self-signed"])
            .assert()
            .success();
        let lines: Vec<String> = stderr(&assert)
            .lines()
            .map(|line| {
                line.rsplit_once(" (")
                    .map_or(line, |(head, _)| head)
                    .to_string()
            })
            .filter(|line| !line.starts_with("Log: "))
            .collect();
        let files: Vec<String> = world.files(false).into_keys().collect();
        runs.push((lines, files));
    }
    assert_eq!(runs[0], runs[1], "the bare run is the install run");
    report(&format!(
        "bare form: {checked} flag sets (with --domain, --ssl-cert/--ssl-key or --self-signed, --plan) give the same exit code, stdout and stderr as `install`; a real run writes the same files"
    ));
}

#[test]
fn no_arguments_without_a_terminal_prints_the_usage() {
    let world = World::new();
    let assert = world.command().assert().code(2);
    let usage = stderr(&assert);
    assert!(
        usage.contains("Usage: stackinstall [--root DIR] --domain NAME (--ssl-cert FILE --ssl-key FILE | --self-signed)"),
        "{usage}"
    );
    assert!(
        usage.contains("Commands:") && usage.contains("uninstall"),
        "{usage}"
    );
    assert!(stdout(&assert).is_empty());
    assert!(world.files(true).len() == 1, "only the world's os-release");
}

#[test]
fn skip_db_without_the_passwords_stops_before_anything_changes() {
    let world = World::engine();
    let before = world.files(true);
    for extra in [&[][..], &["--plan"]] {
        let assert = world.install(&[&["--skip-db"], extra].concat()).code(2);
        let message = stderr(&assert);
        assert!(
            message.contains("there is no password for `mongodb`, `mysql`, `rabbitmq`"),
            "{message}"
        );
        assert!(
            message.contains("stackinstall credentials set mongodb"),
            "{message}"
        );
        assert_eq!(world.files(true), before, "{extra:?}: nothing written");
    }
    // One password from `credentials set` and two from the bash
    // installer's file still leave one missing: named alone.
    world.write(
        "/root/stackbill-credentials.txt",
        "MONGODB:\n  Password: LegacyMongoPass7\n",
    );
    set_password(&world, "rabbitmq", "ARabbitPassword99\n").success();
    let assert = world.install(&["--skip-db"]).code(2);
    let message = stderr(&assert);
    assert!(message.contains("no password for `mysql` in"), "{message}");
    assert!(!message.contains("ARabbitPassword99"), "{message}");
    report(
        "skip-db: the missing passwords are named (3, then 1) in the run and the plan; nothing written",
    );
}

fn set_password(world: &World, service: &str, stdin: &str) -> assert_cmd::assert::Assert {
    world
        .command()
        .args(["credentials", "set", service])
        .write_stdin(stdin)
        .assert()
}

#[test]
fn credentials_set_writes_the_file_privately_and_refuses_bad_sources() {
    let world = World::engine();
    let set = set_password(&world, "mysql", "Existing-Mysql-Pass1\n").success();
    let file = world.path("/etc/stackinstall/credentials.toml");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        world
            .read("/etc/stackinstall/credentials.toml")
            .contains("Existing-Mysql-Pass1")
    );
    assert!(!stderr(&set).contains("Existing-Mysql-Pass1") && stdout(&set).is_empty());

    let password_file = world.dir.path().join("mongo-password");
    fs::write(&password_file, "From-A-File-Pass2\n").unwrap();
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o644)).unwrap();
    let before = world.files(true);
    let mut refused = Vec::new();
    let open = world
        .command()
        .args(["credentials", "set", "mongodb", "--from-file"])
        .arg(&password_file)
        .assert()
        .code(2);
    refused.push(stderr(&open));
    assert!(refused[0].contains("is mode 0644"), "{}", refused[0]);
    for (service, stdin) in [
        ("mongodb", ""),
        ("mongodb", "two\nlines\n"),
        ("postgres", "x\n"),
    ] {
        let assert = set_password(&world, service, stdin).code(2);
        refused.push(stderr(&assert));
    }
    assert_eq!(
        world.files(true),
        before,
        "a refused password writes nothing"
    );
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600)).unwrap();
    world
        .command()
        .args(["credentials", "set", "mongodb", "--from-file"])
        .arg(&password_file)
        .assert()
        .success();
    let replaced = set_password(&world, "mysql", "Another-Mysql-Pass3\n").success();
    assert!(stderr(&replaced).contains("it replaced a different one"));
    let text = world.read("/etc/stackinstall/credentials.toml");
    assert!(text.contains("From-A-File-Pass2") && text.contains("Another-Mysql-Pass3"));
    assert!(!text.contains("Existing-Mysql-Pass1"));
    report(&format!(
        "credentials set: stdin and a 0600 file taken, {} bad sources refused (0644 file, empty, two lines, unknown service)",
        refused.len()
    ));
}

#[test]
fn skipped_steps_share_one_line_and_results_read_as_words() {
    let world = World::engine();
    let first = stderr(&world.install(&[]).success());
    assert!(
        first.contains("✓ [ 2/19] credentials  Load or generate the service passwords: done ("),
        "{first}"
    );
    assert!(
        first.contains("✓ [ 1/19] preflight    Check the host and the inputs: ok ("),
        "{first}"
    );
    let skipped: Vec<&str> = first.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(
        skipped,
        [
            "- skipped (not in --only): k3s, helm, istio, packages, mysql, mongodb, rabbitmq, nfs, storage, namespace, registry, tls, release, gateway, wait, backups [16 steps]"
        ],
        "{first}"
    );
    assert!(
        first.contains("✓ [19/19] summary      Show where everything is: ok ("),
        "{first}"
    );

    let again = stderr(&world.install(&["--redo", "credentials"]).success());
    assert!(
        again.contains("✓ [ 1/19] preflight    Check the host and the inputs: ok ("),
        "{again}"
    );
    assert!(
        again.contains("credentials  Load or generate the service passwords: already in place ("),
        "{again}"
    );
    let json = world.install(&["--output", "json"]).success();
    let report_json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let results: Vec<&str> = report_json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["result"].as_str().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| **r == "skipped").count(), 16);
    assert_eq!(results[1], "already-done");
    assert_eq!(results[0], "unchanged");
}

#[test]
fn a_step_without_its_prerequisites_names_them() {
    // No K3s: the fake cluster's API refuses.
    let mut world = World::new();
    world.fake("kubectl");
    world.set_env("STACKINSTALL_ONLY", "tls");
    let assert = world.install(&[]).code(2);
    let message = stderr(&assert);
    assert!(
        message.contains("error: step `tls` needs `k3s`, `istio` and `namespace` to have run first, and they have no checkpoint on this host"),
        "{message}"
    );
    assert!(
        message.contains("`--only k3s,istio,namespace,tls`"),
        "{message}"
    );
    assert!(!message.contains("connection to the server"), "{message}");
    assert!(message.contains("✗ [14/19] tls"), "{message}");
    let plan = stdout(&world.install(&["--plan"]).success());
    assert!(
        plan.contains("(cannot look until the steps before it have run: it needs `k3s`, `istio` and `namespace` first)"),
        "{plan}"
    );
    // The namespace alone needs the cluster only.
    let selection = world.install(&["--plan", "--only", "namespace"]).success();
    assert!(
        stdout(&selection).contains("it needs `k3s` first"),
        "{}",
        stdout(&selection)
    );
}

#[test]
fn without_root_a_host_with_a_state_file_is_refused_as_such() {
    let world = World::engine();
    world.install(&[]).success();
    let state = world.path("/var/lib/stackinstall/state.toml");
    fs::set_permissions(&state, fs::Permissions::from_mode(0o600)).unwrap();
    // Every directory open to others: only the state file is root's alone.
    let mut directory = state.parent().unwrap().to_path_buf();
    while directory.starts_with(world.dir.path()) {
        fs::set_permissions(&directory, fs::Permissions::from_mode(0o755)).unwrap();
        directory = directory.parent().unwrap().to_path_buf();
    }
    let before = world.files(true);
    let mut command = world.std_command();
    command
        .args(["--domain", DOMAIN, "--self-signed"])
        .uid(NOBODY)
        .gid(NOBODY);
    let output = command.output().unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.starts_with("error: stackinstall install must run as root"),
        "{message}"
    );
    assert!(!message.contains("Permission denied"), "{message}");
    assert_eq!(world.files(true), before, "nothing changed");
    report("without root: refused with exit 2 before the root-only state file is read");
}

#[test]
fn the_subcommands_stay_and_root_goes_anywhere() {
    let world = World::engine();
    let root = world.root.display().to_string();
    for args in [
        vec!["--root", root.as_str(), "status"],
        vec!["status", "--root", root.as_str()],
        vec!["--root", root.as_str(), "credentials"],
    ] {
        let assert = world.command().args(&args).assert();
        let message = stderr(&assert);
        assert!(
            !message.contains("cannot be used with") && !message.contains("install flag"),
            "{args:?}: {message}"
        );
    }
    let misplaced = world
        .command()
        .args(["--domain", DOMAIN, "status"])
        .assert()
        .code(2);
    assert!(
        stderr(&misplaced).contains("`--domain` is an install flag: it goes without a command, or after `install`, not before `status`"),
        "{}",
        stderr(&misplaced)
    );
}
