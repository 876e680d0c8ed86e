//! The install, one step per file, in order. [`all`] is the one list.
//!
//! A step looks at the host without changing it and says what is left to do
//! (its actions, which are also its plan), applies those actions, verifies
//! the result, and knows how to reverse itself for uninstall.

pub mod credentials;
pub mod gateway;
pub mod helm;
pub mod istio;
pub mod k3s;
pub mod mongodb;
pub mod mysql;
pub mod namespace;
pub mod nfs;
pub mod packages;
pub mod preflight;
pub mod rabbitmq;
pub mod registry;
pub mod release;
pub mod services;
pub mod storage;
pub mod summary;
pub mod tls;
pub mod wait;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::error::StepError;

use crate::context::{Context, Removal};
use crate::host::{self, Command};
use crate::state::Fingerprint;

/// Every step, in install order.
pub fn all() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(preflight::Preflight),
        Box::new(credentials::CredentialsStep),
        Box::new(k3s::K3s),
        Box::new(helm::Helm),
        Box::new(istio::Istio),
        Box::new(packages::Packages),
        Box::new(mysql::Mysql),
        Box::new(mongodb::Mongodb),
        Box::new(rabbitmq::Rabbitmq),
        Box::new(nfs::Nfs),
        Box::new(storage::Storage),
        Box::new(namespace::Namespace),
        Box::new(registry::Registry),
        Box::new(tls::Tls),
        Box::new(release::Release),
        Box::new(gateway::Gateway),
        Box::new(wait::Wait),
        Box::new(summary::Summary),
    ]
}

/// Which switch can skip a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Always part of the install.
    Core,
    /// K3s, Helm, Istio: skipped by `--skip-infra`.
    Infra,
    /// Host databases and NFS: skipped by `--skip-db`.
    Database,
}

/// One install step. Steps are shared by the lanes of a run, so `Sync`.
pub trait Step: Sync {
    /// The checkpoint key, equal to the file name under `src/steps/`.
    fn id(&self) -> &'static str;

    /// What the step does, in a few words.
    fn title(&self) -> &'static str;

    /// Which switch can skip it.
    fn group(&self) -> Group {
        Group::Core
    }

    /// Whether this is the step that checks the host and the inputs before
    /// anything changes: `--only` and `--from` never leave it out, and a
    /// look of it that fails stops the plan and the run.
    fn checks_inputs(&self) -> bool {
        false
    }

    /// Whether the step works for the steps that need it (`packages`), and
    /// so is part of a run exactly when one of them is, whatever `--only`
    /// and `--from` name.
    fn serves_dependents(&self) -> bool {
        false
    }

    /// The Debian packages the step's server comes in (found without
    /// running anything); the `packages` step installs those of every step
    /// of the run in one apt transaction. None by default.
    fn packages(&self, _context: &Context) -> Result<Option<services::ServerPackages>, StepError> {
        Ok(None)
    }

    /// What must be in place before the step's packages install, asked only
    /// while one of them is missing: apt sources (MongoDB's repository and
    /// key), or a file the server reads at the first start its package's
    /// install gives it (RabbitMQ's plugins). None by default.
    fn before_install(&self, _context: &Context) -> Result<Vec<Action>, StepError> {
        Ok(Vec::new())
    }

    /// Steps that run on every install, whatever their checkpoint says.
    fn always_runs(&self) -> bool {
        false
    }

    /// The steps that must have finished (done, or left out) before this
    /// one starts: the edges of the step graph. Steps that need nothing of
    /// each other run side by side (`--jobs`). Each comes earlier in
    /// [`all`], and the steps of [`Step::depends_on`] are among them or
    /// theirs.
    fn needs(&self) -> &'static [&'static str];

    /// Steps whose inputs are also this step's inputs: when theirs change,
    /// this step runs again too.
    fn depends_on(&self) -> &'static [&'static str] {
        &[]
    }

    /// The release files this step downloads and runs as root, each with
    /// what it is checked against (`[downloads] require_pins` refuses the
    /// run when one has no pin).
    fn downloads(&self, _context: &Context) -> Vec<host::download::ReleaseBinary> {
        Vec::new()
    }

    /// Adds the inputs this step depends on (versions, domain, certificate
    /// hash, profile values) to its fingerprint.
    fn inputs(&self, _context: &Context, _fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        Ok(())
    }

    /// The files the step writes or applies, rendered from `config` for
    /// review (`stackinstall render`), as (file name, contents); never a
    /// secret. None by default.
    fn rendered(
        &self,
        _config: &crate::config::Config,
    ) -> Result<Vec<(String, String)>, crate::render::RenderError> {
        Ok(Vec::new())
    }

    /// Looks at the host without changing anything and returns what is left
    /// to do: an empty list when the step's work is already there.
    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError>;

    /// Records what the host was like before the step changes it (whether
    /// a server or a binary was already there), for uninstall. Called once,
    /// just before the actions of a look that changes something are
    /// carried out; nothing by default.
    fn before_changes(&self, _context: &mut Context) -> Result<(), StepError> {
        Ok(())
    }

    /// Checks, read-only, that the step's result is there and works.
    fn verify(&self, context: &Context) -> Result<(), StepError>;

    /// The actions that reverse the step, for uninstall, within the scope
    /// of `context.uninstall`; nothing by default. Read-only, like `look`.
    fn undo(&self, _context: &Context) -> Result<Vec<Action>, StepError> {
        Ok(Vec::new())
    }

    /// Which uninstall switch takes the step's work and its checkpoint
    /// away; by default the one of its group.
    fn removal(&self) -> Removal {
        match self.group() {
            Group::Core => Removal::Default,
            Group::Infra => Removal::Infra,
            Group::Database => Removal::Databases,
        }
    }

    /// What an uninstall removes of a step whose work it keeps (the PVCs
    /// of a namespace kept without `--delete-namespace`); nothing by default.
    fn undo_kept(&self, _context: &Context) -> Result<Vec<Action>, StepError> {
        Ok(Vec::new())
    }

    /// Whether the step's undo logs in with a password of the credentials
    /// file: the file stays until such a step is undone.
    fn undo_needs_credentials(&self) -> bool {
        false
    }

    /// What the step's undo could not remove and the operator should know
    /// of (what K3s's own uninstall leaves behind), once its work is gone.
    fn leftovers(&self, _context: &Context) -> Vec<String> {
        Vec::new()
    }
}

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
    /// Something printed for the operator.
    Report,
}

/// What an action does when it is carried out: called once with the
/// run's context; returns whether it changed anything.
pub type Call = Box<dyn FnOnce(&mut Context) -> Result<bool, StepError>>;

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
    Symlink {
        link: PathBuf,
        target: PathBuf,
    },
    Call(Call),
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

    /// Writes `contents` to the host file `path` (shown as `shown_path`).
    pub fn write(path: PathBuf, shown_path: &Path, contents: Vec<u8>, mode: u32) -> Self {
        let detail = format!("write {} (mode {mode:04o})", shown_path.display());
        let operation = Operation::Write {
            path,
            contents,
            mode,
        };
        Self::new(ActionKind::File, detail, operation)
    }

    /// Removes the host file `path` (shown as `shown_path`).
    pub fn remove(path: PathBuf, shown_path: &Path) -> Self {
        let detail = format!("remove {}", shown_path.display());
        Self::new(ActionKind::File, detail, Operation::Remove(path))
    }

    /// Copies the running stackinstall to the host path `path` (shown as
    /// `shown_path`), root:root 0755, for units that run it as root.
    pub fn install_running_binary(path: PathBuf, shown_path: &Path) -> Self {
        let detail = format!(
            "install this stackinstall as {} (root:root, mode 0755): what the units run",
            shown_path.display()
        );
        Self::new(
            ActionKind::File,
            detail,
            Operation::InstallRunningBinary(path),
        )
    }

    /// Makes the host path `link` (shown as `shown_link`) a symbolic link
    /// to `target`.
    pub fn symlink(link: PathBuf, shown_link: &Path, target: PathBuf) -> Self {
        let detail = format!("link {} -> {}", shown_link.display(), target.display());
        Self::new(
            ActionKind::File,
            detail,
            Operation::Symlink { link, target },
        )
    }

    /// A change of `kind`, shown as `detail`, that `operation` makes.
    pub fn call(
        kind: ActionKind,
        detail: impl Into<String>,
        operation: impl FnOnce(&mut Context) -> Result<bool, StepError> + 'static,
    ) -> Self {
        Self::new(kind, detail.into(), Operation::Call(Box::new(operation)))
    }

    /// One operation shown as several plan lines (each a change of `kind`);
    /// none when `lines` is empty.
    pub fn call_lines(
        kind: ActionKind,
        lines: Vec<String>,
        operation: impl FnOnce(&mut Context) -> Result<bool, StepError> + 'static,
    ) -> Option<Self> {
        (!lines.is_empty()).then(|| Self {
            kind,
            lines,
            operation: Operation::Call(Box::new(operation)),
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

    /// Whether carrying it out changes the host.
    pub fn changes_host(&self) -> bool {
        !matches!(self.operation, Operation::Nothing)
    }

    /// Carries it out; returns whether it changed anything.
    pub fn perform(self, context: &mut Context) -> Result<bool, StepError> {
        match self.operation {
            Operation::Nothing => Ok(false),
            Operation::Call(operation) => operation(context),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The list is an order of the graph: every step a step needs, or
    /// takes inputs from, comes before it.
    #[test]
    fn the_list_is_an_order_of_the_step_graph() {
        let steps = all();
        let position = |id: &str| steps.iter().position(|s| s.id() == id);
        let mut edges = 0;
        for (at, step) in steps.iter().enumerate() {
            for need in step.needs() {
                let before = position(need).unwrap_or_else(|| panic!("{need} is a step"));
                assert!(before < at, "{} needs {need}, which comes later", step.id());
                edges += 1;
            }
            let mut reached: Vec<&str> = step.needs().to_vec();
            let mut index = 0;
            while let Some(id) = reached.get(index).copied() {
                let needed = &steps[position(id).unwrap()];
                for need in needed.needs() {
                    if !reached.contains(need) {
                        reached.push(need);
                    }
                }
                index += 1;
            }
            for input in step.depends_on() {
                assert!(
                    reached.contains(input),
                    "{} takes inputs from {input} without needing it",
                    step.id()
                );
            }
        }
        println!("{} steps, {edges} edges in the step graph", steps.len());
    }
}
