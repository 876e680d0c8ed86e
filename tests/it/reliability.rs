//! Reliability and security of the whole install (issue 5), in one world
//! where every step runs (`support/full.rs`): Ctrl-C, two runs at once, a
//! lock left by a dead run, a command that never returns, and a scan of
//! everything a full install (and `doctor --bundle`) shows or hands to other programs for secrets.
//! The kill tests are in `crash.rs`, bad input and damaged files in
//! `inputs.rs`.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::support::{
    Action, Call, DOMAIN, Rule, StepLine, World, bundle_entries, finished_steps, full, json,
    report, servers, stderr, stdout, step_line, walk,
};

/// `helm upgrade` of the application's release hangs while the state file
/// `hang` exists, as a program waiting on a child of its own (the fake's
/// `Hang`: its pid and its `sleep` child's go to `hung/helm.pid` and
/// `hung/helm.child.pid`).
fn hanging_helm(world: &World) {
    // The release follows `--` (Helm's positional arguments, after its flags).
    world.rule(
        Rule::new("helm", &["upgrade", "--install"], Action::Hang)
            .args_contain("-- stackbill ")
            .while_file("hang"),
    );
    world.touch_state("hang");
}

fn state_file(world: &World, name: &str) -> std::path::PathBuf {
    world.state(name)
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

/// Waits until a fake call of `what` was recorded (the run got there).
fn wait_for_call(world: &World, what: &str, child: &mut Child, wanted: impl Fn(&Call) -> bool) {
    let started = Instant::now();
    while !world.calls().iter().any(&wanted) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {what}: {:#?}",
            world.calls().iter().map(Call::line).collect::<Vec<_>>()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never reached {what}"
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
    wait_for(&state_file(&world, "hung/helm.child.pid"), &mut run);

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
        pid_in(&state_file(&world, "hung/helm.pid")),
        pid_in(&state_file(&world, "hung/helm.child.pid")),
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
    let rerun = world.install(&["--output", "json"]).success();
    let text = stderr(&rerun);
    let steps = json(&rerun)["steps"].as_array().unwrap().clone();
    let result = |step: &serde_json::Value| step["result"].as_str().unwrap().to_string();
    let release = steps
        .iter()
        .position(|step| step["id"] == "release")
        .unwrap();
    assert!(
        steps[..release]
            .iter()
            .all(|step| result(step) != "changed"),
        "the steps before the interrupted one are not run again:\n{text}"
    );
    assert_eq!(result(&steps[release]), "changed", "{text}");
    assert_eq!(checkpoint(&world, "release").as_deref(), Some("done"));
}

#[test]
fn a_lock_left_by_a_killed_run_is_taken_over() {
    let world = full::quick_full_world(&servers::unique("deadlock"));
    hanging_helm(&world);
    let (mut run, _log) = spawn_install(&world, &[]);
    wait_for(&state_file(&world, "hung/helm.child.pid"), &mut run);
    let dead = run.id();
    run.kill().unwrap();
    run.wait().unwrap();
    // What the killed run started runs on in its own process group; end it.
    for pid in ["hung/helm.pid", "hung/helm.child.pid"] {
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
        message.contains("`helm upgrade --install --namespace")
            && message.contains("did not finish within 3s"),
        "the message names the command and its timeout:\n{message}"
    );
    assert!(message.contains("release"), "names the step:\n{message}");
    let (shell, sleep) = (
        pid_in(&state_file(&world, "hung/helm.pid")),
        pid_in(&state_file(&world, "hung/helm.child.pid")),
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

/// Files whose job is to hold a secret (each must be 0600).
const SECRET_FILES: [&str; 7] = [
    "/etc/stackinstall/credentials.toml",
    // The operator's own AWS key, put there by the test as `aws configure` would.
    "/root/.aws/credentials",
    "/etc/stackinstall/tls/tls.key",
    "/var/lib/mongodb/encryption",
    servers::ADMIN_PASSWORD_FILE,
    // K3s's own (the fake K3s writes it as K3s does, 0600).
    "/var/lib/rancher/k3s/server/token",
    // The backup's age key, made by the test as `age-keygen` would.
    "/etc/stackinstall/backup.key",
];

/// Every secret of a full install, by name: the generated passwords, the
/// TLS key, the MongoDB key file, the ECR token, the AWS secret key and
/// the MongoDB admin password the test gives.
fn secrets_of(world: &World) -> Vec<(String, String)> {
    let mut secrets = Vec::new();
    let credentials: toml::Table =
        toml::from_str(&world.read("/etc/stackinstall/credentials.toml")).unwrap();
    for (service, table) in &credentials {
        for (key, value) in table.as_table().into_iter().flatten() {
            let text = value.as_str().filter(|_| key != "username");
            if let Some(text) = text {
                secrets.push((format!("{service}.{key}"), text.to_string()));
            }
        }
    }
    let key = world.read("/etc/stackinstall/tls/tls.key");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    secrets.push(("TLS key".into(), body.clone()));
    for (index, line) in key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .enumerate()
    {
        secrets.push((format!("TLS key line {index}"), line.to_string()));
    }
    secrets.push((
        "MongoDB key file".into(),
        world.read("/var/lib/mongodb/encryption").trim().to_string(),
    ));
    let pull = world.object("secret", "sb-apps", "awscred").unwrap();
    let docker = base64::engine::general_purpose::STANDARD
        .decode(pull["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let docker: serde_json::Value = serde_json::from_slice(&docker).unwrap();
    for auth in docker["auths"].as_object().unwrap().values() {
        secrets.push((
            "ECR token".into(),
            auth["password"].as_str().unwrap().to_string(),
        ));
        secrets.push((
            "ECR auth".into(),
            auth["auth"].as_str().unwrap().to_string(),
        ));
    }
    secrets.push((
        "AWS secret access key".into(),
        full::SECRET_ACCESS_KEY.into(),
    ));
    secrets.push((
        "MongoDB admin password".into(),
        servers::setting("STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD"),
    ));
    secrets.push((
        "K3s token".into(),
        world
            .read("/var/lib/rancher/k3s/server/token")
            .trim()
            .to_string(),
    ));
    let backup_key = world.read("/etc/stackinstall/backup.key");
    let key_line = backup_key
        .lines()
        .find(|line| line.starts_with("AGE-SECRET-KEY-"));
    secrets.push(("backup key".into(), key_line.unwrap().to_string()));
    secrets
}

#[test]
fn no_secret_reaches_argv_environment_logs_output_plan_or_render() {
    let mut world = full::quick_full_world(&servers::unique("secrets"));
    crate::backup::with_key(&mut world);
    let archive = world.dir.path().join("backup.tar.gz.age");
    let plain_archive = world.dir.path().join("backup.tar.gz");
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut run = |name: &str, args: &[&str]| {
        let assert = world.command().args(args).assert().success();
        sources.push((format!("stdout of {name}"), stdout(&assert)));
        sources.push((format!("stderr of {name}"), stderr(&assert)));
    };
    let install = ["install", "--domain", DOMAIN, "--self-signed"];
    run("install", &install);
    run("a second install", &install);
    run(
        "install --redo",
        &[
            &install[..],
            &[
                "--redo", "mysql", "--redo", "rabbitmq", "--redo", "mongodb", "--redo", "registry",
                "--redo", "release",
            ],
        ]
        .concat(),
    );
    run("install --plan", &[&install[..], &["--plan"]].concat());
    run(
        "install --plan --output json",
        &[&install[..], &["--plan", "--output", "json"]].concat(),
    );
    run("status", &["status"]);
    run("credentials", &["credentials"]);
    run("uninstall --plan", &["uninstall", "--all", "--plan"]);
    // The backup's children (kubectl, helm, systemctl, rabbitmqctl, the
    // dump) and its log; the archive itself holds the secrets, encrypted.
    run("backup", &["backup", "--out", archive.to_str().unwrap()]);
    run(
        "backup --unencrypted",
        &[
            "backup",
            "--unencrypted",
            "--out",
            plain_archive.to_str().unwrap(),
        ],
    );
    run(
        "backup --verify",
        &["backup", "--verify", archive.to_str().unwrap()],
    );
    let out = world.dir.path().join("rendered");
    run(
        "render",
        &["render", "--domain", DOMAIN, "--out", out.to_str().unwrap()],
    );
    for path in walk(&out) {
        sources.push((
            format!("rendered {}", path.display()),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    let calls = world.calls();
    let mut aws_in_children = Vec::new();
    for call in &calls {
        sources.push((format!("argv of `{}`", call.line()), call.line()));
        // The whole environment each child started with, as the fake saw it.
        let environment: String = (call.env.iter())
            .map(|(name, value)| format!("{name}={value}\n"))
            .collect();
        sources.push((format!("environment of `{}`", call.line()), environment));
        for name in call.env.keys().filter(|name| name.starts_with("AWS_")) {
            aws_in_children.push(format!("{name} in the environment of `{}`", call.line()));
        }
    }
    // Doctor last: its report and every file of its bundle.
    let bundle = world.dir.path().join("support.tar.gz");
    let doctor = world
        .command()
        .args(["doctor", "--domain", DOMAIN, "--bundle"])
        .arg(&bundle)
        .assert();
    sources.push(("stdout of doctor".into(), stdout(&doctor)));
    sources.push(("stderr of doctor".into(), stderr(&doctor)));
    let bundled = bundle_entries(&bundle);
    assert!(bundled.len() >= 8, "the bundle is too small: {bundled:?}");
    for (name, text) in bundled {
        sources.push((format!("bundle entry {name}"), text));
    }
    for (path, bytes) in world.files(true) {
        if !SECRET_FILES.contains(&path.as_str()) {
            sources.push((
                format!("file {path}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }

    let secrets = secrets_of(&world);
    let mut leaks = Vec::new();
    for (source, text) in &sources {
        for (name, secret) in &secrets {
            if text.contains(secret.as_str()) {
                leaks.push(format!("{name} in {source}"));
            }
        }
    }
    let logs = sources
        .iter()
        .filter(|(s, _)| s.starts_with("file /var/log/"))
        .count();
    report(&format!(
        "secret scan: {} sources checked ({} fake calls' argv, {} child environments scanned in full, {logs} log files, {} support bundle entries), {} secrets looked for, {} leaks, {} AWS_* variables in children",
        sources.len(),
        calls.len(),
        calls.iter().filter(|call| !call.env.is_empty()).count(),
        sources
            .iter()
            .filter(|(s, _)| s.starts_with("bundle entry"))
            .count(),
        secrets.len(),
        leaks.len(),
        aws_in_children.len()
    ));
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    assert!(
        aws_in_children.is_empty(),
        "AWS variables reached children (ECR goes through the SDK in-process):\n{}",
        aws_in_children.join("\n")
    );
    assert!(
        calls.iter().all(|call| call.env.contains_key("PATH")),
        "every fake recorded its full environment"
    );
    assert!(logs >= 3 && calls.len() > 50, "the scan saw too little");
    assert!(
        (sources.iter()).any(|(s, _)| s.starts_with("file /var/log/stackinstall/backup-")),
        "the backup's log was scanned"
    );
    assert!(
        (calls.iter()).any(|call| call.line().contains("get values")),
        "the backup's children were scanned"
    );

    // Files holding secrets are 0600, the directories holding them 0700.
    for path in SECRET_FILES {
        let mode = std::fs::metadata(world.path(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{path} has mode {mode:o}");
    }
    for dir in ["/etc/stackinstall", "/etc/stackinstall/tls"] {
        let mode = std::fs::metadata(world.path(dir))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{dir} has mode {mode:o}");
    }
    // The values file with the passwords went to helm as 0600 and is gone.
    assert_eq!(
        std::fs::read_to_string(state_file(&world, "helm/values-mode"))
            .unwrap()
            .trim(),
        "600"
    );
    assert!(
        !world
            .files(false)
            .keys()
            .any(|p| p.ends_with("values.yaml")),
        "the values file was left behind"
    );
}

#[test]
fn the_binary_holds_no_aws_credential() {
    let binary = std::fs::read(assert_cmd::cargo::cargo_bin("stackinstall")).unwrap();
    let mut found = Vec::new();
    for start in 0..binary.len().saturating_sub(20) {
        let window = &binary[start..start + 20];
        let prefix = &window[..4];
        if (prefix == b"AKIA" || prefix == b"ASIA")
            && window[4..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            found.push(String::from_utf8_lossy(window).into_owned());
        }
    }
    assert!(
        found.is_empty(),
        "AWS access key ids in the binary: {found:?}"
    );
    for secret in [
        full::SECRET_ACCESS_KEY.as_bytes(),
        b"aws_secret_access_key = ",
    ] {
        assert!(!binary.windows(secret.len()).any(|w| w == secret));
    }
}

/// Ctrl-C while the `mysql` step waits for a server: one whose socket
/// takes the connection and never says a word (the connect hangs), and one
/// that is not there yet (the step retries every second for a minute).
/// Each run ends 130 at once, the step recorded `interrupted`.
#[test]
fn ctrl_c_during_a_database_connect_or_its_retries_stops_the_run() {
    use std::os::unix::net::UnixListener;
    for case in ["a socket that never answers", "a server that is not up yet"] {
        // The server's packages are there, its unit does not run.
        let mut world = World::new();
        world.host_fakes();
        for unit in ["mysql", "mariadb"] {
            world.set_unit(unit, false, false);
        }
        let socket = world.dir.path().join("mysqld.sock");
        let listener = match case {
            "a socket that never answers" => Some(UnixListener::bind(&socket).unwrap()),
            _ => None,
        };
        world.set_env("STACKINSTALL_MYSQL__SOCKET", socket.to_str().unwrap());
        world.set_env("STACKINSTALL_ONLY", "credentials,mysql");
        let (mut run, log) = spawn_install(&world, &[]);
        let _held = match &listener {
            // The connection is taken and held open, silent.
            Some(listener) => Some(listener.accept().unwrap()),
            None => {
                // systemd is asked to start the server.
                wait_for_call(&world, "a change by systemctl", &mut run, |call| {
                    call.program == "systemctl"
                        && !["is-active", "is-enabled", "show"].contains(&call.args[0].as_str())
                });
                std::thread::sleep(Duration::from_millis(1500));
                None
            }
        };
        let sent = Instant::now();
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
        let status = wait_at_most(&mut run, Duration::from_secs(20));
        let took = sent.elapsed();
        let output = std::fs::read_to_string(&log).unwrap();
        println!(
            "Ctrl-C during the MySQL connect ({case}): exit {:?} after {took:?}",
            status.code()
        );
        assert_eq!(status.code(), Some(130), "{output}");
        assert_eq!(
            checkpoint(&world, "mysql").as_deref(),
            Some("interrupted"),
            "{output}"
        );
        assert!(output.contains("again to resume at `mysql`"), "{output}");
    }
}

#[test]
fn when_one_lane_fails_the_other_finishes_its_step_and_a_rerun_resumes_both() {
    let world = full::quick_full_world(&servers::unique("lanes"));
    // `istioctl install` fails while the flag file is there.
    let failure = Action::Fail {
        code: 1,
        stderr: "Error: failed to install manifests\n".into(),
    };
    world.rule(Rule::new("istioctl", &["install"], failure).while_file("istio-broken"));
    world.touch_state("istio-broken");
    let flag = state_file(&world, "istio-broken");

    let failed = world.install(&["--jobs", "4"]).code(1);
    let text = stderr(&failed);
    assert!(
        text.contains("step `istio`"),
        "names the failed step:\n{text}"
    );
    assert_eq!(checkpoint(&world, "istio").as_deref(), Some("failed"));
    // `nfs` started with `k3s`, before `istio` could: the host lane finished it.
    assert_eq!(checkpoint(&world, "nfs").as_deref(), Some("done"), "{text}");
    let mut finished_aside = Vec::new();
    for step in [
        "credentials",
        "mysql",
        "mongodb",
        "rabbitmq",
        "nfs",
        "k3s",
        "helm",
    ] {
        let status = checkpoint(&world, step);
        assert!(
            status.is_none() || status.as_deref() == Some("done"),
            "{step} is {status:?}:\n{text}"
        );
        finished_aside.extend(status.map(|_| step));
    }
    for step in ["namespace", "tls", "registry", "release", "gateway", "wait"] {
        assert_eq!(
            checkpoint(&world, step),
            None,
            "{step} started after the failure"
        );
    }
    println!("finished beside the failed `istio`: {finished_aside:?}");

    std::fs::remove_file(&flag).unwrap();
    let rerun = world.install(&[]).success();
    let text = stderr(&rerun);
    for (id, result) in finished_steps(&text) {
        if finished_aside.contains(&id.as_str()) {
            assert_eq!(result, "already-done", "{id} ran again:\n{text}");
        }
    }
    assert_eq!(checkpoint(&world, "istio").as_deref(), Some("done"));
    assert_eq!(checkpoint(&world, "release").as_deref(), Some("done"));
}

#[test]
fn ctrl_c_stops_and_records_every_running_step_of_both_lanes() {
    let world = full::quick_full_world(&servers::unique("sigint2"));
    // K3s's install script (cluster lane) and MySQL's restart (host lane)
    // hang while the state file `hang` exists.
    for (program, args) in [
        ("k3s-install", &[][..]),
        ("systemctl", &["restart", "mariadb.service"][..]),
        ("systemctl", &["restart", "mysql.service"][..]),
    ] {
        world.rule(Rule::new(program, args, Action::Hang).while_file("hang"));
    }
    world.touch_state("hang");
    let (mut run, log) = spawn_install(&world, &[]);
    wait_for(&state_file(&world, "hung/k3s-install.child.pid"), &mut run);
    wait_for(&state_file(&world, "hung/systemctl.child.pid"), &mut run);

    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = wait_at_most(&mut run, Duration::from_secs(30));
    let output = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{output}");
    let mut interrupted = Vec::new();
    for step in ["k3s", "mysql"] {
        assert_eq!(
            checkpoint(&world, step).as_deref(),
            Some("interrupted"),
            "{step}:\n{output}"
        );
        interrupted.push(step);
    }
    println!("interrupted side by side and recorded: {interrupted:?}");

    std::fs::remove_file(state_file(&world, "hang")).unwrap();
    world.install(&[]).success();
    for step in ["k3s", "mysql", "release"] {
        assert_eq!(checkpoint(&world, step).as_deref(), Some("done"), "{step}");
    }
}

/// The step id a plain step line names, and whether the step ended.
fn step_id(line: &str) -> Option<(String, bool)> {
    match step_line(line)? {
        StepLine::Started(id) => Some((id, false)),
        StepLine::Finished { id, .. } => Some((id, true)),
    }
}

#[test]
fn plain_output_of_steps_side_by_side_carries_each_lines_step_id() {
    let world = full::quick_full_world(&servers::unique("plainlanes"));
    let run = world.install(&["--jobs", "4"]).success();
    let text = stderr(&run);
    let mut running: Vec<String> = Vec::new();
    let (mut lane_lines, mut side_by_side, mut most) = (0, 0, 0);
    for line in text.lines() {
        if let Some((id, ended)) = step_id(line) {
            if ended {
                assert!(
                    running.contains(&id),
                    "{id} ended before it started:\n{text}"
                );
                running.retain(|running| *running != id);
            } else {
                running.push(id);
                most = most.max(running.len());
            }
            continue;
        }
        if line.is_empty() || line.starts_with("- skipped (") {
            continue;
        }
        // Every other line a step prints is `      ID: ...`, ID a running step.
        let id = line
            .strip_prefix("      ")
            .and_then(|rest| rest.split_once(": "))
            .map(|(id, _)| id.to_string());
        assert!(
            id.as_ref().is_some_and(|id| running.contains(id)),
            "a line without the id of a running step: {line:?}\nrunning: {running:?}\n{text}"
        );
        lane_lines += 1;
        if running.len() > 1 {
            side_by_side += 1;
        }
    }
    assert!(running.is_empty(), "steps never ended: {running:?}\n{text}");
    assert!(most > 1, "no two steps ran side by side:\n{text}");
    assert!(side_by_side > 0, "no step printed beside another:\n{text}");
    println!(
        "plain output: {lane_lines} step lines carry their step's id, {side_by_side} printed while steps ran side by side (at most {most} at once)"
    );

    let sequential = world.install(&["--jobs", "1", "--redo", "k3s"]).success();
    let text = stderr(&sequential);
    let mut current: Option<String> = None;
    for line in text.lines() {
        match step_id(line) {
            Some((id, false)) => current = Some(id),
            Some((_, true)) => current = None,
            None if line.starts_with("      ") => assert!(
                current
                    .as_ref()
                    .is_some_and(|id| line.starts_with(&format!("      {id}: "))),
                "--jobs 1: {line:?} under {current:?}\n{text}"
            ),
            None => {}
        }
    }
}

/// The `systemctl` calls of the world's log, as lines.
fn systemctl_calls(world: &World) -> Vec<String> {
    world.lines_of("systemctl")
}

#[test]
fn a_rerun_reads_every_unit_in_one_systemctl_show_and_sees_a_unit_it_started() {
    let world = full::quick_full_world(&servers::unique("units"));
    world.install(&[]).success();

    // A no-op re-run: every step's look at a unit shares one read.
    world.clear_calls();
    world.install(&[]).success();
    let calls = systemctl_calls(&world);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(calls[0].starts_with("systemctl show "), "{calls:#?}");
    for unit in [
        "k3s",
        "mongod",
        "nfs-server.service",
        "rabbitmq-server.service",
    ] {
        assert!(calls[0].contains(unit), "{unit} is not read: {}", calls[0]);
    }

    // mongod stopped: the re-run starts it, reads the units again after
    // the start (not the read from before it) and finds it running.
    world.set_unit("mongod", true, false);
    world.clear_calls();
    world.install(&[]).success();
    let calls = systemctl_calls(&world);
    let start = (calls.iter())
        .position(|call| call == "systemctl start mongod")
        .unwrap_or_else(|| panic!("mongod is started: {calls:#?}"));
    assert!(
        calls[start + 1..]
            .iter()
            .any(|call| call.starts_with("systemctl show ")),
        "the units are read again after the start: {calls:#?}"
    );
    println!("systemctl calls of a re-run that started mongod: {calls:#?}");
}

/// RabbitMQ's CLI exits 69 (`EX_UNAVAILABLE`) when it cannot reach a node
/// that is still booting or too busy to answer in time (rabbitmq-server
/// `deps/rabbitmq_cli/lib/rabbitmq/cli/core/exit_codes.ex`): the step runs
/// it again rather than failing the install.
#[test]
fn a_rabbitmqctl_that_cannot_reach_the_node_yet_is_run_again() {
    let world = full::quick_full_world(&servers::unique("unavailable"));
    let unavailable = Action::Fail {
        code: 69,
        stderr: "Error: unable to perform an operation on node 'rabbit@vm'. Please see diagnostics information and suggestions below.\n".into(),
    };
    world.rule(Rule::new("rabbitmqctl", &["export_definitions"], unavailable).once());
    let installed = world.install(&[]);
    assert!(
        installed.get_output().status.success(),
        "{}",
        stderr(&installed)
    );
    let exports = (world.calls().iter())
        .filter(|call| call.is("rabbitmqctl", "export_definitions"))
        .count();
    assert!(exports >= 2, "the export ran {exports} time(s)");
}

/// The programs a no-op re-run of the full world spawns, by program.
fn spawned(world: &World) -> std::collections::BTreeMap<String, usize> {
    let mut spawned = std::collections::BTreeMap::new();
    for call in world.calls() {
        *spawned.entry(call.program).or_insert(0) += 1;
    }
    spawned
}

/// Issue 20's target: a no-op re-run spawns at most 5 programs. Every
/// step's look and verify at the cluster shares one `kubectl get` of every
/// kind in every namespace (`host::cluster`), which lists Secrets by name
/// and stackinstall's annotations, never their data; once something
/// changed the cluster, the next look reads it again.
#[test]
fn a_rerun_reads_the_cluster_once_and_spawns_five_programs_at_most() {
    let world = full::quick_full_world(&servers::unique("reads"));
    world.install(&[]).success();

    world.clear_calls();
    world.install(&[]).success();
    let spawned = spawned(&world);
    let total: usize = spawned.values().sum();
    assert!(total <= 5, "{total} programs: {spawned:?}");
    assert_eq!(spawned.get("kubectl"), Some(&1), "{spawned:?}");
    let reads = world.lines_of("kubectl");
    assert!(reads[0].starts_with("kubectl get ") && reads[0].contains("secrets"));
    // Secrets are printed by their own part of the template, which asks
    // for fields of their metadata only; the whole object (`{@}`) is
    // printed for the other kinds alone.
    let (others, secrets) = (reads[0].split_once(r#"[?(@.kind=="Secret")]"#))
        .unwrap_or_else(|| panic!("Secrets are read apart: {}", reads[0]));
    assert!(others.contains(r#"[?(@.kind!="Secret")]"#), "{}", reads[0]);
    let fields: Vec<&str> = secrets.split('{').skip(1).collect();
    assert!(
        fields.iter().all(|field| {
            field.starts_with(".metadata.") || field.starts_with('"') || field.starts_with("end")
        }),
        "a Secret's data is never read: {secrets}"
    );
    println!("a no-op re-run spawns {total} programs: {spawned:?}");
    // The run's own log names every command it ran, the binaries a step
    // installed (not fakes) among them.
    let log = std::fs::read_dir(world.path("/var/log/stackinstall"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().contains("install-"))
        .max_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .expect("the re-run's log");
    let ran: Vec<String> = (std::fs::read_to_string(&log).unwrap().lines())
        .filter_map(|line| {
            line.split_once("run: ")
                .map(|(_, command)| command.to_string())
        })
        .collect();
    println!("commands of the re-run's log: {ran:#?}");
    // Each binary's version is read once a run (preflight and the step's
    // look share it), no command runs twice.
    let mut seen = std::collections::BTreeSet::new();
    let twice: Vec<&String> = ran
        .iter()
        .filter(|command| !seen.insert(*command))
        .collect();
    assert!(twice.is_empty(), "run twice: {twice:#?}");

    // The Gateway deleted: the re-run applies it, then reads the cluster
    // again (the apply made the first read stale) and verifies it there.
    let namespace = "sb-apps";
    world.delete_object("Gateway", namespace, "stackbill-gateway");
    world.clear_calls();
    world.install(&[]).success();
    let kubectl = world.lines_of("kubectl");
    let apply = (kubectl.iter())
        .position(|call| call.starts_with("kubectl apply"))
        .unwrap_or_else(|| panic!("the Gateway is applied again: {kubectl:#?}"));
    assert!(
        kubectl[apply + 1..]
            .iter()
            .any(|call| call.starts_with("kubectl get ")),
        "the cluster is read again after the apply: {kubectl:#?}"
    );
    assert!(
        world
            .object("Gateway", namespace, "stackbill-gateway")
            .is_some()
    );
}

/// A step that panics (a bug) while others run side by side: the run ends
/// with the step named as failed and the rest of the run's report, rather
/// than waiting for ever for its report; a re-run finishes the install.
/// Before the fix the engine waited on its channel while it still held a
/// sender (the test's timeout ended it).
#[test]
fn a_step_that_panics_beside_others_fails_the_run_which_a_rerun_finishes() {
    let world = full::quick_full_world(&servers::unique("panics"));
    let point = "namespace: run kubectl apply -f: before #1";
    let failed = world
        .command()
        .args(["install", "--domain", "demo.example.com", "--self-signed"])
        .env("STACKINSTALL_TEST_PANIC_AT", point)
        .timeout(Duration::from_secs(120))
        .assert()
        .code(1);
    let text = stderr(&failed);
    assert!(
        text.contains("step `namespace`") && text.contains("a bug in stackinstall"),
        "{text}"
    );
    let status = world
        .command()
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    println!("status after the panic: {status}");
    world.install(&[]).success();
}
