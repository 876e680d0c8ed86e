//! Crash anywhere (issue 5, point 1): a full install in the world of
//! `support/full.rs` is killed with SIGKILL at many moments, then run again
//! plainly. Every kill must converge: the re-run succeeds and repairs
//! nothing behind the credentials file's back, a third run changes nothing,
//! the credentials that existed at the kill are the ones in use, and the
//! files under the root and the fake cluster equal those of an
//! uninterrupted run (names, passwords and random keys aside).
//!
//! Kill points are the library's (`src/host/killpoint.rs`, debug builds):
//! an uninterrupted run with `STACKINSTALL_TEST_KILL_TRACE` lists every
//! point it reached by name (each program's start and end, each phase of
//! each atomic write: half the temporary written, written but not renamed,
//! renamed but the directory not synced; each named with its step), and a
//! run with `STACKINSTALL_TEST_KILL_AT=NAME` dies at that point. Besides
//! them, the test kills a run a while after a step that runs no program
//! (the real database servers) has started.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::{
    DOMAIN, StepLine, World, full, outcomes, report, servers, started_steps, stderr, step_line,
    walk,
};

/// Where the run was killed.
#[derive(Debug, Clone)]
enum Kill {
    /// At the library's kill point of this name (the reference run's user
    /// name in it replaced by `USER`).
    At(String),
    /// `after_ms` after `step` started.
    During { step: &'static str, after_ms: u64 },
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kill::At(name) => f.write_str(name),
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
        let mut world = full::quick_full_world(&user);
        // Scheduled backups too, so that the `backups` step has work.
        crate::backup::with_key(&mut world);
        world.set_env("STACKINSTALL_BACKUP__SCHEDULE", "daily");
        Self { world, user }
    }

    /// `install --output json` with the world's flags, checked to succeed;
    /// each step's result.
    fn install(&self) -> BTreeMap<String, String> {
        let assert = self.world.install(&["--output", "json"]);
        assert!(
            assert.get_output().status.success(),
            "install failed:\n{}",
            stderr(&assert)
        );
        outcomes(&assert)
    }

    /// Runs `stackinstall ARGS` uninterrupted; the kill points it reached,
    /// in order, the trial's user name in them replaced by `USER`.
    fn trace(&self, args: &[&str]) -> Vec<String> {
        let trace = self.world.dir.path().join("kill-trace");
        let _ = std::fs::remove_file(&trace);
        let assert = self
            .world
            .command()
            .env("STACKINSTALL_TEST_KILL_TRACE", &trace)
            .args(args)
            .assert();
        assert!(
            assert.get_output().status.success(),
            "the traced run failed:\n{}",
            stderr(&assert)
        );
        (read(&trace).lines())
            .map(|name| name.replace(&self.user, "USER"))
            .collect()
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
        if let Kill::At(name) = kill {
            command.env(
                "STACKINSTALL_TEST_KILL_AT",
                name.replace("USER", &self.user),
            );
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
            let mode = std::fs::symlink_metadata(self.world.path(&path))
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let shown = match path.as_str() {
                // The installed copy of the binary (and the plugin's link to it).
                _ if bytes.starts_with(b"\x7fELF") => {
                    format!("<a program of {} bytes>", bytes.len())
                }
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
                | "/var/lib/mongodb/encryption"
                | "/etc/stackinstall/backup.key" => "<random>".into(),
                _ => self.normalize(&text),
            };
            snapshot.insert(format!("file {path}"), format!("{mode:o} {shown}"));
        }
        let state = self.world.record.join("state");
        for path in walk(&state) {
            let name = path.strip_prefix(&state).unwrap().display().to_string();
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
    let mut facts = state.get("facts").cloned();
    // The export directory's device:inode differs from world to world.
    if let Some(identity) = (facts.as_mut())
        .and_then(|facts| facts.get_mut("nfs"))
        .and_then(|nfs| nfs.get_mut("export_directory"))
    {
        *identity = "<device:inode>".into();
    }
    format!("steps {steps:?} facts {facts:?}")
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

/// The steps a killed run's output shows started and not finished; when
/// none (the kill came between steps), the last one started, or `startup`.
fn running_steps(output: &str) -> Vec<String> {
    let started = started_steps(output);
    let finished: BTreeSet<String> = (output.lines().filter_map(step_line))
        .filter_map(|line| match line {
            StepLine::Finished { id, .. } => Some(id),
            StepLine::Started(_) => None,
        })
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

/// A phase of an atomic write in a trace: the file, which write of it
/// (counted over the run), the phase, and the point's name.
struct WritePhase<'a> {
    file: String,
    nth: usize,
    phase: String,
    name: &'a String,
}

/// The point names of the trace that are programs starting or ending, and
/// the phases of atomic writes.
fn classify(trace: &[String]) -> (Vec<&String>, Vec<WritePhase<'_>>) {
    let mut commands = Vec::new();
    let mut writes = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for name in trace {
        let point = name.rsplit_once(" #").map_or(name.as_str(), |(p, _)| p);
        if point.contains(": run ") {
            commands.push(name);
        } else if let Some((_, write)) = point.split_once(": write ") {
            let (file, phase) = write.rsplit_once(": ").unwrap();
            if phase == "torn" {
                *counts.entry(file.to_string()).or_default() += 1;
            }
            let nth = counts.get(file).copied().unwrap_or(1);
            writes.push(WritePhase {
                file: file.to_string(),
                nth,
                phase: phase.to_string(),
                name,
            });
        }
    }
    (commands, writes)
}

/// The programs of a run as kill points: every other one (in the order
/// they started), as it starts and after it did its work, in turn.
fn program_kills(commands: &[&String]) -> Vec<Kill> {
    let starts: Vec<&String> = (commands.iter().copied())
        .filter(|name| name.contains(": before #"))
        .collect();
    (starts.iter().enumerate())
        .map(|(index, start)| (index + 1, start))
        .filter(|(nth, _)| nth % 2 == 1)
        .filter_map(|(nth, start)| match nth % 4 == 3 {
            false => Some(Kill::At(start.to_string())),
            true => {
                let end = start.replacen(": before #", ": after #", 1);
                commands.contains(&&end).then_some(Kill::At(end))
            }
        })
        .collect()
}

/// The kill points, spread over the uninterrupted run's programs and
/// writes, and the moments into the database steps.
fn kill_points(trace: &[String]) -> Vec<Kill> {
    let (commands, writes) = classify(trace);
    let mut kills = program_kills(&commands);
    let last: BTreeMap<&str, usize> = (writes.iter())
        .map(|write| (write.file.as_str(), write.nth))
        .collect();
    const PHASES: [&str; 3] = ["torn", "unrenamed", "renamed"];
    let mut cycle = PHASES.iter().cycle();
    let mut chosen: BTreeMap<(String, usize), &str> = BTreeMap::new();
    for WritePhase { file, nth, .. } in &writes {
        let key = (file.clone(), *nth);
        if chosen.contains_key(&key) {
            continue;
        }
        let wanted = match file.as_str() {
            // Every phase of the first write of the passwords.
            "credentials.toml" => *nth == 1,
            // A checkpoint after nearly every step: the first, every fourth, the last.
            "state.toml" => nth % 4 == 1 || Some(nth) == last.get(file.as_str()),
            _ => *nth == 1,
        };
        if wanted {
            let phase = match file.as_str() {
                "credentials.toml" => "every",
                _ => cycle.next().unwrap(),
            };
            chosen.insert(key, phase);
        }
    }
    for WritePhase {
        file,
        nth,
        phase,
        name,
    } in &writes
    {
        match chosen.get(&(file.clone(), *nth)) {
            Some(&wanted) if wanted == "every" || wanted == phase => {
                kills.push(Kill::At(name.to_string()))
            }
            _ => {}
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

/// What a kill point showed: the steps it landed in (`None`: never
/// reached), whether the runs after it converged, and the servers left
/// running an older configuration (see `stale_servers`).
struct Landed {
    steps: Option<Vec<String>>,
    result: Result<(), String>,
    stale: Vec<String>,
}

/// Kills a run at `kill`, runs again, and checks convergence against
/// `reference`.
fn converge(kill: &Kill, reference: &BTreeMap<String, String>) -> Landed {
    let trial = Trial::new("crash");
    if matches!(kill, Kill::During { .. }) {
        // Fakes that take a little time, so the kill lands in the midst of work.
        trial.world.configure(|config| config.delay_seconds = 0.02);
    }
    let Some(steps) = trial.install_killed(kill) else {
        return Landed {
            steps: None,
            result: Ok(()),
            stale: Vec::new(),
        };
    };
    trial.world.configure(|config| config.delay_seconds = 0.0);
    let result = rerun_converges(&trial, reference);
    Landed {
        steps: Some(steps),
        result,
        stale: stale_servers(&trial),
    }
}

/// The configuration files of the host's servers whose last write came
/// after the last time the server was made to read it (systemd (re)started
/// the server, or the export's bind mount; `exportfs -r` for the NFS
/// exports): it still serves the configuration from before (a kill
/// between the write and the restart, and a re-run that finds the file in
/// place): none may be.
fn stale_servers(trial: &Trial) -> Vec<String> {
    let calls = trial.world.calls();
    let last = |program: &str, verbs: &[&str], units: &[&str]| {
        (calls.iter())
            .filter(|call| call.program == program)
            .filter(|call| verbs.iter().any(|verb| call.args[0].starts_with(verb)))
            .filter(|call| {
                units.is_empty() || call.args.iter().any(|a| units.contains(&a.as_str()))
            })
            .map(|call| call.at)
            .max()
    };
    let restarted = |units: &[&str]| last("systemctl", &["restart", "start", "enable"], units);
    let mut stale = Vec::new();
    for (file, read) in [
        (
            "/etc/mysql/mariadb.conf.d/stackbill.cnf",
            restarted(&["mariadb", "mysql", "mariadb.service", "mysql.service"]),
        ),
        (
            "/etc/mysql/mysql.conf.d/stackbill.cnf",
            restarted(&["mysql", "mariadb", "mysql.service", "mariadb.service"]),
        ),
        ("/etc/mongod.conf", restarted(&["mongod", "mongod.service"])),
        (
            "/etc/systemd/system/data-stackbill.mount",
            restarted(&["data-stackbill.mount"]),
        ),
        ("/etc/exports", last("exportfs", &["-r"], &[])),
    ] {
        let written = std::fs::metadata(trial.world.path(file))
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok());
        let Some(written) = written else { continue };
        if read.is_none_or(|at| u128::from(at) < written.as_nanos()) {
            stale.push(file.to_string());
        }
    }
    stale
}

/// After a kill: a plain re-run succeeds without repairing a password, a
/// third run changes nothing, and the result is the uninterrupted one.
fn rerun_converges(trial: &Trial, reference: &BTreeMap<String, String>) -> Result<(), String> {
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
    let changed: Vec<_> = (trial.install().into_iter())
        .filter(|(_, outcome)| outcome == "changed")
        .collect();
    if !changed.is_empty() {
        return Err(format!("a third run still changed {changed:?}"));
    }
    let snapshot = trial.snapshot();
    if &snapshot != reference {
        return Err(format!(
            "the result differs from an uninterrupted run:\n{}",
            differences(reference, &snapshot)
        ));
    }
    mysql_login(trial)
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
    servers::block_on(servers::mysql_login(&trial.user, password))
        .map(|_| ())
        .map_err(|e| format!("MySQL login with the file's password: {e}"))
}

/// How many points of each class a trace holds: program starts and ends,
/// write phases.
fn census(trace: &[String]) -> String {
    let (commands, writes) = classify(trace);
    format!(
        "{} points reached ({} program starts and ends, {} write phases)",
        trace.len(),
        commands.len(),
        writes.len()
    )
}

#[test]
fn killed_anywhere_a_rerun_converges_to_the_uninterrupted_result() {
    let reference = Trial::new("reference");
    let trace = reference.trace(&["install", "--domain", DOMAIN, "--self-signed"]);
    let expected = reference.snapshot();
    let mut kills = kill_points(&trace);
    // To look into one kind of kill point: only those whose name has this.
    if let Ok(filter) = std::env::var("STACKINSTALL_TEST_KILL_FILTER") {
        kills.retain(|kill| kill.to_string().contains(&filter));
    }

    let results = in_parallel(kills, |kill| converge(kill, &expected));

    // Per step: the kill points that landed while it ran, and how many converged.
    let mut per_step: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut not_reached = Vec::new();
    let mut stale = Vec::new();
    for (kill, landed) in &results {
        let Landed {
            steps,
            result,
            stale: files,
        } = landed;
        let Some(steps) = steps else {
            not_reached.push(kill.to_string());
            continue;
        };
        if !files.is_empty() {
            stale.push(format!("{kill}: {}", files.join(", ")));
        }
        for step in steps {
            let counts = per_step.entry(step.clone()).or_default();
            counts.0 += 1;
            counts.1 += usize::from(result.is_ok());
        }
        if let Err(why) = result {
            failures.push(format!("killed {kill} (in {steps:?}): {why}"));
        }
    }
    let tried = results.len() - not_reached.len();
    let converged = tried - failures.len();
    report(&format!("uninterrupted install: {}", census(&trace)));
    report(&format!(
        "kill points: {tried} tried, {converged} converged ({} never reached: {not_reached:?})",
        not_reached.len()
    ));
    let shown: Vec<String> = (per_step.iter())
        .map(|(step, (tried, converged))| format!("{step} {tried} tried/{converged} converged"))
        .collect();
    report(&format!("kill points per step: {}", shown.join(", ")));
    report(&format!(
        "servers left serving the configuration from before the kill (its file rewritten, the server not made to read it since): {} kill points{}",
        stale.len(),
        stale
            .iter()
            .map(|line| format!("\n  {line}"))
            .collect::<String>()
    ));
    assert!(
        stale.is_empty(),
        "{} kill points left a server on the configuration from before its file was rewritten:\n{}",
        stale.len(),
        stale.join("\n")
    );
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
    let output = crate::support::stdout(&assert);
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
    if trial
        .killed(&["uninstall", "--all", "--yes"], kill)
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
    if servers::block_on(servers::mysql_login(&trial.user, &password)).is_ok() {
        return Err("the MySQL user survived the uninstall".into());
    }
    Ok(true)
}

#[test]
fn an_uninstall_killed_anywhere_finishes_when_run_again() {
    let reference = Trial::new("unreference");
    reference.install();
    let trace = reference.trace(&["uninstall", "--all", "--yes"]);
    let expected = reference.snapshot();
    let (commands, _) = classify(&trace);
    let kills = program_kills(&commands);
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
    report(&format!("uninterrupted uninstall: {}", census(&trace)));
    report(&format!(
        "uninstall kill points: {reached} tried, {} finished when run again",
        reached - failures.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        reached >= 8,
        "only {reached} uninstall kill points were reached"
    );
}
