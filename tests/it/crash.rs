//! Crash anywhere (issue 5, point 1): a full install in the world of
//! `support/full.rs` is killed with SIGKILL at many moments, then run again
//! plainly. Every kill must converge: the re-run succeeds and repairs
//! nothing behind the credentials file's back, a third run changes nothing,
//! the credentials that existed at the kill are the ones in use, and the
//! files under the root and the fake cluster equal those of an
//! uninterrupted run (names, passwords and random keys aside).
//!
//! Kill points come from the uninterrupted run itself:
//! - as the N-th fake command starts (it has no effect) or once it is done
//!   (its effect is not recorded): `record/kill-at`, see `common::World::fake`;
//! - inside the N-th atomic write of a file (half the temporary written,
//!   written but not renamed, renamed but the directory not synced): the
//!   debug build's `STACKINSTALL_TEST_CRASH_WRITE`, see `host::fs`;
//! - a while after a step that runs no fake (the real database servers)
//!   has started, by the test itself.
#![allow(clippy::disallowed_methods)]

#[path = "support/cluster.rs"]
mod cluster;
mod common;
#[path = "support/full.rs"]
mod full;
#[path = "support/servers.rs"]
mod servers;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{DOMAIN, World, stderr, walk};

/// Where the run was killed.
#[derive(Debug, Clone)]
enum Kill {
    /// As the `nth` fake command of the run starts, or after it did its work.
    Call { nth: usize, after: bool },
    /// Inside the `nth` atomic write of the file named `file`.
    Write {
        file: String,
        nth: usize,
        phase: &'static str,
    },
    /// `after_ms` after `step` started.
    During { step: &'static str, after_ms: u64 },
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kill::Call { nth, after } => {
                let when = if *after { "after" } else { "as" };
                write!(f, "{when} fake call #{nth}")
            }
            Kill::Write { file, nth, phase } => write!(f, "write #{nth} of {file} ({phase})"),
            Kill::During { step, after_ms } => write!(f, "{after_ms} ms into {step}"),
        }
    }
}

/// A world of its own for one run, named by its database user.
struct Trial {
    world: World,
    user: String,
}

impl Trial {
    fn new(label: &str) -> Self {
        let user = servers::unique(label);
        // Steps side by side, as on a real host (`--jobs` 4): a kill point
        // counts for every step running when it is reached.
        let world = full::quick_full_world(&user);
        Self { world, user }
    }

    /// `install` with the world's flags, checked to succeed; its stderr.
    fn install(&self) -> String {
        let assert = self.world.install(&[]);
        let text = stderr(&assert);
        assert!(
            assert.get_output().status.success(),
            "install failed:\n{text}"
        );
        text
    }

    /// Runs `install` and kills it at `kill`; the steps running then, or
    /// `None` when the run ended before reaching the kill point.
    fn install_killed(&self, kill: &Kill) -> Option<Vec<String>> {
        self.killed(&["install", "--domain", DOMAIN, "--self-signed"], kill)
    }

    /// Runs `stackinstall ARGS` and kills it at `kill`, as `install_killed`.
    fn killed(&self, args: &[&str], kill: &Kill) -> Option<Vec<String>> {
        let log = self.world.dir.path().join("killed-run.stderr");
        let mut command = self.world.std_command();
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        match kill {
            Kill::Call { nth, after } => {
                let when = if *after { "after" } else { "before" };
                std::fs::write(self.world.record.join("kill-at"), format!("{nth} {when}\n"))
                    .unwrap();
            }
            Kill::Write { file, nth, phase } => {
                command.env(
                    "STACKINSTALL_TEST_CRASH_WRITE",
                    format!("{file}:{nth}:{phase}"),
                );
            }
            Kill::During { .. } => {}
        }
        let mut child = command.spawn().unwrap();
        if let Kill::During { step, after_ms } = kill {
            let started = Instant::now();
            while !started_steps(&read(&log)).iter().any(|s| s == step) {
                if child.try_wait().unwrap().is_some()
                    || started.elapsed() > Duration::from_secs(120)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(*after_ms));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        let _ = std::fs::remove_file(self.world.record.join("kill-at"));
        (status.signal() == Some(libc::SIGKILL)).then(|| running_steps(&read(&log)))
    }

    /// The credentials file parsed; panics when it exists and is damaged
    /// (a kill must never leave a torn one).
    fn credentials(&self) -> Option<toml::Table> {
        let path = self.world.path("/etc/stackinstall/credentials.toml");
        let text = std::fs::read_to_string(path).ok()?;
        Some(
            toml::from_str(&text)
                .unwrap_or_else(|e| panic!("credentials file damaged: {e}\n{text}")),
        )
    }

    /// Every password the credentials file holds.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for section in self.credentials().unwrap_or_default().values() {
            for value in section.as_table().into_iter().flat_map(|t| t.values()) {
                if let Some(text) = value.as_str().filter(|t| t.len() >= 12) {
                    secrets.push(text.to_string());
                }
            }
        }
        secrets
    }

    /// `text` with what differs between worlds by design replaced.
    fn normalize(&self, text: &str) -> String {
        let mut text = text.replace(&self.world.dir.path().display().to_string(), "WORLD");
        // The release files' server listens on an ephemeral port per world.
        let mut from = 0;
        while let Some(found) = text[from..].find("http://127.0.0.1:") {
            let (at, start) = (from + found, from + found + "http://127.0.0.1:".len());
            let end = start
                + text[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(0);
            if text[start..end]
                .parse::<u32>()
                .is_ok_and(|port| port >= 32768)
            {
                text.replace_range(at..end, "RELEASES");
            }
            from = at + 1;
        }
        // The release files (and so the pins the world sets) differ per world.
        let mut from = 0;
        while let Some(found) = text[from..].find("sha256 = \"") {
            let start = from + found + "sha256 = \"".len();
            let end = start + 64;
            if text
                .get(start..end)
                .is_some_and(|digest| digest.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                text.replace_range(start..end, "DIGEST");
            }
            from = start;
        }
        text = text.replace(&self.user, "USER");
        for secret in self.secrets() {
            text = text.replace(&secret, "<password>");
        }
        text
    }

    /// What an install leaves, comparable across worlds.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut snapshot = BTreeMap::new();
        for (path, bytes) in self.world.files(false) {
            let mode = std::fs::metadata(self.world.path(&path))
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let shown = match path.as_str() {
                "/var/lib/stackinstall/state.toml" => self.normalize(&checkpoints(&text)),
                "/etc/stackinstall/credentials.toml" => {
                    let table = self.credentials().unwrap();
                    format!(
                        "{:?}",
                        table
                            .iter()
                            .map(|(k, v)| (k, v.as_table().map(|t| t.keys().collect::<Vec<_>>())))
                            .collect::<Vec<_>>()
                    )
                }
                "/var/lib/stackinstall/lock"
                | "/etc/stackinstall/tls/tls.crt"
                | "/etc/stackinstall/tls/tls.key"
                | "/var/lib/mongodb/encryption" => "<random>".into(),
                _ => self.normalize(&text),
            };
            snapshot.insert(format!("file {path}"), format!("{mode:o} {shown}"));
        }
        let state = self.world.record.join("state");
        for path in walk(&state) {
            let name = path.strip_prefix(&state).unwrap().display().to_string();
            if name == "systemd/reloads" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let shown = if name.starts_with("kube/") {
                self.normalize(&kube_object(&text))
            } else if name.starts_with("helm/") && name.ends_with(".json") {
                let history: serde_json::Value = serde_json::from_str(&text).unwrap();
                let last = history.as_array().unwrap().last().unwrap().clone();
                format!("last revision {} {}", last["status"], last["chart"])
            } else if name == "helm/values-seen.yaml" {
                // The values the release got: passwords masked whether or
                // not a credentials file is left to say which they are.
                text.lines()
                    .map(|line| match line.split_once("password:") {
                        Some((head, _)) => format!("{head}password: <password>"),
                        None => self.normalize(line),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                self.normalize(&text)
            };
            snapshot.insert(format!("cluster {name}"), shown);
        }
        snapshot
    }
}

/// The state file as its checkpoints' statuses and its facts.
fn checkpoints(text: &str) -> String {
    let state: toml::Table = toml::from_str(text).unwrap();
    let steps: BTreeMap<_, _> = state["steps"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(id, step)| (id.clone(), step["status"].to_string()))
        .collect();
    format!("steps {steps:?} facts {:?}", state.get("facts"))
}

/// A fake cluster object with Secret data and time or hash stamps masked.
fn kube_object(text: &str) -> String {
    let mut object: serde_json::Value = serde_json::from_str(text).unwrap();
    if let Some(data) = object.get_mut("data").and_then(|d| d.as_object_mut()) {
        data.values_mut().for_each(|v| *v = "<data>".into());
    }
    if let Some(annotations) = object["metadata"]
        .get_mut("annotations")
        .and_then(|a| a.as_object_mut())
    {
        annotations.values_mut().for_each(|v| *v = "<stamp>".into());
    }
    object.to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The steps a plain-output run started, in order.
fn started_steps(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('[')?;
            let (_, rest) = rest.split_once("] ")?;
            rest.split_whitespace().next().map(String::from)
        })
        .collect()
}

/// The steps a killed run's output shows started and not finished; when
/// none (the kill came between steps), the last one started, or `startup`.
fn running_steps(output: &str) -> Vec<String> {
    let started = started_steps(output);
    let finished: BTreeSet<String> = (output.lines())
        .filter_map(common::finished_step)
        .map(|(id, _)| id)
        .collect();
    let running: Vec<String> = (started.iter())
        .filter(|step| !finished.contains(*step))
        .cloned()
        .collect();
    match (running.is_empty(), started.last()) {
        (false, _) => running,
        (true, Some(last)) => vec![last.clone()],
        (true, None) => vec!["startup".into()],
    }
}

/// Each step's outcome in a run's output: `id -> changed|unchanged|...`.
fn outcomes(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(common::finished_step)
        .map(|(id, result)| (id, result.to_string()))
        .collect()
}

/// The atomic writes of a run, from its log: file name and how many times.
fn writes(log: &str) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("wrote ") else {
            continue;
        };
        let path = rest.split(" (mode").next().unwrap();
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        if !counts.contains_key(&name) {
            order.push(name.clone());
        }
        *counts.entry(name).or_default() += 1;
    }
    order
        .into_iter()
        .map(|n| {
            let c = counts[&n];
            (n, c)
        })
        .collect()
}

/// The kill points, spread over the uninterrupted run's calls and writes.
fn kill_points(calls: usize, writes: &[(String, usize)]) -> Vec<Kill> {
    // Every other call, as it starts and after it, in turn.
    let mut kills: Vec<Kill> = (1..=calls)
        .step_by(2)
        .map(|nth| Kill::Call {
            nth,
            after: nth % 4 == 3,
        })
        .collect();
    const PHASES: [&str; 3] = ["torn", "unrenamed", "renamed"];
    let mut phase = PHASES.iter().cycle();
    for (file, count) in writes {
        let occurrences: BTreeSet<usize> = match file.as_str() {
            "credentials.toml" => {
                kills.extend(PHASES.map(|phase| Kill::Write {
                    file: file.clone(),
                    nth: 1,
                    phase,
                }));
                continue;
            }
            // A checkpoint after nearly every step: the first, every fourth, the last.
            "state.toml" => (1..=*count).filter(|n| n % 4 == 1 || n == count).collect(),
            _ => [1].into(),
        };
        for nth in occurrences {
            kills.push(Kill::Write {
                file: file.clone(),
                nth,
                phase: phase.next().unwrap(),
            });
        }
    }
    for (step, after_ms) in [
        ("mysql", 0),
        ("mysql", 120),
        ("mongodb", 0),
        ("mongodb", 250),
        ("rabbitmq", 0),
        ("rabbitmq", 800),
        ("rabbitmq", 2000),
    ] {
        kills.push(Kill::During { step, after_ms });
    }
    kills
}

/// Kills a run at `kill`, runs again, and checks convergence against
/// `reference`; returns the step the kill landed in, `None` if never reached.
fn converge(
    kill: &Kill,
    reference: &BTreeMap<String, String>,
) -> Result<Option<Vec<String>>, String> {
    let trial = Trial::new("crash");
    if matches!(kill, Kill::During { .. }) {
        // Fakes that take a little time, so the kill lands in the midst of work.
        std::fs::write(trial.world.record.join("delay"), "0.02").unwrap();
    }
    let Some(steps) = trial.install_killed(kill) else {
        return Ok(None);
    };
    let before = trial.credentials();
    let rerun = trial.world.install(&[]);
    let text = stderr(&rerun);
    if !rerun.get_output().status.success() {
        return Err(format!("the re-run failed:\n{text}"));
    }
    if text.contains("not the credentials file's") {
        return Err(format!(
            "a server held a password the file does not:\n{text}"
        ));
    }
    if before.is_some() && trial.credentials() != before {
        return Err("the credentials changed after the kill".into());
    }
    let third = trial.install();
    let changed: Vec<_> = outcomes(&third)
        .into_iter()
        .filter(|(_, outcome)| outcome == "changed")
        .collect();
    if !changed.is_empty() {
        return Err(format!("a third run still changed {changed:?}:\n{third}"));
    }
    let snapshot = trial.snapshot();
    if &snapshot != reference {
        return Err(format!(
            "the result differs from an uninterrupted run:\n{}",
            differences(reference, &snapshot)
        ));
    }
    mysql_login(&trial)?;
    Ok(Some(steps))
}

/// Every key whose value differs between the two snapshots, with its lines.
fn differences(reference: &BTreeMap<String, String>, found: &BTreeMap<String, String>) -> String {
    reference
        .keys()
        .chain(found.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|key| reference.get(*key) != found.get(*key))
        .map(|key| difference(key, reference.get(key), found.get(key)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `check` on every kill point, two at a time; the results.
fn in_parallel<T: Send>(kills: Vec<Kill>, check: impl Fn(&Kill) -> T + Sync) -> Vec<(Kill, T)> {
    let queue = Mutex::new(kills);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let Some(kill) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let result = check(&kill);
                    results.lock().unwrap().push((kill, result));
                }
            });
        }
    });
    results.into_inner().unwrap()
}

/// The lines of `key` that differ between the uninterrupted run and this one.
fn difference(key: &str, reference: Option<&String>, found: Option<&String>) -> String {
    let lines = |text: Option<&String>| -> BTreeSet<String> {
        text.map(|t| t.lines().map(String::from).collect())
            .unwrap_or_default()
    };
    let (reference, found) = (lines(reference), lines(found));
    let only_reference: Vec<_> = reference.difference(&found).collect();
    let only_found: Vec<_> = found.difference(&reference).collect();
    format!(
        "{key}:\n  uninterrupted only: {only_reference:?}\n  after the kill only: {only_found:?}"
    )
}

/// The world's MySQL user logs in over TCP with the credentials file's password.
fn mysql_login(trial: &Trial) -> Result<(), String> {
    let credentials = trial.credentials().unwrap();
    let password = credentials["mysql"]["password"].as_str().unwrap();
    mysql_login_with(&trial.user, password)
        .map_err(|e| format!("MySQL login with the file's password: {e}"))
}

/// A TCP login to the test MariaDB as `user`.
fn mysql_login_with(user: &str, password: &str) -> Result<(), sqlx::Error> {
    use sqlx::{ConnectOptions, Connection};
    let port: u16 = servers::setting("STACKINSTALL_TEST_MYSQL_PORT")
        .parse()
        .unwrap();
    let options = sqlx::mysql::MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(user)
        .password(password)
        .disable_statement_logging();
    servers::block_on(async {
        sqlx::mysql::MySqlConnection::connect_with(&options)
            .await
            .map(|_| ())
    })
}

#[test]
fn killed_anywhere_a_rerun_converges_to_the_uninterrupted_result() {
    let reference = Trial::new("reference");
    reference.install();
    let calls = reference.world.calls().len();
    let log = reference
        .world
        .files(true)
        .into_iter()
        .find(|(path, _)| path.starts_with("/var/log/stackinstall/"))
        .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
        .expect("the run's log");
    let expected = reference.snapshot();
    let mut kills = kill_points(calls, &writes(&log));
    // To look into one kind of kill point: only those whose name has this.
    if let Ok(filter) = std::env::var("STACKINSTALL_TEST_KILL_FILTER") {
        kills.retain(|kill| kill.to_string().contains(&filter));
    }

    let results = in_parallel(kills, |kill| converge(kill, &expected));

    let mut per_step: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut not_reached = Vec::new();
    for (kill, result) in &results {
        match result {
            Ok(Some(steps)) => {
                for step in steps {
                    *per_step.entry(step.clone()).or_default() += 1;
                }
            }
            Ok(None) => not_reached.push(kill.to_string()),
            Err(why) => failures.push(format!("killed {kill}: {why}")),
        }
    }
    let tried = results.len() - not_reached.len();
    let converged = tried - failures.len();
    common::report(&format!(
        "kill points: {tried} tried, {converged} converged ({} never reached: {not_reached:?})",
        not_reached.len()
    ));
    common::report(&format!("kill points per step: {per_step:?}"));
    assert!(
        failures.is_empty(),
        "{} kill points did not converge:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(tried >= 50, "only {tried} kill points were reached");
    let steps = started_steps(&stderr(&reference.world.install(&[])));
    let missed: Vec<_> = steps
        .iter()
        .filter(|s| !per_step.contains_key(*s))
        .collect();
    assert!(missed.is_empty(), "no kill point landed in {missed:?}");
}

/// `uninstall --all --yes`, checked to succeed; its stdout.
fn uninstall_all(trial: &Trial) -> String {
    let assert = trial
        .world
        .command()
        .args(["uninstall", "--all", "--yes"])
        .assert();
    let output = common::stdout(&assert);
    assert!(
        assert.get_output().status.success(),
        "uninstall failed:\n{output}\n{}",
        stderr(&assert)
    );
    output
}

/// Installs, kills `uninstall --all` at `kill`, runs it again and checks
/// that it finished the job: the same files and cluster as an uninterrupted
/// uninstall, our MySQL user gone, a second uninstall with nothing to do.
fn uninstall_converges(kill: &Kill, reference: &BTreeMap<String, String>) -> Result<bool, String> {
    let trial = Trial::new("unkill");
    trial.install();
    let password = trial.credentials().unwrap()["mysql"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let before = trial.world.calls().len();
    let Kill::Call { nth, after } = kill else {
        unreachable!("uninstall kill points are fake calls")
    };
    let shifted = Kill::Call {
        nth: before + nth,
        after: *after,
    };
    if trial
        .killed(&["uninstall", "--all", "--yes"], &shifted)
        .is_none()
    {
        return Ok(false);
    }
    uninstall_all(&trial);
    let second = uninstall_all(&trial);
    if !second.contains("Nothing to remove") {
        return Err(format!(
            "a second uninstall still removed things:\n{second}"
        ));
    }
    let snapshot = trial.snapshot();
    if &snapshot != reference {
        return Err(format!(
            "the result differs from an uninterrupted uninstall:\n{}",
            differences(reference, &snapshot)
        ));
    }
    if mysql_login_with(&trial.user, &password).is_ok() {
        return Err("the MySQL user survived the uninstall".into());
    }
    Ok(true)
}

#[test]
fn an_uninstall_killed_anywhere_finishes_when_run_again() {
    let reference = Trial::new("unreference");
    reference.install();
    let installed = reference.world.calls().len();
    uninstall_all(&reference);
    let calls = reference.world.calls().len() - installed;
    let expected = reference.snapshot();
    let kills: Vec<Kill> = (1..=calls)
        .step_by(2)
        .map(|nth| Kill::Call {
            nth,
            after: nth % 4 == 3,
        })
        .collect();
    let results = in_parallel(kills, |kill| uninstall_converges(kill, &expected));
    let mut failures = Vec::new();
    let mut reached = 0;
    for (kill, result) in &results {
        match result {
            Ok(true) => reached += 1,
            Ok(false) => {}
            Err(why) => {
                reached += 1;
                failures.push(format!("killed {kill}: {why}"));
            }
        }
    }
    common::report(&format!(
        "uninstall kill points: {reached} tried, {} finished when run again",
        reached - failures.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        reached >= 8,
        "only {reached} uninstall kill points were reached"
    );
}
