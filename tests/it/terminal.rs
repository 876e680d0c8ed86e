//! The install on a terminal, in a real pseudo-terminal (rexpect): a
//! missing domain and certificate are asked for and checked as they are
//! typed, the plan's summary ends with `Proceed? [Y/n]`, a no changes
//! nothing (exit 2, as the README says), a yes runs the install. With
//! `--yes` or `--output json` nothing is ever asked.

use std::fs;

use crate::support::{DOMAIN, World, report};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;
use stackinstall::certificate;
use time::OffsetDateTime;

/// How long one expected text may take to show.
const TIMEOUT_MS: u64 = 60_000;

/// The down arrow, as a terminal sends it.
const DOWN: &str = "\x1b[B";

/// The binary in a pseudo-terminal, with `args`.
fn spawn(world: &World, args: &[&str]) -> PtySession {
    let mut command = world.std_command();
    command.args(args);
    rexpect::session::spawn_command(command, Some(TIMEOUT_MS)).expect("a pty session")
}

/// Types `keys` (no line end) and sends them at once.
fn press(session: &mut PtySession, keys: &str) {
    session.send(keys).unwrap();
    session.flush().unwrap();
}

/// Waits for the end of the output and returns the exit code.
fn exit_code(mut session: PtySession) -> (i32, String) {
    let rest = session.exp_eof().expect("the program ends");
    match session.process().wait().expect("its status") {
        WaitStatus::Exited(_, code) => (code, rest),
        other => panic!("ended by {other:?}:\n{rest}"),
    }
}

/// `files` without the run lock's file, which an install on a terminal
/// makes before its first question.
fn without_lock(
    mut files: std::collections::BTreeMap<String, Vec<u8>>,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    files.remove("/var/lib/stackinstall/lock");
    files
}

/// Writes a pair for `domain` under the world's dir; returns the paths.
fn pair(world: &World, name: &str, domain: &str) -> (String, String) {
    let now = OffsetDateTime::now_utc();
    let (certificate, key) = certificate::self_signed(
        domain,
        now - time::Duration::days(1),
        now + time::Duration::days(90),
    );
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
fn a_bad_domain_and_bad_files_are_asked_again_and_a_no_changes_nothing() {
    let world = World::engine();
    let (good_certificate, good_key) = pair(&world, "good", DOMAIN);
    let (other_certificate, other_key) = pair(&world, "other", "other.example.com");
    let missing = world.dir.path().join("missing.crt").display().to_string();
    let before = world.files(true);

    let mut session = spawn(&world, &[]);
    let mut refused = 0;
    session
        .exp_string("Domain the application is reached at")
        .unwrap();
    session.send_line("not a domain!").unwrap();
    session.exp_string("is not a valid DNS name").unwrap();
    refused += 1;
    session.send_line(DOMAIN).unwrap();
    session
        .exp_string(&format!("TLS certificate for {DOMAIN}"))
        .unwrap();
    press(&mut session, "\r");
    session.exp_string("Certificate file").unwrap();
    for (typed, refusal) in [
        (missing.as_str(), "cannot be read"),
        (other_key.as_str(), "is not PEM"),
        (
            other_certificate.as_str(),
            "does not cover `demo.example.com`",
        ),
    ] {
        session.send_line(typed).unwrap();
        session.exp_string(refusal).unwrap();
        refused += 1;
    }
    session.send_line(&good_certificate).unwrap();
    session.exp_string("private key file").unwrap();
    for (typed, refusal) in [
        (
            good_certificate.as_str(),
            "the key is not a PEM private key",
        ),
        (
            other_key.as_str(),
            "the key does not belong to the certificate",
        ),
    ] {
        session.send_line(typed).unwrap();
        session.exp_string(refusal).unwrap();
        refused += 1;
    }
    session.send_line(&good_key).unwrap();
    session
        .exp_string(&format!("Install for {DOMAIN}"))
        .unwrap();
    session.exp_string("credentials  Load or generate").unwrap();
    session.exp_string("Proceed? [Y/n]").unwrap();
    press(&mut session, "n");
    let (code, rest) = exit_code(session);
    assert_eq!(code, 2, "{rest}");
    assert!(
        rest.contains("not confirmed: nothing was changed"),
        "{rest}"
    );
    assert_eq!(
        without_lock(world.files(true)),
        before,
        "a no changes nothing under the root but the run lock's file"
    );
    report(&format!(
        "terminal: {refused} wrong answers asked again (1 domain, 3 certificates, 2 keys), then declined: exit {code}, root unchanged"
    ));
}

#[test]
fn choosing_self_signed_and_proceeding_runs_the_install() {
    let world = World::engine();
    let mut session = spawn(&world, &["--domain", DOMAIN]);
    session
        .exp_string(&format!("TLS certificate for {DOMAIN}"))
        .unwrap();
    press(&mut session, DOWN);
    press(&mut session, "\r");
    session.exp_string("Proceed? [Y/n]").unwrap();
    press(&mut session, "y");
    let (code, rest) = exit_code(session);
    assert_eq!(code, 0, "{rest}");
    assert!(
        rest.contains("credentials  Load or generate the service passwords: done"),
        "{rest}"
    );
    // The pair itself is made by the `tls` step, not part of this run.
    for file in [
        "/etc/stackinstall/credentials.toml",
        "/var/lib/stackinstall/state.toml",
    ] {
        assert!(world.path(file).exists(), "{file} is written");
    }
    report("terminal: self-signed chosen, Proceed answered yes: the install ran (exit 0)");
}

#[test]
fn nothing_is_asked_with_yes_or_json() {
    let world = World::engine();
    let before = world.files(true);
    let mut cases = 0;
    for args in [
        &["--yes"][..],
        &["--output", "json"],
        &["-y", "--domain", DOMAIN],
    ] {
        let (code, output) = exit_code(spawn(&world, args));
        assert_eq!(code, 2, "{args:?}: {output}");
        assert!(
            output.contains("error: step `preflight`"),
            "{args:?}: {output}"
        );
        assert!(
            !output.contains("Domain the application") && !output.contains("TLS certificate for"),
            "{args:?} asks nothing: {output}"
        );
        assert_eq!(world.files(true), before, "{args:?}");
        cases += 1;
    }
    let (code, output) = exit_code(spawn(
        &world,
        &["--domain", DOMAIN, "--self-signed", "--yes"],
    ));
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains("Proceed?"), "--yes answers it: {output}");
    cases += 1;
    report(&format!(
        "terminal: {cases} runs with --yes or --output json, none asked anything"
    ));
}

#[test]
fn credentials_set_asks_for_the_password_twice_on_a_terminal() {
    let world = World::new();
    let password = "Typed-Not-Shown-Pass4";
    let mut session = spawn(&world, &["credentials", "set", "rabbitmq"]);
    session
        .exp_string("Password of the existing rabbitmq account")
        .unwrap();
    session.send_line("first-attempt").unwrap();
    session.exp_string("The same again").unwrap();
    session.send_line("does-not-match").unwrap();
    session.exp_string("the two passwords differ").unwrap();
    session
        .exp_string("Password of the existing rabbitmq account")
        .unwrap();
    session.send_line(password).unwrap();
    session.exp_string("The same again").unwrap();
    session.send_line(password).unwrap();
    let (code, rest) = exit_code(session);
    assert_eq!(code, 0, "{rest}");
    assert!(rest.contains("the rabbitmq password is in"), "{rest}");
    let credentials = world.read("/etc/stackinstall/credentials.toml");
    assert!(credentials.contains(password), "{credentials}");
    assert!(!credentials.contains("first-attempt"));
    report(
        "terminal: credentials set asked for the password twice (dialoguer Password), a mismatch asked again",
    );
}

#[test]
fn ctrl_c_at_a_question_exits_130_and_changes_nothing() {
    let world = World::engine();
    let before = world.files(true);
    let mut session = spawn(&world, &[]);
    session
        .exp_string("Domain the application is reached at")
        .unwrap();
    session.send_control('c').unwrap();
    let (code, rest) = exit_code(session);
    assert_eq!(code, 130, "{rest}");
    assert!(
        rest.contains("interrupted while asking: nothing was changed"),
        "{rest}"
    );
    assert_eq!(without_lock(world.files(true)), before);
    report("terminal: Ctrl-C at the domain question: exit 130, root unchanged");
}

#[test]
fn a_key_in_the_environment_only_is_offered_as_roots_profile() {
    let mut world = World::new();
    world.set_env("STACKINSTALL_ONLY", "credentials,registry");
    world.set_env("AWS_ACCESS_KEY_ID", "AKIATERMINALTEST");
    world.set_env(
        "AWS_SECRET_ACCESS_KEY",
        "terminal-test-secret-key-0123456789",
    );
    world.set_env("AWS_SESSION_TOKEN", "terminal-test-session-token");
    world.write(
        "/root/.aws/credentials",
        "[other]\naws_access_key_id = AKIAOTHER\n",
    );
    let mut session = spawn(&world, &["--domain", DOMAIN, "--self-signed"]);
    session.exp_string("this shell's environment only").unwrap();
    session.exp_string("as profile `default`?").unwrap();
    press(&mut session, "y");
    session.exp_string("Proceed?").unwrap();
    press(&mut session, "n");
    let (code, rest) = exit_code(session);
    assert_eq!(code, 2, "{rest}");
    let path = world.path("/root/.aws/credentials");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "[other]\naws_access_key_id = AKIAOTHER\n[default]\naws_access_key_id = AKIATERMINALTEST\naws_secret_access_key = terminal-test-secret-key-0123456789\naws_session_token = terminal-test-session-token\n",
        "the operator's other profile kept, the key appended as `default`"
    );
    assert!(!rest.contains("terminal-test-secret-key"), "{rest}");
    report(
        "terminal: a key in the environment only: offered, written as profile `default` (0600, 1 other profile kept), not shown",
    );
}

#[test]
fn on_a_terminal_the_run_ends_with_a_table_of_each_steps_time() {
    let world = World::engine();
    let mut command = world.std_command();
    command
        .env_remove("NO_COLOR")
        .args(["--domain", DOMAIN, "--self-signed", "--yes"]);
    let mut session = rexpect::session::spawn_command(command, Some(TIMEOUT_MS)).unwrap();
    session.exp_string("step         result").unwrap();
    let (_, row) = session
        .exp_regex(r"credentials +changed +[0-9]+\.[0-9]")
        .unwrap();
    session
        .exp_regex(r"summary +unchanged +[0-9]+\.[0-9]")
        .unwrap();
    let (code, rest) = exit_code(session);
    assert_eq!(code, 0, "{rest}");
    report(&format!("terminal: the live run's table has `{row}`"));
}

#[test]
fn a_key_with_a_line_break_is_never_written_for_root() {
    let mut world = World::new();
    world.set_env("STACKINSTALL_ONLY", "credentials,registry");
    world.set_env("AWS_ACCESS_KEY_ID", "AKIATERMINALTEST");
    // What an attacker who controls the operator's environment would set:
    // a second line that root's AWS SDK runs.
    world.set_env(
        "AWS_SECRET_ACCESS_KEY",
        "terminal-test-secret\ncredential_process = /tmp/evil-as-root",
    );
    let before = "[other]\naws_access_key_id = AKIAOTHER\n";
    world.write("/root/.aws/credentials", before);
    let mut session = spawn(&world, &["--domain", DOMAIN, "--self-signed"]);
    session.exp_string("as profile `default`?").unwrap();
    press(&mut session, "y");
    let (code, rest) = exit_code(session);
    let written = fs::read_to_string(world.path("/root/.aws/credentials")).unwrap();
    assert!(
        !written.contains("credential_process"),
        "a line was added to root's AWS file:\n{written}"
    );
    assert_eq!(written, before);
    assert_eq!(code, 2, "{rest}");
    assert!(rest.contains("holds a control character"), "{rest}");
    report("terminal: an AWS key with a line break refused, root's AWS file unchanged");
}

/// Issue 24 item 9: the run lock is taken before the first question, so
/// that nothing else runs while an install waits for its answer.
#[test]
fn while_an_install_waits_at_proceed_no_other_run_starts() {
    let world = World::engine();
    let mut session = spawn(&world, &["--domain", DOMAIN, "--self-signed"]);
    session.exp_string("Proceed? [Y/n]").unwrap();
    let mut refused = Vec::new();
    for args in [
        &["install", "--domain", DOMAIN, "--self-signed", "--yes"][..],
        &["uninstall", "--all", "--yes"],
    ] {
        let assert = world.command().args(args).assert().code(3);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(
            stderr.contains("another stackinstall run (pid"),
            "{args:?}: {stderr}"
        );
        refused.push(args[0]);
    }
    assert!(
        !world.path("/etc/stackinstall/credentials.toml").exists(),
        "the second install ran nothing"
    );
    press(&mut session, "n");
    let (code, rest) = exit_code(session);
    assert_eq!(code, 2, "{rest}");
    report(&format!(
        "terminal: while an install waited at Proceed?, {} refused with exit 3 ({})",
        refused.len(),
        refused.join(", ")
    ));
}

/// Issue 24 item 9: the answers are given back as a command line before
/// `Proceed?` and in the failure's hint, and a bare re-run on a terminal
/// offers the last run's inputs.
#[test]
fn an_answered_install_that_fails_can_be_resumed() {
    let (mut world, _releases) = crate::support::cluster::cluster_world();
    world.set_env("STACKINSTALL_ONLY", "helm");
    // Port 9 (discard) on 127.0.0.1: nothing listens there.
    world.set_env("STACKINSTALL_DOWNLOADS__HELM", "http://127.0.0.1:9/helm");
    let line = format!("sudo stackinstall install --domain {DOMAIN} --self-signed --only helm");
    let mut session = spawn(&world, &[]);
    session
        .exp_string("Domain the application is reached at")
        .unwrap();
    session.send_line(DOMAIN).unwrap();
    session.exp_string("TLS certificate for").unwrap();
    press(&mut session, DOWN);
    press(&mut session, "\r");
    session
        .exp_string(&format!(
            "The same install without these questions: `{line} --yes`"
        ))
        .unwrap();
    session.exp_string("Proceed? [Y/n]").unwrap();
    press(&mut session, "y");
    let (code, rest) = exit_code(session);
    assert_eq!(code, 1, "{rest}");
    let hint = format!("hint: run `{line}` to resume at `helm`");
    assert!(rest.contains(&hint), "{rest}");
    assert!(!rest.contains("run the same command again"), "{rest}");

    let mut session = spawn(&world, &[]);
    session
        .exp_string(&format!(
            "The last install was given `--domain {DOMAIN} --self-signed`. The same again?"
        ))
        .unwrap();
    press(&mut session, "y");
    session
        .exp_string(&format!("Install for {DOMAIN}"))
        .unwrap();
    session.exp_string("Proceed? [Y/n]").unwrap();
    press(&mut session, "n");
    let (code, rest) = exit_code(session);
    assert_eq!(code, 2, "{rest}");
    report(&format!(
        "terminal: a failed answered install says `{hint}`; a bare re-run offered the last inputs"
    ));
}
