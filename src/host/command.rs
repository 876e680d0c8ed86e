//! External programs: found on `PATH`, always with a timeout, secrets only on
//! stdin, output captured and kept for the error report. A child gets an
//! allowlisted environment: [`INHERITED`] from ours, plus what the command
//! itself sets (`KUBECONFIG`, `INSTALL_K3S_*`); never `AWS_*` or anything
//! else stackinstall was started with.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::secret::{Secret, redact};

/// Set by the signal handler: the running child is stopped and the run ends.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Keeps a child from being started while an executable file is open for
/// writing. A child is forked with a copy of every descriptor and holds it
/// until its `exec`; a file still open for writing in any process cannot be
/// executed (`ETXTBSY`, "Text file busy"). With steps running side by side,
/// one step writing `helm` while another starts a program would make the
/// first step's own run of `helm` fail at random. Starting a child takes the
/// read side (children start at once, together); writing an executable takes
/// the write side from its open to its close.
static EXEC_GATE: RwLock<()> = RwLock::new(());

/// Held while an executable file is open for writing: no child starts
/// meanwhile (see [`EXEC_GATE`]).
pub(crate) fn writing_executable() -> RwLockWriteGuard<'static, ()> {
    EXEC_GATE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn starting_child() -> RwLockReadGuard<'static, ()> {
    EXEC_GATE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How much of a failed command's stderr is kept for the report.
const STDERR_TAIL_LINES: usize = 20;

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The default timeout of a command that does not set its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The variables a child inherits from stackinstall's environment (besides
/// `LC_*`): what programs need to find things, speak the operator's
/// language and reach the network through the host's proxy.
pub const INHERITED: [&str; 12] = [
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// Whether a child inherits the variable `name` (an `AWS_*` never does).
pub fn inherited(name: &str) -> bool {
    (INHERITED.contains(&name) || name.starts_with("LC_")) && !name.starts_with("AWS_")
}

/// The environment a child starts with: the allowlisted part of ours, then
/// the command's own variables.
fn child_environment(own: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut environment: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| name.to_str().is_some_and(inherited))
        .filter(|(name, _)| !own.iter().any(|(key, _)| name == key.as_str()))
        .collect();
    environment.extend(own.iter().map(|(key, value)| (key.into(), value.into())));
    environment
}

/// One external program to run: program, arguments, optional stdin.
#[derive(Clone)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Stdin>,
    timeout: Duration,
    log_stdout: bool,
    /// Exit statuses that say "not now" (a server still starting): the
    /// command is run again, at most `RETRIES` more times.
    retry_on: &'static [i32],
}

/// How many more times a command is run after a "not now" exit status,
/// and how long after each.
const RETRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum Stdin {
    Text(String),
    Secret(Secret),
}

pub use super::process::Output;

/// A program that could not be run, failed or ran out of time.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` was not found on PATH")]
    NotFound { program: String },
    #[error("could not start `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed with {status}{}", tail_block(stderr_tail))]
    Failed {
        command: String,
        status: String,
        stderr_tail: String,
    },
    #[error("`{command}` did not finish within {}s and was stopped", timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
    #[error("`{command}` was interrupted")]
    Interrupted { command: String },
}

impl CommandError {
    /// The program the command ran (its first word as shown).
    pub fn program(&self) -> &str {
        let shown = match self {
            Self::NotFound { program } => program,
            Self::Spawn { command, .. }
            | Self::Failed { command, .. }
            | Self::TimedOut { command, .. }
            | Self::Interrupted { command } => command,
        };
        shown.split_whitespace().next().unwrap_or_default()
    }
}

fn tail_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        let indented: Vec<String> = tail.lines().map(|line| format!("  | {line}")).collect();
        format!("; its stderr ends with:\n{}", indented.join("\n"))
    }
}

impl Command {
    /// A command running `program`, looked up on `PATH`.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            log_stdout: true,
            retry_on: &[],
        }
    }

    /// Adds one argument. Arguments are shown in plans and logs: never a secret.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments. Arguments are shown in plans and logs: never a secret.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable that carries no secret.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Passes our variable `name` on to this command, when it is set (an
    /// operator's setting the program honours, like `RABBITMQ_NODENAME`).
    pub fn inherit(self, name: &str) -> Self {
        match std::env::var(name) {
            Ok(value) if !name.starts_with("AWS_") => self.env(name, value),
            _ => self,
        }
    }

    /// Feeds `text` (no secret in it) on stdin.
    pub fn stdin_text(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(Stdin::Text(text.into()));
        self
    }

    /// Feeds a secret on stdin: the only way a secret reaches a child.
    pub fn stdin_secret(mut self, secret: Secret) -> Self {
        self.stdin = Some(Stdin::Secret(secret));
        self
    }

    /// Keeps the program's stdout out of the log (only its size is logged):
    /// for output that is large, repeated on every poll, or may hold a
    /// secret (a pod list with its environment).
    pub fn unlogged_stdout(mut self) -> Self {
        self.log_stdout = false;
        self
    }

    /// Stops the program after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the command again (after a pause, at most three more times)
    /// while it exits with one of `statuses`: the program's own word for
    /// "unavailable, try again" (sysexits' 69 and 75 for RabbitMQ's CLI).
    /// Only for commands that may run twice.
    pub fn retry_on(mut self, statuses: &'static [i32]) -> Self {
        self.retry_on = statuses;
        self
    }

    /// The program's name.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments.
    pub fn arguments(&self) -> &[String] {
        &self.args
    }

    /// Runs the command and fails unless it exits with status 0.
    pub fn run(&self) -> Result<Output, CommandError> {
        let output = self.run_unchecked()?;
        if output.success() {
            Ok(output)
        } else {
            Err(self.failure(&output))
        }
    }

    /// The error for `output`, a run of this command that did not succeed.
    pub fn failure(&self, output: &Output) -> CommandError {
        let status = match output.code {
            Some(code) => format!("exit status {code}"),
            None => "a signal".to_string(),
        };
        CommandError::Failed {
            command: self.to_string(),
            status,
            stderr_tail: tail(
                &without_discovery_noise(&redact(&output.stderr)),
                STDERR_TAIL_LINES,
            ),
        }
    }

    /// Runs the command and returns its output whatever its exit status.
    pub fn run_unchecked(&self) -> Result<Output, CommandError> {
        let mut retries = 0;
        let result = loop {
            let result = self.run_once();
            match &result {
                Ok(output)
                    if retries < RETRIES
                        && output
                            .code
                            .is_some_and(|code| self.retry_on.contains(&code)) =>
                {
                    retries += 1;
                    tracing::warn!(
                        target: "command",
                        "`{self}` said to try again (exit {:?}): again in {} s ({retries} of {RETRIES})",
                        output.code,
                        RETRY_PAUSE.as_secs()
                    );
                    std::thread::sleep(RETRY_PAUSE);
                }
                _ => break result,
            }
        };
        if may_change_units(&self.program, &self.args) {
            UNIT_CHANGES.fetch_add(1, Ordering::SeqCst);
        }
        if may_change_cluster(&self.program, &self.args) {
            CLUSTER_CHANGES.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn run_once(&self) -> Result<Output, CommandError> {
        let command = self.to_string();
        tracing::info!(target: "command", "run: {command}");
        super::killpoint::reached(|| {
            super::killpoint::command_point(&self.program, &self.args, "before")
        });
        if let Some(programs) = super::process::entered() {
            return self.run_in_process(&*programs, &command);
        }
        let gate = starting_child();
        let started = self.expression().start();
        drop(gate);
        let handle = started.map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                CommandError::NotFound {
                    program: self.program.clone(),
                }
            } else {
                CommandError::Spawn {
                    command: command.clone(),
                    source,
                }
            }
        })?;
        let timeout = test_timeout_cap(self.timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(output) = handle.try_wait().map_err(|source| CommandError::Spawn {
                command: command.clone(),
                source,
            })? {
                let output = Output {
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                    code: output.status.code(),
                };
                log_output(&command, &output, self.log_stdout);
                super::killpoint::reached(|| {
                    super::killpoint::command_point(&self.program, &self.args, "after")
                });
                return Ok(output);
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                stop(&handle);
                tracing::warn!(target: "command", "interrupted: {command}");
                return Err(CommandError::Interrupted { command });
            }
            if Instant::now() >= deadline {
                stop(&handle);
                tracing::warn!(target: "command", "timed out after {timeout:?}: {command}");
                return Err(CommandError::TimedOut { command, timeout });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Runs the command through a test's programs (see `host::process`).
    fn run_in_process(
        &self,
        programs: &dyn super::process::Programs,
        command: &str,
    ) -> Result<Output, CommandError> {
        let env: Vec<(String, String)> = (child_environment(&self.env).into_iter())
            .map(|(key, value)| {
                let text = |value: std::ffi::OsString| value.to_string_lossy().into_owned();
                (text(key), text(value))
            })
            .collect();
        let stdin = match &self.stdin {
            Some(Stdin::Text(text)) => Some(text.as_bytes()),
            Some(Stdin::Secret(secret)) => Some(secret.expose().as_bytes()),
            None => None,
        };
        let invocation = super::process::Invocation {
            program: &self.program,
            args: &self.args,
            env: &env,
            stdin,
        };
        let output = programs
            .run(&invocation)
            .ok_or_else(|| CommandError::NotFound {
                program: self.program.clone(),
            })?;
        log_output(command, &output, self.log_stdout);
        Ok(output)
    }

    fn expression(&self) -> duct::Expression {
        // A process group of its own: stopping the command stops whatever it
        // started too (a shell's children would otherwise keep its output
        // pipes open, and run on), and a Ctrl-C at the terminal reaches only
        // stackinstall, which stops the command itself.
        let expression = duct::cmd(&self.program, &self.args)
            .before_spawn(|command| {
                std::os::unix::process::CommandExt::process_group(command, 0);
                Ok(())
            })
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .full_env(child_environment(&self.env));
        match &self.stdin {
            Some(Stdin::Text(text)) => expression.stdin_bytes(text.as_bytes()),
            Some(Stdin::Secret(secret)) => expression.stdin_bytes(secret.expose().as_bytes()),
            None => expression.stdin_null(),
        }
    }
}

/// Sleeps for `duration` (a wait loop's pause) in short slices, and ends
/// early, with an error, once the run is interrupted.
pub fn pause(duration: Duration) -> Result<(), CommandError> {
    let deadline = Instant::now() + duration;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(CommandError::Interrupted {
                command: "a pause between two looks".into(),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(POLL_INTERVAL));
    }
}

/// How long a stopped command gets to end on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Stops a running command and every process it started: SIGTERM to its
/// process group, then SIGKILL to what is left after `STOP_GRACE`.
fn stop(handle: &duct::Handle) {
    let signal_group = |signal| {
        for pid in handle.pids() {
            // SAFETY: killpg has no memory preconditions; a group that is
            // already gone gives ESRCH, which is ignored.
            unsafe {
                libc::killpg(pid as libc::pid_t, signal);
            }
        }
    };
    signal_group(libc::SIGTERM);
    let grace = Instant::now() + STOP_GRACE;
    while Instant::now() < grace {
        if matches!(handle.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    signal_group(libc::SIGKILL);
    let _ = handle.kill();
}

/// Debug builds only: `STACKINSTALL_TEST_COMMAND_TIMEOUT_SECONDS` caps every
/// command's timeout, so the hung-command tests need not wait minutes.
/// Release builds read no such variable.
fn test_timeout_cap(timeout: Duration) -> Duration {
    #[cfg(debug_assertions)]
    if let Some(cap) = std::env::var("STACKINSTALL_TEST_COMMAND_TIMEOUT_SECONDS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
    {
        return timeout.min(Duration::from_secs(cap));
    }
    timeout
}

fn log_output(command: &str, output: &Output, log_stdout: bool) {
    tracing::info!(target: "command", "exit {:?}: {command}", output.code);
    if !log_stdout {
        let size = output.stdout.len();
        tracing::debug!(target: "command", "  stdout: {size} bytes, not logged");
    } else {
        for line in output.stdout.lines() {
            tracing::debug!(target: "command", "  stdout | {line}");
        }
    }
    for line in output.stderr.lines() {
        tracing::debug!(target: "command", "  stderr | {line}");
    }
}

/// `text` without client-go's cached-discovery warnings (`memcache.go:
/// couldn't get current server API group list`, logged by kubectl once per
/// retry before its own message), when anything else is left: the line
/// that follows them says the same once. They stay in the log.
fn without_discovery_noise(text: &str) -> String {
    let noise = |line: &&str| line.contains("memcache.go:") && line.contains("API group list");
    let kept: Vec<&str> = text.lines().filter(|line| !noise(line)).collect();
    if kept.iter().all(|line| line.trim().is_empty()) {
        return text.to_string();
    }
    kept.join("\n")
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Programs that change neither a unit nor the cluster: they read the
/// package database, work on the exports, RabbitMQ or an archive, or are
/// stackinstall's own (the credential provider).
const CHANGE_NEITHER: [&str; 6] = [
    "dpkg-query",
    "exportfs",
    "rabbitmqctl",
    "rabbitmq-plugins",
    "tar",
    "stackinstall",
];

/// The program's name: a program a step installed runs by its path.
fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// Whether `program` run with `args` may have started, stopped, enabled or
/// disabled a systemd unit. Not a `systemctl` read, nor a program that
/// works on the cluster, reads the package database or works on the
/// exports; anything else may have (`apt-get`, whose packages' scripts
/// start their services; K3s's install script; `systemctl restart`).
fn may_change_units(program: &str, args: &[String]) -> bool {
    let systemctl_reads = [
        "show",
        "is-active",
        "is-enabled",
        "list-unit-files",
        "list-sockets",
        "list-timers",
    ];
    // The cluster's programs, and K3s's binary (`k3s --version`), manage
    // no unit.
    let leave_units_alone = ["kubectl", "helm", "istioctl", "k3s"];
    let read = match program_name(program) {
        "systemctl" => (args.first()).is_some_and(|verb| systemctl_reads.contains(&verb.as_str())),
        program => leave_units_alone.contains(&program) || CHANGE_NEITHER.contains(&program),
    };
    !read
}

/// Whether `program` run with `args` may have changed the cluster's
/// objects. Not a read of `kubectl` (kubectl(1): `get`, `version`, `logs`,
/// `describe`, `wait`, `rollout status`), `helm` (`history`, `list`, `get`,
/// `status`, `version`, `show`, `pull`, `template`), `istioctl` (`version`,
/// `x precheck`) or `systemctl`, nor a program that works on packages'
/// lists, exports, RabbitMQ or archives; anything else may have (an apply,
/// a Helm upgrade, K3s's install script, `systemctl restart k3s`).
fn may_change_cluster(program: &str, args: &[String]) -> bool {
    let program = program_name(program);
    let verb = args.first().map_or("", String::as_str);
    let second = args.get(1).map_or("", String::as_str);
    let read = match program {
        "kubectl" => {
            matches!(verb, "get" | "version" | "logs" | "describe" | "wait")
                || (verb, second) == ("rollout", "status")
        }
        "helm" => matches!(
            verb,
            "history" | "list" | "get" | "status" | "version" | "show" | "pull" | "template"
        ),
        "istioctl" => verb == "version" || (verb, second) == ("x", "precheck"),
        "systemctl" => !may_change_units(program, args),
        program => CHANGE_NEITHER.contains(&program),
    };
    !read
}

/// How many commands have run that may have changed the cluster: what
/// `kube`'s snapshot compares with the count at its last read.
static CLUSTER_CHANGES: AtomicU64 = AtomicU64::new(0);

/// The count of commands run so far that may have changed the cluster.
pub fn cluster_changes() -> u64 {
    CLUSTER_CHANGES.load(Ordering::SeqCst)
}

/// How many commands have run that may have changed a systemd unit: what
/// `service` compares with the count at its last read of the units.
static UNIT_CHANGES: AtomicU64 = AtomicU64::new(0);

/// The count of commands run so far that may have changed a unit.
pub fn unit_changes() -> u64 {
    UNIT_CHANGES.load(Ordering::SeqCst)
}

/// Quotes an argument the way a shell would need it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = shell_quote(&self.program);
        for arg in &self.args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        match &self.stdin {
            Some(Stdin::Secret(_)) => line.push_str(" <(secret on stdin)"),
            Some(Stdin::Text(_)) => line.push_str(" <(stdin)"),
            None => {}
        }
        f.write_str(&redact(&line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments_and_hides_stdin() {
        let command = Command::new("kubectl")
            .args(["apply", "-f", "-", "it's"])
            .stdin_secret(Secret::new("hunter2-abcdefgh"));
        assert_eq!(
            command.to_string(),
            r"kubectl apply -f - 'it'\''s' <(secret on stdin)"
        );
    }

    #[test]
    fn discovery_warnings_give_way_to_the_message_after_them() {
        let warning = "E1206 04:20:00.000000 42 memcache.go:265] couldn't get current server API group list: connection refused";
        let refused = "The connection to the server 127.0.0.1:6443 was refused";
        let text = format!("{warning}\n{warning}\n{refused}\n");
        assert_eq!(without_discovery_noise(&text), refused);
        // Alone, they are all there is to say.
        assert_eq!(without_discovery_noise(warning), warning);
    }

    #[test]
    fn failure_keeps_status_and_stderr_tail() {
        let command = Command::new("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"]);
        let error = command.run().unwrap_err().to_string();
        assert!(error.contains("exit status 3"), "{error}");
        assert!(error.contains("| two"), "{error}");
    }

    #[test]
    fn missing_program_is_named() {
        let error = Command::new("no-such-program-here").run().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`no-such-program-here` was not found on PATH"
        );
    }

    #[test]
    fn hung_program_is_stopped_at_its_timeout() {
        let command = Command::new("sleep")
            .arg("30")
            .timeout(Duration::from_millis(200));
        let error = command.run().unwrap_err();
        assert!(matches!(error, CommandError::TimedOut { .. }), "{error}");
    }

    #[test]
    fn children_get_only_the_allowlisted_environment() {
        assert!(inherited("PATH") && inherited("LC_ALL") && inherited("HTTPS_PROXY"));
        assert!(!inherited("AWS_SECRET_ACCESS_KEY") && !inherited("STACKINSTALL_ROOT"));
        let output = Command::new("env").env("KUBECONFIG", "/k").run().unwrap();
        let names: Vec<&str> = output
            .stdout
            .lines()
            .filter_map(|line| line.split('=').next())
            .collect();
        assert!(names.contains(&"KUBECONFIG"), "{names:?}");
        assert!(
            names
                .iter()
                .all(|name| inherited(name) || *name == "KUBECONFIG"),
            "{names:?}"
        );
    }

    #[test]
    fn secret_reaches_stdin() {
        let output = Command::new("cat")
            .stdin_secret(Secret::new("s3cret-on-stdin-only"))
            .run()
            .unwrap();
        assert_eq!(output.stdout, "s3cret-on-stdin-only");
    }
}

#[cfg(test)]
mod exec_gate_tests {
    use super::*;
    use std::sync::Arc;

    /// Steps side by side: one writes a program and runs it while another
    /// keeps starting children. Without the gate a forked child holds the
    /// program's write descriptor until its exec, and the run fails with
    /// "Text file busy" within a few hundred rounds.
    #[test]
    fn a_program_just_written_runs_while_other_children_start() {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let starters: Vec<_> = (0..2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        Command::new("true").run().unwrap();
                    }
                })
            })
            .collect();
        let mut busy = 0;
        for round in 0..400 {
            let program = dir.path().join(format!("program-{}", round % 4));
            let script = format!("#!/bin/sh\necho {round}\n");
            crate::host::fs::write_atomic(&program, script.as_bytes(), 0o755).unwrap();
            match Command::new(program.display().to_string()).run() {
                Ok(output) => assert_eq!(output.stdout.trim(), round.to_string()),
                Err(CommandError::Spawn { source, .. })
                    if source.raw_os_error() == Some(libc::ETXTBSY) =>
                {
                    busy += 1
                }
                Err(error) => panic!("round {round}: {error}"),
            }
        }
        stop.store(true, Ordering::SeqCst);
        for starter in starters {
            starter.join().unwrap();
        }
        assert_eq!(
            busy, 0,
            "{busy} of 400 runs of a just-written program were refused as busy"
        );
    }
}

#[cfg(test)]
mod in_process_tests {
    use super::super::process::{Invocation, Processes, Programs};
    use super::*;
    use std::sync::Arc;

    struct Echo;

    impl Programs for Echo {
        fn run(&self, invocation: &Invocation) -> Option<Output> {
            (invocation.program == "echo").then(|| Output {
                stdout: format!("{}\n", invocation.args.join(" ")),
                stderr: String::new(),
                code: Some(0),
            })
        }
    }

    #[test]
    fn an_entered_host_runs_its_programs_in_process() {
        let processes = Processes::Test(Arc::new(Echo));
        {
            let _entered = processes.enter();
            let output = Command::new("echo").args(["in", "process"]).run().unwrap();
            assert_eq!(output.stdout, "in process\n");
            let missing = Command::new("no-such-program").run().unwrap_err();
            assert!(
                missing.to_string().contains("was not found on PATH"),
                "{missing}"
            );
        }
        // Left: the machine's programs again.
        let output = Command::new("true").run().unwrap();
        assert_eq!(output.code, Some(0));
    }
}
