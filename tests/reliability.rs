//! Reliability and security of the whole install (issue 5), in one world
//! where every step runs (`support/full.rs`): Ctrl-C, two runs at once, a
//! lock left by a dead run, a command that never returns, and a scan of
//! everything a full install shows or hands to other programs for secrets.
//! The kill tests are in `crash.rs`, bad input and damaged files in
//! `inputs.rs`.
#![allow(clippy::disallowed_methods)]

#[path = "support/cluster.rs"]
mod cluster;
mod common;
#[path = "support/full.rs"]
mod full;
#[path = "support/servers.rs"]
mod servers;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{DOMAIN, World, stderr, stdout};

/// `helm upgrade` hangs while `$STATE/hang` exists: a shell that waits on a
/// `sleep` child, as a real program with children of its own would. Their
/// pids go to `$STATE/hung.pid` and `$STATE/sleep.pid`.
fn hanging_helm(world: &World) {
    world.fake(
        "helm",
        &format!(
            r#"if [ "$1" = upgrade ] && [ -f "$STATE/hang" ]; then
  echo $$ > "$STATE/hung.pid"
  sleep 3600 &
  echo $! > "$STATE/sleep.pid"
  wait
fi
{}"#,
            include_str!("fakes/helm.sh")
        ),
    );
    std::fs::write(world.record.join("state/hang"), "").unwrap();
}

fn state_file(world: &World, name: &str) -> std::path::PathBuf {
    world.record.join("state").join(name)
}

/// Starts `install` in the background, with its stderr in a file.
fn spawn_install(world: &World, extra_env: &[(&str, &str)]) -> (Child, std::path::PathBuf) {
    let log = world.dir.path().join(format!(
        "background-{}.stderr",
        Instant::now().elapsed().as_nanos()
    ));
    let mut command = world.std_command();
    command
        .args(["install", "--domain", DOMAIN, "--self-signed"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    (command.spawn().unwrap(), log)
}

/// Waits until `path` exists (the fake reached its hanging point).
fn wait_for(path: &std::path::Path, child: &mut Child) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {}",
            path.display()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never reached {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pid_in(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: it has ended and only waits to be reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits for `child` to end, at most `limit`; its exit status.
fn wait_at_most(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status of `step` in the state file.
fn checkpoint(world: &World, step: &str) -> Option<String> {
    let text = std::fs::read_to_string(world.path("/var/lib/stackinstall/state.toml")).ok()?;
    let state: toml::Table = toml::from_str(&text).unwrap();
    Some(state["steps"].get(step)?["status"].as_str()?.to_string())
}

#[test]
fn ctrl_c_stops_the_command_records_the_step_interrupted_and_a_rerun_resumes_there() {
    let world = full::quick_full_world(&servers::unique("sigint"));
    hanging_helm(&world);
    let (mut run, log) = spawn_install(&world, &[]);
    wait_for(&state_file(&world, "sleep.pid"), &mut run);

    // Two runs at once: a second install and an uninstall stop at once, naming the holder.
    for args in [
        vec!["install", "--domain", DOMAIN, "--self-signed"],
        vec!["uninstall", "--yes"],
    ] {
        let started = Instant::now();
        let second = world.command().args(&args).assert().code(3);
        let message = stderr(&second);
        assert!(
            message.contains(&format!("pid {}", run.id())),
            "`{}` does not name the holder:\n{message}",
            args[0]
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "`{}` waited for the lock",
            args[0]
        );
    }

    let (shell, sleep) = (
        pid_in(&state_file(&world, "hung.pid")),
        pid_in(&state_file(&world, "sleep.pid")),
    );
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = wait_at_most(&mut run, Duration::from_secs(20));
    let output = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "exit code of an interrupted run:\n{output}"
    );
    assert!(
        !alive(shell) && !alive(sleep),
        "the interrupted command (and its child) still run"
    );
    assert!(output.contains("interrupted"), "{output}");
    assert!(
        output.contains("again to resume at `release`"),
        "says how to resume:\n{output}"
    );
    assert_eq!(
        checkpoint(&world, "release").as_deref(),
        Some("interrupted")
    );
    assert_eq!(checkpoint(&world, "registry").as_deref(), Some("done"));

    // The lock is free and a plain re-run starts at the interrupted step.
    std::fs::remove_file(state_file(&world, "hang")).unwrap();
    world.clear_calls();
    let rerun = world.install(&[]).success();
    let text = stderr(&rerun);
    let finished: Vec<&str> = text.lines().filter(|l| l.starts_with('✓')).collect();
    let release = finished
        .iter()
        .position(|l| l.contains("] release "))
        .unwrap();
    assert!(
        finished[..release]
            .iter()
            .all(|l| !l.contains(" changed (")),
        "the steps before the interrupted one are not run again:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("] release ") && l.contains(" changed (")),
        "{text}"
    );
    assert_eq!(checkpoint(&world, "release").as_deref(), Some("done"));
}

#[test]
fn a_lock_left_by_a_killed_run_is_taken_over() {
    let world = full::quick_full_world(&servers::unique("deadlock"));
    hanging_helm(&world);
    let (mut run, _log) = spawn_install(&world, &[]);
    wait_for(&state_file(&world, "sleep.pid"), &mut run);
    let dead = run.id();
    run.kill().unwrap();
    run.wait().unwrap();
    // What the killed run started runs on in its own process group; end it.
    for pid in ["hung.pid", "sleep.pid"] {
        // SAFETY: signalling processes this test's run started.
        unsafe { libc::kill(pid_in(&state_file(&world, pid)), libc::SIGKILL) };
    }
    let lock = world.read("/var/lib/stackinstall/lock");
    assert_eq!(
        lock.trim(),
        dead.to_string(),
        "the lock file names the dead run"
    );

    std::fs::remove_file(state_file(&world, "hang")).unwrap();
    let rerun = world.install(&[]).success();
    assert!(stdout(&rerun).contains(DOMAIN) || stderr(&rerun).contains(DOMAIN));
    assert_eq!(checkpoint(&world, "release").as_deref(), Some("done"));
}

#[test]
fn a_command_that_never_returns_is_stopped_at_its_timeout() {
    let world = full::quick_full_world(&servers::unique("hung"));
    hanging_helm(&world);
    let started = Instant::now();
    let assert = world
        .command()
        .env("STACKINSTALL_TEST_COMMAND_TIMEOUT_SECONDS", "3")
        .args(["install", "--domain", DOMAIN, "--self-signed"])
        .assert()
        .code(1);
    let message = stderr(&assert);
    assert!(started.elapsed() < Duration::from_secs(100));
    assert!(
        message.contains("`helm upgrade --install stackbill")
            && message.contains("did not finish within 3s"),
        "the message names the command and its timeout:\n{message}"
    );
    assert!(message.contains("release"), "names the step:\n{message}");
    let (shell, sleep) = (
        pid_in(&state_file(&world, "hung.pid")),
        pid_in(&state_file(&world, "sleep.pid")),
    );
    assert!(
        !alive(shell) && !alive(sleep),
        "the hung command (and its child) still run"
    );
    assert_ne!(checkpoint(&world, "release").as_deref(), Some("done"));
    // The lock was released: the next run is not refused, and finishes.
    std::fs::remove_file(state_file(&world, "hang")).unwrap();
    world.install(&[]).success();
    assert_eq!(checkpoint(&world, "release").as_deref(), Some("done"));
}
