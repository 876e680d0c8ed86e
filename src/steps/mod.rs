//! The install, one step per file, in order. [`all`] is the one list.
//!
//! A step looks at the host without changing it and says what is left to do
//! (its actions, which are also its plan), applies those actions, verifies
//! the result, and knows how to reverse itself for uninstall.

pub mod backups;
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

pub use crate::action::{Action, ActionKind, Change};
pub use crate::error::StepError;
pub use crate::step_id::StepId;

use crate::config::Config;
use crate::context::{Context, Removal};
use crate::host;
use crate::render::RenderError;
use crate::state::Fingerprint;

impl StepId {
    /// The step itself.
    pub fn step(self) -> &'static dyn Step {
        match self {
            Self::Preflight => &preflight::Preflight,
            Self::Credentials => &credentials::CredentialsStep,
            Self::K3s => &k3s::K3s,
            Self::Helm => &helm::Helm,
            Self::Istio => &istio::Istio,
            Self::Packages => &packages::Packages,
            Self::Mysql => &mysql::Mysql,
            Self::Mongodb => &mongodb::Mongodb,
            Self::Rabbitmq => &rabbitmq::Rabbitmq,
            Self::Nfs => &nfs::Nfs,
            Self::Storage => &storage::Storage,
            Self::Namespace => &namespace::Namespace,
            Self::Registry => &registry::Registry,
            Self::Tls => &tls::Tls,
            Self::Release => &release::Release,
            Self::Gateway => &gateway::Gateway,
            Self::Wait => &wait::Wait,
            Self::Backups => &backups::Backups,
            Self::Summary => &summary::Summary,
        }
    }

    /// What the engine knows of the step without running it.
    pub fn info(self) -> &'static StepInfo {
        self.step().info()
    }
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

/// When a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// When its checkpoint is not done or its inputs changed.
    Ordinary,
    /// On every install and plan, before anything changes: it checks the
    /// host and the inputs (`preflight`). `--only` and `--from` never leave
    /// it out, and a look of it that fails stops the plan and the run.
    ChecksInputs,
    /// On every install, whatever its checkpoint says (`summary`).
    EveryRun,
    /// For the steps that need it (`packages`): part of a run exactly when
    /// one of them is, whatever `--only` and `--from` name.
    ServesDependents,
}

/// What a host server step (`mysql`, `mongodb`, `rabbitmq`, `nfs`) tells
/// the `packages` step, which installs the packages of every server of the
/// run in one apt transaction: its packages, and what must be in place
/// before they install: apt sources (MongoDB's repository and key), or a
/// file the server reads at the first start its package's install gives it
/// (RabbitMQ's plugins), asked only while one is missing.
#[derive(Clone, Copy)]
pub struct ServerRole {
    pub packages: fn(&Context) -> Result<ServerPackages, StepError>,
    pub before_install: fn(&Context) -> Result<Vec<Action>, StepError>,
}

/// The Debian packages a server step needs.
pub struct ServerPackages {
    pub server: crate::state::Server,
    pub names: Vec<String>,
}

/// A read-only look at the host by a step's role (`preflight`, `undo_kept`).
pub type Look<T> = fn(&Context) -> Result<T, StepError>;

/// The files a step writes or applies, rendered from the configuration:
/// each a name and its contents.
pub type Render = fn(&Config) -> Result<Vec<(String, String)>, RenderError>;

/// Everything the engine knows of a step without running it: one constant
/// per step (`INFO` in its file). The rare roles are data here, `None` for
/// most steps.
pub struct StepInfo {
    pub id: StepId,
    /// What the step does, in a few words.
    pub title: &'static str,
    /// Which switch can skip it.
    pub group: Group,
    pub role: Role,
    /// The steps that must have finished (done, or left out) before this
    /// one starts: the edges of the step graph. Steps that need nothing of
    /// each other run side by side (`--jobs`).
    pub needs: &'static [StepId],
    /// The steps whose outputs are this step's inputs: when theirs change,
    /// this step runs again too, and a step run alone before they ever ran
    /// is told to run them first. Each is among `needs`, or theirs.
    pub inputs_from: &'static [StepId],
    /// Which uninstall switch takes the step's work and its checkpoint away.
    pub removal: Removal,
    /// Whether the step's undo logs in with a password of the credentials
    /// file: the file stays until such a step is undone.
    pub undo_logs_in: bool,
    /// What the step checks of the inputs and the host before anything
    /// changes, for `preflight` to show (`None` when there is nothing to
    /// check for this run, an input error when the check fails): a
    /// `--skip-infra` component that must be there, a MongoDB series that
    /// must have packages for the host.
    pub preflight: Option<Look<Option<Action>>>,
    /// A host server's packages (`mysql`, `mongodb`, `rabbitmq`, `nfs`).
    pub server: Option<ServerRole>,
    /// The release files the step downloads and runs as root, each with
    /// what it is checked against (`[downloads] require_pins` refuses the
    /// run when one has no pin).
    pub downloads: Option<fn(&Context) -> Vec<host::download::ReleaseBinary>>,
    /// The files the step writes or applies, rendered from the
    /// configuration for review (`stackinstall render`), as (file name,
    /// contents); never a secret.
    pub rendered: Option<Render>,
    /// What an uninstall removes of the step when the scope keeps its work
    /// (the PVCs of a namespace kept without `--delete-namespace`).
    pub undo_kept: Option<Look<Vec<Action>>>,
    /// What the step's undo could not remove and the operator should know
    /// of (what K3s's own uninstall leaves behind), once its work is gone;
    /// asked only when the undo ran a program (that uninstall): a step
    /// whose program was never installed leaves none of it.
    pub leftovers: Option<fn(&Context) -> Vec<String>>,
}

/// A server whose packages need nothing in place before they install.
pub fn nothing_before_install(_context: &Context) -> Result<Vec<Action>, StepError> {
    Ok(Vec::new())
}

impl StepInfo {
    /// An ordinary core step that needs nothing: the base the steps' own
    /// constants change.
    pub const fn new(id: StepId, title: &'static str) -> Self {
        Self {
            id,
            title,
            group: Group::Core,
            role: Role::Ordinary,
            needs: &[],
            inputs_from: &[],
            removal: Removal::Default,
            undo_logs_in: false,
            preflight: None,
            server: None,
            downloads: None,
            rendered: None,
            undo_kept: None,
            leftovers: None,
        }
    }

    /// A step of the host's servers (`--skip-db`, `--delete-db`).
    pub const fn database(id: StepId, title: &'static str) -> Self {
        Self {
            group: Group::Database,
            removal: Removal::Databases,
            ..Self::new(id, title)
        }
    }

    /// A step of the cluster's infrastructure (`--skip-infra`, `--delete-infra`).
    pub const fn infra(id: StepId, title: &'static str) -> Self {
        Self {
            group: Group::Infra,
            removal: Removal::Infra,
            ..Self::new(id, title)
        }
    }

    /// Whether it runs on every install, whatever its checkpoint says.
    pub fn always_runs(&self) -> bool {
        matches!(self.role, Role::ChecksInputs | Role::EveryRun)
    }
}

/// One install step: a look at the host that says what is left to do
/// (changing nothing), a verification of the result, and the reverse for
/// uninstall. Steps are shared by the lanes of a run, so `Sync`.
pub trait Step: Sync {
    /// The step's constant: identity, title, place in the graph, roles.
    fn info(&self) -> &'static StepInfo;

    /// Adds the inputs this step depends on (versions, domain, certificate
    /// hash, profile values) to its fingerprint.
    fn inputs(&self, _context: &Context, _fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        Ok(())
    }

    /// Looks at the host without changing anything and returns what is left
    /// to do: an empty list when the step's work is already there.
    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError>;

    /// Checks, read-only, that the step's result is there and works.
    fn verify(&self, context: &Context) -> Result<(), StepError>;

    /// The actions that reverse the step, for uninstall, within the scope
    /// of `context.uninstall`; nothing by default. Read-only, like `look`.
    fn undo(&self, _context: &Context) -> Result<Vec<Action>, StepError> {
        Ok(Vec::new())
    }
}

/// Tells systemd's reader the units of the stack (the servers', K3s's,
/// the renewal and backup timers' and the export's bind mount's), so that the run's
/// first look at any of them reads them all in one `systemctl show`.
pub fn expect_stack_units(context: &Context) {
    crate::host::service::expect([
        mysql::unit_for(context),
        context.config.mongodb.service.clone(),
        rabbitmq::UNIT.to_string(),
        nfs::UNIT.to_string(),
        "k3s".to_string(),
        registry::TIMER.to_string(),
        backups::TIMER.to_string(),
        crate::host::service::mount_unit(&context.config.nfs.path),
    ]);
}

/// A template that does not render with values the configuration already
/// checked: a bug of stackinstall's, not the operator's.
pub(crate) fn template_bug(error: crate::render::RenderError) -> StepError {
    StepError::failed(
        error.to_string(),
        "this is a bug in stackinstall's templates; please report it",
    )
}
