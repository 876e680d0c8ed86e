//! The engine seen from outside: plan, re-run, checkpoints, credentials,
//! preflight failures, the lock. Each test is a world of its own.

use std::fs;

use crate::support::{DOMAIN, World, finished_steps, stderr, stdout};
use stackinstall::certificate;
use time::{Duration, OffsetDateTime};

/// Filters for what differs between machines and runs.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"resources: \d+ CPUs \(needs \d+\), \d+ MiB memory \(needs \d+\), \d+ GiB free disk \(needs \d+\)",
            "resources: [RESOURCES]",
        ),
        (
            r"operating system .* is supported",
            "operating system [OS] is supported",
        ),
    ]
}

#[test]
fn plan_lists_every_step_and_changes_nothing() {
    let world = World::engine();
    let before = world.files(true);
    let assert = world.install(&["--plan"]).success();
    assert_eq!(world.files(true), before, "a plan writes nothing");
    assert!(world.calls().is_empty(), "a plan runs no program");
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("plan_text", stdout(&assert));
    });
}

#[test]
fn plan_as_json_has_the_documented_shape() {
    let world = World::engine();
    let assert = world.install(&["--plan", "--output", "json"]).success();
    let plan: serde_json::Value = serde_json::from_str(&stdout(&assert)).expect("the plan is JSON");
    assert_eq!(plan["profile"], "stackbill-poc");
    assert_eq!(plan["domain"], DOMAIN);
    let steps = plan["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.first(), Some(&"preflight"));
    assert_eq!(ids.last(), Some(&"summary"));
    for step in steps {
        assert!(
            ["to-do", "done", "skipped"].contains(&step["state"].as_str().unwrap()),
            "{step}"
        );
        for action in step["actions"].as_array().unwrap() {
            assert!(
                action["kind"].is_string() && action["detail"].is_string(),
                "{action}"
            );
        }
    }
    let credentials = steps.iter().find(|s| s["id"] == "credentials").unwrap();
    let detail = credentials["actions"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("/etc/stackinstall/credentials.toml (mode 0600)"),
        "{detail}"
    );
}

#[test]
fn second_install_changes_nothing_and_says_so() {
    let world = World::engine();
    world.install(&[]).success();
    let credentials = world.read("/etc/stackinstall/credentials.toml");
    let files = world.files(false);
    let calls = world.calls().len();

    let again = world.install(&[]).success();
    assert_eq!(
        world.read("/etc/stackinstall/credentials.toml"),
        credentials,
        "byte-identical"
    );
    let mut after = world.files(false);
    let mut before = files;
    for files in [&mut after, &mut before] {
        files.remove("/var/lib/stackinstall/state.toml");
        files.remove("/var/lib/stackinstall/lock");
    }
    assert_eq!(after, before, "no file changed but the checkpoint times");
    assert_eq!(world.calls().len(), calls, "no program was run");
    let progress = stderr(&again);
    assert!(
        finished_steps(&progress)
            .values()
            .all(|result| result != "changed"),
        "{progress}"
    );
    assert!(
        progress.contains(
            "✓ [ 2/19] credentials  Load or generate the service passwords: already done ("
        ),
        "{progress}"
    );
    let plan = world.install(&["--plan", "--output", "json"]).success();
    let plan: serde_json::Value = serde_json::from_str(&stdout(&plan)).unwrap();
    for step in plan["steps"].as_array().unwrap() {
        let always = ["preflight", "summary"].contains(&step["id"].as_str().unwrap());
        assert!(always || step["state"] != "to-do", "{step}");
    }
}

#[test]
fn credentials_are_private_and_never_printed() {
    let world = World::engine();
    let assert = world.install(&[]).success();
    let text = world.read("/etc/stackinstall/credentials.toml");
    let table: toml::Table = toml::from_str(&text).unwrap();
    let passwords: Vec<String> = ["mysql", "mongodb", "rabbitmq"]
        .iter()
        .map(|service| table[*service]["password"].as_str().unwrap().to_string())
        .collect();
    for password in &passwords {
        assert!(password.len() >= 24 && password.chars().all(|c| c.is_ascii_alphanumeric()));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &str| fs::metadata(world.path(path)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("/etc/stackinstall/credentials.toml"), 0o600);
    assert_eq!(mode("/etc/stackinstall"), 0o700);
    let logs: Vec<String> = world
        .files(true)
        .into_iter()
        .filter(|(path, _)| path.starts_with("/var/log/stackinstall/"))
        .map(|(_, bytes)| String::from_utf8(bytes).unwrap())
        .collect();
    assert!(!logs.is_empty(), "a run writes a log");
    let shown = world.command().arg("credentials").assert().success();
    let plan = world.install(&["--plan"]).success();
    let everything = [
        stdout(&assert),
        stderr(&assert),
        stdout(&shown),
        stdout(&plan),
        logs.join("\n"),
    ]
    .join("\n");
    for password in &passwords {
        assert!(!everything.contains(password.as_str()), "a password leaked");
    }
    let revealed = world
        .command()
        .args(["credentials", "--reveal"])
        .assert()
        .success();
    assert!(stdout(&revealed).contains(&passwords[0]));
}

#[test]
fn legacy_credentials_are_imported() {
    let world = World::engine();
    world.write(
        "/root/stackbill-credentials.txt",
        "MYSQL:\n  Username: stackbill\n  Password: LegacyMysql123\nMONGODB:\n  Password: LegacyMongo456\n",
    );
    world.install(&["--only", "credentials"]).success();
    let text = world.read("/etc/stackinstall/credentials.toml");
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["mysql"]["password"].as_str(), Some("LegacyMysql123"));
    assert_eq!(
        table["mongodb"]["password"].as_str(),
        Some("LegacyMongo456")
    );
    assert_eq!(
        table["rabbitmq"]["password"].as_str().unwrap().len(),
        32,
        "the missing one is generated"
    );
}

#[test]
fn damaged_credentials_stop_the_install_and_are_kept() {
    for damage in [
        "",
        "version = 1\n[mysql\n",
        "garbage \u{1}\u{2}",
        "version = 9\n",
        "version = 1\n[mysql]\nusername = \"x\"\npassword = \"\"\n",
    ] {
        let world = World::engine();
        world.write("/etc/stackinstall/credentials.toml", damage);
        let assert = world.install(&[]).code(1);
        let message = stderr(&assert);
        assert!(message.contains("credentials.toml"), "{message}");
        assert!(message.contains("never replaced"), "{message}");
        assert!(
            !message.contains("again to resume"),
            "a re-run would fail the same way: {message}"
        );
        assert_eq!(
            world.read("/etc/stackinstall/credentials.toml"),
            damage,
            "left as it was"
        );
    }
}

#[test]
fn checkpoints_follow_only_redo_and_from() {
    let world = World::engine();
    world.install(&["--only", "credentials"]).success();
    let state: toml::Table =
        toml::from_str(&world.read("/var/lib/stackinstall/state.toml")).unwrap();
    assert!(state["steps"].get("credentials").is_some());
    assert!(
        state["steps"].get("summary").is_none(),
        "not selected, not run"
    );

    let credentials = world.read("/etc/stackinstall/credentials.toml");
    let redo = world.install(&["--redo", "credentials"]).success();
    assert!(
        stderr(&redo)
            .contains("credentials  Load or generate the service passwords: already in place"),
        "{}",
        stderr(&redo)
    );
    assert_eq!(
        world.read("/etc/stackinstall/credentials.toml"),
        credentials,
        "redo reuses the passwords"
    );

    let from = world
        .command()
        .env_remove("STACKINSTALL_ONLY")
        .args([
            "install",
            "--domain",
            DOMAIN,
            "--self-signed",
            "--from",
            "summary",
            "--plan",
        ])
        .assert()
        .success();
    assert!(
        stdout(&from).contains("skipped (before --from summary)"),
        "{}",
        stdout(&from)
    );

    for flag in ["--only", "--redo", "--from"] {
        let unknown = world
            .command()
            .env_remove("STACKINSTALL_ONLY")
            .args([
                "install",
                "--domain",
                DOMAIN,
                "--self-signed",
                flag,
                "kubernetes",
            ])
            .assert()
            .code(2);
        assert!(
            stderr(&unknown).contains("unknown step `kubernetes`; the steps are: preflight"),
            "{}",
            stderr(&unknown)
        );
    }
}

#[test]
fn changed_inputs_rerun_the_step() {
    let world = World::engine();
    world.install(&[]).success();
    let mut world = world;
    world.set_env("STACKINSTALL_RABBITMQ__USERNAME", "other");
    let plan = world.install(&["--plan", "--output", "json"]).success();
    let plan: serde_json::Value = serde_json::from_str(&stdout(&plan)).unwrap();
    let credentials = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "credentials")
        .unwrap();
    assert_eq!(credentials["state"], "to-do");
    assert_eq!(credentials["reason"], "its inputs changed");
}

#[test]
fn a_second_run_is_refused_while_the_lock_is_held() {
    let world = World::engine();
    let lock =
        stackinstall::host::lock::RunLock::acquire(&world.path("/var/lib/stackinstall/lock"))
            .unwrap();
    let assert = world.install(&[]).code(3);
    let message = stderr(&assert);
    assert!(
        message.contains(&format!(
            "another stackinstall run (pid {}) holds the lock",
            std::process::id()
        )),
        "{message}"
    );
    drop(lock);
    world.install(&[]).success();
}

/// Writes a certificate and key into the world; returns their paths.
fn pair(world: &World, name: &str, certificate: &str, key: &str) -> (String, String) {
    let certificate_path = world.dir.path().join(format!("{name}.crt"));
    let key_path = world.dir.path().join(format!("{name}.key"));
    fs::write(&certificate_path, certificate).unwrap();
    fs::write(&key_path, key).unwrap();
    (
        certificate_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[test]
fn preflight_failures_name_the_input_and_change_nothing() {
    let port = std::net::TcpListener::bind(("0.0.0.0", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut world = World::engine();
    world.set_env("STACKINSTALL_ISTIO__HTTP_NODE_PORT", &port.to_string());
    let in_use = format!("port {port}, needed by the `istio` step, is already in use");
    let (good_certificate, good_key) = certificate::self_signed_for_a_year(DOMAIN);
    let (_, other_key) = certificate::self_signed_for_a_year(DOMAIN);
    let (other_domain, other_domain_key) = certificate::self_signed_for_a_year("other.example.com");
    let past = OffsetDateTime::now_utc() - Duration::days(400);
    let (expired, expired_key) = certificate::self_signed(DOMAIN, past, past + Duration::days(90));
    let good = pair(&world, "good", &good_certificate, &good_key);
    let not_pem = pair(&world, "not-pem", "this is not a certificate", &good_key);
    let mismatched = pair(&world, "mismatched", &good_certificate, &other_key);
    let wrong_domain = pair(&world, "wrong-domain", &other_domain, &other_domain_key);
    let old = pair(&world, "expired", &expired, &expired_key);
    let missing = ("/nonexistent/cert.pem".to_string(), good.1.clone());

    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "bad domain",
            vec![
                "--domain".into(),
                "not_a domain".into(),
                "--self-signed".into(),
            ],
            "--domain `not_a domain` is not a valid DNS name",
        ),
        (
            "missing file",
            cert_args(&missing),
            "--ssl-cert `/nonexistent/cert.pem` cannot be read",
        ),
        ("not PEM", cert_args(&not_pem), "the certificate is not PEM"),
        (
            "key of another certificate",
            cert_args(&mismatched),
            "the key does not belong to the certificate",
        ),
        (
            "certificate for another domain",
            cert_args(&wrong_domain),
            "does not cover `demo.example.com`; it is for: other.example.com",
        ),
        (
            "expired certificate",
            cert_args(&old),
            "the certificate expired on",
        ),
        ("port in use", cert_args(&good), &in_use),
        (
            "no certificate",
            vec!["--domain".into(), DOMAIN.into()],
            "no certificate given",
        ),
    ];
    let before = world.files(true);
    for (name, args, expected) in cases {
        let _listener = (name == "port in use")
            .then(|| std::net::TcpListener::bind(("0.0.0.0", port)).unwrap());
        let assert = world.command().arg("install").args(&args).assert().code(2);
        let message = stderr(&assert);
        assert!(message.contains(expected), "{name}: {message}");
        assert!(
            message.contains("hint:"),
            "{name} says what to do: {message}"
        );
        assert_eq!(
            world.files(true),
            before,
            "{name}: nothing written under the root"
        );
        let plan = world
            .command()
            .arg("install")
            .arg("--plan")
            .args(&args)
            .assert()
            .code(2);
        assert!(
            stderr(&plan).contains(expected),
            "{name}: the plan fails the same way"
        );
    }
    world
        .command()
        .arg("install")
        .args(cert_args(&good))
        .assert()
        .success();
}

fn cert_args((certificate, key): &(String, String)) -> Vec<String> {
    vec![
        "--domain".into(),
        DOMAIN.into(),
        "--ssl-cert".into(),
        certificate.clone(),
        "--ssl-key".into(),
        key.clone(),
    ]
}

#[test]
fn a_certificate_close_to_expiry_is_a_warning() {
    let world = World::engine();
    let now = OffsetDateTime::now_utc();
    let (certificate, key) =
        certificate::self_signed(DOMAIN, now - Duration::days(60), now + Duration::days(10));
    let paths = pair(&world, "soon", &certificate, &key);
    let assert = world
        .command()
        .arg("install")
        .arg("--plan")
        .args(cert_args(&paths))
        .assert()
        .success();
    assert!(
        stderr(&assert).contains("expires in 9 days"),
        "{}",
        stderr(&assert)
    );
}

#[test]
fn configuration_errors_name_the_file_and_key() {
    let world = World::engine();
    let config = world.dir.path().join("site.toml");
    fs::write(&config, "[wait]\ntimeout_seconds = \"soon\"\n").unwrap();
    let assert = world
        .install(&["--plan", "--config", config.to_str().unwrap()])
        .code(2);
    let message = stderr(&assert);
    assert!(message.contains("site.toml"), "{message}");
    assert!(message.contains("timeout_seconds"), "{message}");
    let assert = world
        .install(&["--plan", "--profile", "no-such-profile"])
        .code(2);
    assert!(
        stderr(&assert).contains(
            "unknown profile `no-such-profile`; the built-in profiles are: stackbill-poc"
        )
    );
}

#[test]
fn status_reports_checkpoints_and_health() {
    let world = World::engine();
    world.install(&[]).success();
    let assert = world
        .command()
        .args(["status", "--output", "json"])
        .assert()
        .success();
    let status: serde_json::Value = serde_json::from_str(&stdout(&assert)).unwrap();
    let credentials = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "credentials")
        .unwrap();
    assert_eq!(credentials["state"], "done");
    assert_eq!(credentials["health"], "ok");
    fs::remove_file(world.path("/etc/stackinstall/credentials.toml")).unwrap();
    let assert = world
        .command()
        .args(["status", "--output", "json"])
        .assert()
        .success();
    let status: serde_json::Value = serde_json::from_str(&stdout(&assert)).unwrap();
    let credentials = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "credentials")
        .unwrap();
    assert!(
        credentials["health"]
            .as_str()
            .unwrap()
            .contains("is missing"),
        "{credentials}"
    );
}

#[test]
fn render_writes_the_effective_configuration() {
    let world = World::engine();
    let out = world.dir.path().join("rendered");
    world
        .command()
        .args(["render", "--domain", DOMAIN, "--out", out.to_str().unwrap()])
        .assert()
        .success();
    let config: toml::Table =
        toml::from_str(&fs::read_to_string(out.join("stackinstall.toml")).unwrap()).unwrap();
    assert_eq!(config["install"]["domain"].as_str(), Some(DOMAIN));
    assert_eq!(config["cluster"]["namespace"].as_str(), Some("sb-apps"));
}

#[test]
fn every_command_has_help() {
    let world = World::engine();
    for command in [
        vec!["--help"],
        vec!["install", "--help"],
        vec!["status", "--help"],
        vec!["render", "--help"],
        vec!["credentials", "--help"],
    ] {
        let assert = world.command().args(&command).assert().success();
        assert!(
            stdout(&assert).contains("Usage: stackinstall"),
            "{command:?}"
        );
    }
    let assert = world
        .command()
        .args([
            "install",
            "--self-signed",
            "--ssl-cert",
            "a",
            "--ssl-key",
            "b",
        ])
        .assert()
        .code(2);
    assert!(
        stderr(&assert).contains("cannot be used with"),
        "{}",
        stderr(&assert)
    );
}

#[test]
fn a_password_lost_from_the_file_is_not_silently_replaced() {
    let world = World::engine();
    world.install(&[]).success();
    // As after a full install: the mysql step was done with the file's password.
    let state = world.read("/var/lib/stackinstall/state.toml");
    world.write(
        "/var/lib/stackinstall/state.toml",
        &format!(
            "{state}\n[steps.mysql]\nstatus = \"done\"\nfinished_at = \"2026-11-01T00:00:00Z\"\ntool_version = \"0.1.0\"\nfingerprint = \"0\"\n"
        ),
    );
    // The file loses the [mysql] entry (cut between two entries, or edited).
    let mut credentials: toml::Table =
        toml::from_str(&world.read("/etc/stackinstall/credentials.toml")).unwrap();
    credentials.remove("mysql").unwrap();
    let cut = toml::to_string(&credentials).unwrap();
    world.write("/etc/stackinstall/credentials.toml", &cut);

    let message = stderr(&world.install(&[]).code(1));
    assert!(
        message.contains("has no password for `mysql`, whose step is done"),
        "{message}"
    );
    assert!(message.contains("--redo mysql"), "{message}");
    assert_eq!(
        world.read("/etc/stackinstall/credentials.toml"),
        cut,
        "left as it was"
    );

    // Asked for on purpose, but with `mysql` left out of the run (this
    // world runs `credentials` and `summary` only): a new password in the
    // file that MySQL would never be given is refused, the file kept.
    let refused = stderr(&world.install(&["--redo", "mysql"]).code(2));
    assert!(
        refused.contains("`--redo mysql` names a step this run leaves out (not in --only)"),
        "{refused}"
    );
    assert_eq!(world.read("/etc/stackinstall/credentials.toml"), cut);

    // Asked for on purpose with `mysql` in the run: a new mysql password,
    // the others kept (the credentials step runs first and stops the run
    // at `mysql`, which has no server in this world).
    world
        .command()
        .args(["install", "--domain", DOMAIN, "--self-signed"])
        .args(["--only", "credentials,mysql", "--redo", "mysql"])
        .assert()
        .failure();
    let now: toml::Table =
        toml::from_str(&world.read("/etc/stackinstall/credentials.toml")).unwrap();
    assert!(
        now["mysql"]["password"]
            .as_str()
            .is_some_and(|p| p.len() >= 16)
    );
    assert_eq!(now["rabbitmq"], credentials["rabbitmq"]);
}
