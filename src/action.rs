//! The changes a step makes, as typed values. A step's look returns
//! [`Action`]s; a plan shows them and a run carries them out, so what is
//! shown is derived from what is done (rustup's `transaction.rs`): a program
//! with its arguments, a file with its path and mode, or a step's own
//! [`Change`] (SQL statements, a Helm upgrade, a wait) whose plan lines come
//! from the same data its `apply` uses. A check is the only action that
//! changes nothing, and nothing that changes anything is shown as one.

use std::path::PathBuf;

use serde::Serialize;

use crate::context::Context;
use crate::error::StepError;
use crate::host::download::ReleaseBinary;
use crate::host::{self, Command, HostPath};

/// What sort of change an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// A check that was made; changes nothing.
    Check,
    /// An external program run.
    Command,
    /// A file written or removed.
    File,
    /// Packages installed or removed.
    Package,
    /// A service started, restarted or stopped.
    Service,
    /// SQL or database commands.
    Database,
    /// Objects created in Kubernetes.
    Kubernetes,
    /// A fact recorded in the state file (for uninstall).
    State,
    /// A wait for something to become ready, with its limit.
    Wait,
    /// Something printed for the operator.
    Report,
}

impl ActionKind {
    /// The word a plan shows for it (`command`, `file`, ...).
    pub fn word(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Command => "command",
            Self::File => "file",
            Self::Package => "package",
            Self::Service => "service",
            Self::Database => "database",
            Self::Kubernetes => "kubernetes",
            Self::State => "state",
            Self::Wait => "wait",
            Self::Report => "report",
        }
    }
}

/// Who owns a file: the ids, and the names a plan shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub ids: (u32, u32),
    /// `user:group`.
    pub name: &'static str,
}

/// A step's own change: what it is made of is what it shows. `lines` and
/// `apply` read the same fields, so the plan cannot say one thing while
/// the run does another.
pub trait Change {
    /// What sort of change it is; never [`ActionKind::Check`].
    fn kind(&self) -> ActionKind;

    /// What a plan shows of it, one line each (never a secret).
    fn lines(&self) -> Vec<String>;

    /// Carries it out; returns whether it changed anything.
    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError>;
}

/// One concrete change a step would make, and the operation that makes it:
/// the plan and the run are the same object. Its lines are what a plan
/// shows (usually one: commands with their arguments, files with their
/// target paths, never a secret); an action of several lines (the SQL
/// statements of a provisioning) runs as one operation.
pub struct Action {
    kind: ActionKind,
    lines: Vec<String>,
    operation: Operation,
}

enum Operation {
    Nothing,
    Run(Command),
    Write {
        path: PathBuf,
        contents: Vec<u8>,
        mode: u32,
    },
    Remove(PathBuf),
    InstallRunningBinary(PathBuf),
    InstallRelease {
        release: Box<ReleaseBinary>,
        binary: &'static str,
    },
    MakeDirectory {
        path: PathBuf,
        mode: u32,
        owner: Owner,
    },
    SetModeAndOwner {
        path: PathBuf,
        mode: u32,
        owner: Owner,
    },
    Symlink {
        link: PathBuf,
        target: PathBuf,
    },
    Change(Box<dyn Change>),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Action")
            .field("kind", &self.kind)
            .field("lines", &self.lines)
            .field("changes_host", &self.changes_host())
            .finish()
    }
}

impl Action {
    fn new(kind: ActionKind, detail: String, operation: Operation) -> Self {
        Self {
            kind,
            lines: vec![detail],
            operation,
        }
    }

    /// A check already made while looking; applying it does nothing.
    pub fn check(detail: impl Into<String>) -> Self {
        Self::new(ActionKind::Check, detail.into(), Operation::Nothing)
    }

    /// Runs `command`.
    pub fn run(command: Command) -> Self {
        Self::run_as(ActionKind::Command, command)
    }

    /// Runs `command`, shown as a change of `kind` (a service started, a
    /// package purged).
    pub fn run_as(kind: ActionKind, command: Command) -> Self {
        Self::new(kind, command.to_string(), Operation::Run(command))
    }

    /// Runs `command`, shown with `note` after it in brackets.
    pub fn run_noting(command: Command, note: &str) -> Self {
        let detail = format!("{command} ({note})");
        Self::new(ActionKind::Command, detail, Operation::Run(command))
    }

    /// Writes `contents` to the host file `path`.
    pub fn write(path: HostPath, contents: Vec<u8>, mode: u32) -> Self {
        let detail = format!("write {} (mode {mode:04o})", path.shown().display());
        let operation = Operation::Write {
            path: path.into_reached(),
            contents,
            mode,
        };
        Self::new(ActionKind::File, detail, operation)
    }

    /// Removes the host file `path`.
    pub fn remove(path: HostPath) -> Self {
        let detail = format!("remove {}", path.shown().display());
        Self::new(
            ActionKind::File,
            detail,
            Operation::Remove(path.into_reached()),
        )
    }

    /// Copies the running stackinstall to the host path `path`, root:root
    /// 0755, for units that run it as root.
    pub fn install_running_binary(path: HostPath) -> Self {
        let detail = format!(
            "install this stackinstall as {} (root:root, mode 0755): what the units run",
            path.shown().display()
        );
        Self::new(
            ActionKind::File,
            detail,
            Operation::InstallRunningBinary(path.into_reached()),
        )
    }

    /// Downloads `release`, checks it, and installs its binary at the host
    /// path `binary`, mode 0755.
    pub fn install_release(release: ReleaseBinary, binary: &'static str) -> Self {
        let detail = format!(
            "download {} ({}), install {binary} (mode 0755)",
            release.url,
            release.check()
        );
        let release = Box::new(release);
        Self::new(
            ActionKind::File,
            detail,
            Operation::InstallRelease { release, binary },
        )
    }

    /// Makes the directory `path` with `mode` and `owner`, when it is
    /// missing.
    pub fn make_directory(path: HostPath, mode: u32, owner: Owner) -> Self {
        let detail = format!(
            "make {} (owner {}, mode {mode:04o})",
            path.shown().display(),
            owner.name
        );
        let path = path.into_reached();
        Self::new(
            ActionKind::File,
            detail,
            Operation::MakeDirectory { path, mode, owner },
        )
    }

    /// Gives `path` (now with `found`) `mode` and `owner`; `why` says what
    /// asks for it.
    pub fn set_mode_and_owner(
        path: HostPath,
        found: &str,
        (mode, owner): (u32, Owner),
        why: &str,
    ) -> Self {
        let detail = format!(
            "change {} from {found} to owner {}, mode {mode:04o} ({why})",
            path.shown().display(),
            owner.name
        );
        let path = path.into_reached();
        Self::new(
            ActionKind::File,
            detail,
            Operation::SetModeAndOwner { path, mode, owner },
        )
    }

    /// Makes the host path `link` a symbolic link to `target`.
    pub fn symlink(link: HostPath, target: PathBuf) -> Self {
        let detail = format!("link {} -> {}", link.shown().display(), target.display());
        let link = link.into_reached();
        Self::new(
            ActionKind::File,
            detail,
            Operation::Symlink { link, target },
        )
    }

    /// A step's own change; `None` when it shows no line (nothing to do).
    pub fn change(change: impl Change + 'static) -> Option<Self> {
        let lines = change.lines();
        let kind = change.kind();
        debug_assert!(kind != ActionKind::Check, "a change is never a check");
        (!lines.is_empty()).then(|| Self {
            kind,
            lines,
            operation: Operation::Change(Box::new(change)),
        })
    }

    /// What sort of change it is.
    pub fn kind(&self) -> ActionKind {
        self.kind
    }

    /// What a plan shows of it, one line each.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Its lines as one text.
    pub fn detail(&self) -> String {
        self.lines.join("; ")
    }

    /// Whether carrying it out changes anything (everything but a check).
    pub fn changes_host(&self) -> bool {
        !matches!(self.operation, Operation::Nothing)
    }

    /// Whether it removes a file that is not there (nor a link of that
    /// name): an uninstall neither shows nor reports it.
    pub fn removes_nothing(&self) -> bool {
        matches!(&self.operation, Operation::Remove(path) if !host::fs::exists(path))
    }

    /// Carries it out; returns whether it changed anything.
    pub fn perform(self, context: &mut Context) -> Result<bool, StepError> {
        match self.operation {
            Operation::Nothing => Ok(false),
            Operation::Change(change) => change.apply(context),
            Operation::Run(command) => command.run().map(|_| true).map_err(Into::into),
            Operation::Write {
                path,
                contents,
                mode,
            } => {
                let private = mode & 0o077 == 0;
                if let Some(parent) = path.parent().filter(|p| private && !p.exists()) {
                    host::fs::ensure_dir(parent, 0o700)?;
                }
                host::fs::ensure_file(&path, &contents, mode).map_err(Into::into)
            }
            Operation::Remove(path) => host::fs::remove_file(&path).map_err(Into::into),
            Operation::InstallRunningBinary(path) => {
                host::installed::ensure_installed(&path).map_err(Into::into)
            }
            Operation::InstallRelease { release, binary } => {
                context.install_release(&release, binary).map(|()| true)
            }
            Operation::MakeDirectory { path, mode, owner } => {
                let created = host::fs::ensure_dir(&path, mode)?;
                if created {
                    host::fs::set_mode_and_owner(&path, mode, Some(owner.ids))?;
                }
                Ok(created)
            }
            Operation::SetModeAndOwner { path, mode, owner } => {
                host::fs::set_mode_and_owner(&path, mode, Some(owner.ids))?;
                Ok(true)
            }
            Operation::Symlink { link, target } => {
                host::fs::ensure_symlink(&link, &target).map_err(Into::into)
            }
        }
    }
}

/// Carries out `actions` in order; returns whether any changed anything.
pub fn perform_all(context: &mut Context, actions: Vec<Action>) -> Result<bool, StepError> {
    let mut changed = false;
    for action in actions {
        changed |= action.perform(context)?;
    }
    Ok(changed)
}

/// Records a fact of the host in the state file, for uninstall: before the
/// step changes what the fact is about. It changes no host file, so it
/// does not count as a change of the step.
pub struct Record(pub crate::state::Fact);

impl Change for Record {
    fn kind(&self) -> ActionKind {
        ActionKind::State
    }

    fn lines(&self) -> Vec<String> {
        vec![format!("record in the state that {}", self.0)]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        context.record(&self.0).map(|()| false)
    }
}

impl Action {
    /// Records `fact` in the state (see [`Record`]).
    pub fn record(fact: crate::state::Fact) -> Self {
        Self::change(Record(fact)).expect("a record has a line")
    }

    /// Puts `record` before `actions` when any of them changes the host:
    /// what was there is written down before it changes.
    pub fn record_first(actions: &mut Vec<Action>, record: Option<crate::state::Fact>) {
        if let Some(fact) = record
            && actions.iter().any(Action::changes_host)
        {
            actions.insert(0, Self::record(fact));
        }
    }
}

/// Waits until a condition holds, at most `limit`; changes nothing, and
/// fails naming what is not there when the time is up.
pub struct WaitUntil {
    /// What is waited for, in words (`this host's node is Ready`).
    pub condition: String,
    pub limit: std::time::Duration,
    /// The wait itself: polls, shows progress, fails at the limit.
    pub wait: fn(&Context, std::time::Duration) -> Result<(), StepError>,
}

impl Change for WaitUntil {
    fn kind(&self) -> ActionKind {
        ActionKind::Wait
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "wait until {} (at most {})",
            self.condition,
            seconds_in_words(self.limit)
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        (self.wait)(context, self.limit).map(|()| false)
    }
}

impl Action {
    /// Waits until `condition` holds (see [`WaitUntil`]).
    pub fn wait_until(
        condition: impl Into<String>,
        limit: std::time::Duration,
        wait: fn(&Context, std::time::Duration) -> Result<(), StepError>,
    ) -> Self {
        let condition = condition.into();
        Self::change(WaitUntil {
            condition,
            limit,
            wait,
        })
        .expect("a wait has a line")
    }
}

/// `90 s`, `10 min`, `1 h 30 min`.
pub fn seconds_in_words(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, seconds) => format!("{seconds} s"),
        (0, minutes, 0) => format!("{minutes} min"),
        (0, minutes, seconds) => format!("{minutes} min {seconds} s"),
        (hours, 0, 0) => format!("{hours} h"),
        (hours, minutes, _) => format!("{hours} h {minutes} min"),
    }
}
