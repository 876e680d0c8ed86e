//! The fake programs of stackinstall's tests, as one multi-call binary.
//!
//! A test world links `bin/kubectl`, `bin/helm`, ... to the binary
//! `stackinstall-fake`; started as one of them (by the name it was called
//! with), it records the call (program, argv, stdin, the whole environment)
//! in the world's call log, then does what that program does to the
//! world's state: the fake cluster's objects, Helm's releases, systemd's
//! units, dpkg's packages, all as files under `record/state/`. A call costs
//! about a millisecond.
//!
//! Each fake is modelled on the real program (its man page or source is
//! named in its module) for what stackinstall and the tests use of it, and
//! refuses what the real one refuses: an unknown flag or command is an
//! error, in the words of the real program. What a test wants beyond that
//! (a program that hangs, fails or takes a while) is a [`config::Rule`]
//! the world writes, not code.
//!
//! The library part is shared with the tests: the world's configuration
//! ([`config`]), the call log ([`record`]), the cluster's objects
//! ([`store`]), and `rabbitmqctl` through the management API
//! ([`programs::rabbitmq`]), which the tests also use to set up RabbitMQ.

// The fakes are the machine the binary under test runs against: they
// write their own state and run programs, which `clippy.toml` keeps to
// `src/host/` in the product.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

pub mod config;
pub mod flags;
pub mod programs;
pub mod record;
pub mod store;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Action, Config};
use record::Call;

/// The programs the binary can be.
pub const PROGRAMS: &[&str] = &[
    "kubectl",
    "istioctl",
    "helm",
    "systemctl",
    "dpkg-query",
    "apt-get",
    "exportfs",
    "k3s",
    "k3s-install",
    "k3s-uninstall",
    "rabbitmqctl",
    "rabbitmq-plugins",
    "ip",
    "iptables-save",
];

/// One call of a fake, as a program sees it.
pub struct Fake {
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    /// The program's environment.
    pub env: BTreeMap<String, String>,
    /// The world's record directory.
    pub record: PathBuf,
    /// Where the fakes keep their state: `record/state`.
    pub state: PathBuf,
    pub config: Config,
}

/// What a fake call printed and how it ended.
#[derive(Debug, Default)]
pub struct Reply {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    /// Exit 0, `stdout` printed.
    pub fn out(stdout: impl Into<String>) -> Self {
        Self {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// Exit `code`, `stderr` printed.
    pub fn fail(code: i32, stderr: impl Into<String>) -> Self {
        Self {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    /// Exit 0, nothing printed.
    pub fn ok() -> Self {
        Self::default()
    }
}

impl Fake {
    /// `path` (an absolute host path) under the world's root.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.config.host_path(path)
    }

    /// The standard input as text.
    pub fn stdin_text(&self) -> String {
        String::from_utf8_lossy(&self.stdin).into_owned()
    }
}

/// Runs the binary as the program it was started as; its exit code.
pub fn main() -> i32 {
    if let Some(code) = programs::rabbitmq::deferred_import() {
        return code;
    }
    let mut argv = std::env::args();
    let argv0 = argv.next().unwrap_or_default();
    let args: Vec<String> = argv.collect();
    let program = Path::new(&argv0)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !PROGRAMS.contains(&program.as_str()) {
        eprintln!(
            "stackinstall-fake: started as `{program}`; link it as one of: {}",
            PROGRAMS.join(", ")
        );
        return 2;
    }
    let Some(bin) = bin_dir(&argv0) else {
        eprintln!("stackinstall-fake: `{argv0}` is not in a directory on PATH");
        return 2;
    };
    let record = bin.parent().unwrap_or(Path::new("/")).join("record");
    let mut stdin = Vec::new();
    if !std::io::stdin().is_terminal() {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let reply = call(&record, &program, args, stdin, std::env::vars().collect());
    let _ = std::io::stdout().write_all(reply.stdout.as_bytes());
    let _ = std::io::stderr().write_all(reply.stderr.as_bytes());
    reply.code
}

/// One call of the fake `program` in the world whose record directory is
/// `record`: recorded in its call log, then done. What the binary does for
/// a program it was started as, and what a test's in-process host calls
/// (no process at all; a `Hang` rule is not for those).
pub fn call(
    record: &Path,
    program: &str,
    args: Vec<String>,
    stdin: Vec<u8>,
    env: Vec<(String, String)>,
) -> Reply {
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let logged = Call {
        program: program.to_string(),
        args: args.clone(),
        stdin: String::from_utf8_lossy(&stdin).into_owned(),
        env: env.clone(),
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
    };
    if let Err(error) = record::append(record, &logged) {
        return Reply::fail(
            2,
            format!(
                "stackinstall-fake: cannot record in {}: {error}\n",
                record.display()
            ),
        );
    }
    let fake = Fake {
        program: program.to_string(),
        args,
        stdin,
        env,
        state: record.join("state"),
        record: record.to_path_buf(),
        config: Config::load(record),
    };
    let _ = std::fs::create_dir_all(&fake.state);
    run(&fake)
}

/// The directory the program was started from: `argv[0]`'s own, or the
/// first directory on PATH that holds a program of that name (where
/// `execvp` found it).
fn bin_dir(argv0: &str) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Path::new(argv0).parent().map(Path::to_path_buf);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join(argv0).is_file())
}

/// Does the call: the world's delay and rules first, then the program.
fn run(fake: &Fake) -> Reply {
    if fake.config.delay_seconds > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(fake.config.delay_seconds));
    }
    let mut after = None;
    if let Some(action) = rule_for(fake) {
        match action {
            Action::Sleep { seconds } => std::thread::sleep(Duration::from_secs_f64(seconds)),
            Action::Hang => hang(fake),
            Action::Fail { code, stderr } => return Reply::fail(code, stderr),
            Action::StopK3sAfter => after = Some(Action::StopK3sAfter),
        }
    }
    if let Some(passthrough) = fake.config.passthrough.get(&fake.program) {
        return programs::passthrough(fake, passthrough);
    }
    // Helm takes the lock itself: an upgrade lets go of it while it works.
    let _lock = (fake.program != "helm").then(|| lock_state(fake));
    let reply = programs::run(fake);
    if after == Some(Action::StopK3sAfter) {
        programs::systemctl::Units::load(fake).stop_k3s(fake);
    }
    reply
}

/// The action of the first rule that applies to this call. A `once` rule
/// is marked fired (in the record directory, not the state).
fn rule_for(fake: &Fake) -> Option<Action> {
    for (index, rule) in fake.config.rules.iter().enumerate() {
        if !rule.matches(&fake.program, &fake.args) {
            continue;
        }
        if let Some(file) = &rule.while_file
            && !fake.state.join(file).exists()
        {
            continue;
        }
        if rule.once {
            let marker = fake.record.join(format!("rule-{index}.fired"));
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&marker)
                .is_err()
            {
                continue;
            }
        }
        return Some(rule.action.clone());
    }
    None
}

/// Never returns: a program hung on a child of its own, until it is killed.
fn hang(fake: &Fake) -> ! {
    let dir = fake.state.join("hung");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(format!("{}.pid", fake.program)),
        std::process::id().to_string(),
    );
    let child = std::process::Command::new("sleep").arg("3600").spawn();
    if let Ok(mut child) = child {
        let _ = std::fs::write(
            dir.join(format!("{}.child.pid", fake.program)),
            child.id().to_string(),
        );
        let _ = child.wait();
    }
    std::process::exit(1)
}

/// The world's state lock, and the shared cluster's when there is one.
pub type StateLock = (std::fs::File, Option<std::fs::File>);

/// Holds the world's state lock: one fake call changes the state at a time.
pub fn lock_state(fake: &Fake) -> Option<StateLock> {
    let file = std::fs::File::create(fake.record.join("state.lock")).ok()?;
    file.lock().ok()?;
    // Worlds sharing a cluster change it one call at a time too.
    let shared = fake.config.cluster_state.as_ref().and_then(|dir| {
        let _ = std::fs::create_dir_all(dir);
        let file = std::fs::File::create(dir.join("cluster.lock")).ok()?;
        file.lock().ok()?;
        Some(file)
    });
    Some((file, shared))
}
