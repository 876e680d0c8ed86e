//! What a step sees: the configuration, the host, the state and the
//! credentials, plus a place to tell the operator things.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::credentials::{Credentials, CredentialsFile};
use crate::error::StepError;
use crate::host::Host;
use crate::host::command::INTERRUPTED;
use crate::host::download::{self, ReleaseBinary};
pub use crate::state::Origin;
use crate::state::{Fact, Facts, Object, State, StateError, StateFile};
use crate::step_id::StepId;
use crate::ui::Ui;

/// Where a self-signed certificate and its key are kept.
pub const SELF_SIGNED_DIR: &str = "/etc/stackinstall/tls";

/// What an uninstall removes beyond its default (the release, the Gateway
/// and VirtualService, the `awscred` and TLS Secrets, the ECR timer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Scope {
    /// `--delete-pvc`: the PersistentVolumeClaims in the namespace.
    pub pvc: bool,
    /// `--delete-namespace`: the namespace itself.
    pub namespace: bool,
    /// `--delete-db`: our databases, users, config files, NFS export, credentials.
    pub databases: bool,
    /// `--delete-infra`: Istio, Helm and K3s.
    pub infra: bool,
}

impl Scope {
    /// The scope with every part.
    pub fn all() -> Self {
        Self {
            pvc: true,
            namespace: true,
            databases: true,
            infra: true,
        }
    }

    /// Whether `removal` falls inside this scope.
    pub fn covers(&self, removal: Removal) -> bool {
        match removal {
            Removal::Default => true,
            Removal::Namespace => self.namespace,
            Removal::Databases => self.databases,
            Removal::Infra => self.infra,
            Removal::Never => false,
        }
    }
}

/// Which uninstall switch takes a step's work (and its checkpoint) away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Every uninstall.
    Default,
    /// `--delete-namespace`.
    Namespace,
    /// `--delete-db`.
    Databases,
    /// `--delete-infra`.
    Infra,
    /// No uninstall: the step changes nothing that needs reversing.
    Never,
}

impl Removal {
    /// The switch that asks for it, for "kept on purpose" lines.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Default => "",
            Self::Namespace => "--delete-namespace",
            Self::Databases => "--delete-db",
            Self::Infra => "--delete-infra",
            Self::Never => "",
        }
    }
}

/// Resolves once the run is interrupted (Ctrl-C or SIGTERM).
async fn interruption() {
    while !INTERRUPTED.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What an uninstall does with an object, by its recorded origin: `None`
/// to remove it, else the kept line (`database `configuration` (was there
/// before the install)`).
pub fn kept_because(origin: Option<Origin>, what: &str) -> Option<String> {
    match origin {
        Some(Origin::Created) => None,
        Some(Origin::Found) => Some(format!("{what} (was there before the install)")),
        None => Some(format!(
            "{what} (the state does not say that the install made it: written by an older stackinstall, or not looked at; remove it by hand if it is ours)"
        )),
    }
}

/// Backs the host up to a file (`Context::back_up`).
pub type BackUp = fn(&Context, &std::path::Path) -> Result<(), StepError>;

/// Everything a step works with during one run.
pub struct Context {
    pub config: Config,
    pub host: Host,
    pub ui: Ui,
    /// Whether this is a plan: nothing may change.
    pub plan: bool,
    /// The run's log file, when there is one.
    pub log_path: Option<PathBuf>,
    /// What an uninstall removes; `None` during an install.
    pub uninstall: Option<Scope>,
    /// The steps `--redo` names: run again on purpose.
    pub redo: Vec<StepId>,
    /// The steps that are part of this run (not left out by a switch): the
    /// `packages` step installs what those need.
    pub included: Vec<StepId>,
    /// What adds to the error of a wait for the application that gave up:
    /// doctor's cluster and mesh findings, set by the install command (the
    /// steps do not reach up to doctor); `None` keeps the error as it is.
    pub explain_timeout: Option<fn(StepError, &Context) -> StepError>,
    /// What backs the host up to a file before an upgrade, set by the
    /// install command (the steps do not reach up to `backup`); `None`: this
    /// command takes no backup, so it makes no upgrade.
    pub back_up: Option<BackUp>,
    /// On a host joining a cluster (`stackinstall join`): what the K3s step
    /// makes of it (agent or server, the cluster's flags).
    pub join: Option<crate::join::Joining>,
    /// `stackinstall ha enable`: K3s restarts with `cluster-init`, moving
    /// its datastore from SQLite to embedded etcd (after a backup).
    pub cluster_init: bool,
    pub state: State,
    /// What a plan found that would stop the install (a host too small):
    /// the plan goes on to show every step, then fails with the first.
    plan_stops: Arc<Mutex<Vec<StepError>>>,
    /// Lines for the run's summary (`tell_summary`), shared by the forks.
    for_summary: Arc<Mutex<Vec<String>>>,
    /// The state as every lane of the run changed it: what is saved.
    shared_state: Arc<Mutex<State>>,
    state_file: StateFile,
    credentials_file: CredentialsFile,
    credentials: OnceCell<Credentials>,
    runtime: OnceCell<tokio::runtime::Runtime>,
}

impl Context {
    /// A context for `config` on `host`; `home` is the invoking user's home.
    pub fn new(
        config: Config,
        host: Host,
        ui: Ui,
        plan: bool,
        home: &Path,
    ) -> Result<Self, StateError> {
        let state_file = StateFile::new(&host);
        let state = state_file.load()?;
        crate::host::kube::use_kubeconfig(state.facts.kubeconfig.as_deref());
        Ok(Self {
            shared_state: Arc::new(Mutex::new(state.clone())),
            credentials_file: CredentialsFile::new(&host, home),
            config,
            host,
            ui,
            plan,
            log_path: None,
            uninstall: None,
            redo: Vec::new(),
            included: Vec::new(),
            explain_timeout: None,
            back_up: None,
            join: None,
            cluster_init: false,
            plan_stops: Arc::default(),
            for_summary: Arc::default(),
            state,
            state_file,
            credentials: OnceCell::new(),
            runtime: OnceCell::new(),
        })
    }

    /// The state file.
    pub fn state_file(&self) -> &StateFile {
        &self.state_file
    }

    /// Loads the state file again (once the run holds the lock).
    pub fn reload_state(&mut self) -> Result<(), StateError> {
        let state = self.state_file.load()?;
        self.shared_state = Arc::new(Mutex::new(state.clone()));
        self.state = state;
        Ok(())
    }

    /// Applies `change` to the state, both this context's view and the one
    /// the steps running beside it share, and saves the shared one at once.
    pub fn change_state(&mut self, change: impl Fn(&mut State)) -> Result<(), StateError> {
        change(&mut self.state);
        let mut shared = self.lock_shared();
        change(&mut shared);
        self.state_file.save(&shared)
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared_state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A context for one step running beside others: the same
    /// configuration, host, shared state and credentials, its own line on
    /// the screen.
    pub fn fork(&self) -> Context {
        Context {
            config: self.config.clone(),
            host: self.host.clone(),
            ui: self.ui.fork(),
            plan: self.plan,
            log_path: self.log_path.clone(),
            uninstall: self.uninstall,
            redo: self.redo.clone(),
            included: self.included.clone(),
            explain_timeout: self.explain_timeout,
            back_up: self.back_up,
            join: self.join.clone(),
            cluster_init: self.cluster_init,
            plan_stops: Arc::clone(&self.plan_stops),
            for_summary: Arc::clone(&self.for_summary),
            state: self.state.clone(),
            shared_state: Arc::clone(&self.shared_state),
            state_file: self.state_file.clone(),
            credentials_file: self.credentials_file.clone(),
            credentials: self.credentials.clone(),
            runtime: OnceCell::new(),
        }
    }

    /// Takes back what a fork's step did: the shared state as it is now,
    /// and the credentials it loaded or wrote.
    pub fn absorb(&mut self, fork: Context) {
        let shared = self.lock_shared().clone();
        self.state = shared;
        if let Some(credentials) = fork.credentials.into_inner() {
            self.credentials = OnceCell::from(credentials);
        }
    }

    /// During a plan: notes that the install would stop with `error` (its
    /// look goes on, so that the plan shows every step).
    pub fn plan_stops_with(&self, error: StepError) {
        let mut stops = self.plan_stops.lock().unwrap_or_else(|p| p.into_inner());
        if !stops
            .iter()
            .any(|stop| stop.to_string() == error.to_string())
        {
            stops.push(error);
        }
    }

    /// Keeps `line` for the run's summary (a backup taken before an
    /// upgrade, what the other nodes do next): what the operator must not
    /// miss in the scroll of a long run.
    pub fn tell_summary(&self, line: String) {
        (self.for_summary.lock())
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// The lines kept for the summary, in the order they came.
    pub fn summary_lines(&self) -> Vec<String> {
        (self.for_summary.lock())
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the plan found that would stop the install, first first.
    pub fn take_plan_stops(&self) -> Vec<StepError> {
        std::mem::take(&mut *self.plan_stops.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The credentials file.
    pub fn credentials_file(&self) -> &CredentialsFile {
        &self.credentials_file
    }

    /// The credentials, loaded from the file on first use. Fails when the
    /// file is missing (the `credentials` step has not run) or damaged.
    pub fn credentials(&self) -> Result<&Credentials, StepError> {
        if let Some(credentials) = self.credentials.get() {
            return Ok(credentials);
        }
        let loaded = self
            .credentials_file
            .load()?
            .ok_or_else(|| StepError::NoCredentials {
                path: self.shown(self.credentials_file.path()),
            })?;
        Ok(self.credentials.get_or_init(|| loaded))
    }

    /// Replaces the cached credentials (after the `credentials` step wrote them).
    pub fn set_credentials(&mut self, credentials: Credentials) {
        self.credentials = OnceCell::from(credentials);
    }

    /// What earlier runs recorded of the host.
    pub fn facts(&self) -> &Facts {
        &self.state.facts
    }

    /// Records `fact` and saves the state at once; a fact already recorded
    /// is kept as it was (see [`Facts::record`]).
    pub fn record(&mut self, fact: &Fact) -> Result<(), StepError> {
        if self.state.facts.clone().record(fact) {
            self.change_state(|state| {
                state.facts.record(fact);
            })?;
        }
        Ok(())
    }

    /// Who made `object`, as the state records it; `None` when it does not
    /// say (a state written by an older stackinstall, or an object the
    /// install never looked at).
    pub fn origin(&self, object: &Object) -> Option<Origin> {
        self.state.facts.origin(object)
    }

    /// The fact to record, before its step changes anything, of who made
    /// `object`: `present` is whether it was there when just looked at. An
    /// absent object is recorded as created before it is made, so a run
    /// killed between making and recording still owns it. A present object
    /// counts as found only on the step's first run: on a step done before,
    /// it was made by a run whose state did not record it (an older
    /// stackinstall), and stays unattributed (`None`). A recorded origin is
    /// never changed: a re-run does not turn found into created.
    pub fn claim_of(&self, object: Object, present: bool) -> Option<Fact> {
        if self.origin(&object).is_some() {
            return None;
        }
        if !present {
            return Some(Fact::Origin(object, Origin::Created));
        }
        let step = object.server().step();
        (!self.was_done(step)).then_some(Fact::Origin(object, Origin::Found))
    }

    /// Records who made `object` (see [`Context::claim_of`]).
    pub fn claim(&mut self, object: Object, present: bool) -> Result<(), StepError> {
        match self.claim_of(object, present) {
            Some(fact) => self.record(&fact),
            None => Ok(()),
        }
    }

    /// Whether `step` had a done checkpoint when this run started it.
    pub fn was_done(&self, step: StepId) -> bool {
        self.state.was_done(step)
    }

    /// Drops the origin of `object` (recorded before a change that turned
    /// out not to happen); saved at once.
    pub fn forget(&mut self, object: &Object) -> Result<(), StepError> {
        if self.origin(object).is_some() {
            self.change_state(|state| state.facts.set_origin(object, None))?;
        }
        Ok(())
    }

    /// Drops the facts of the objects `step` created, once an uninstall
    /// removed them all, so that the next install looks at the host
    /// afresh; saved at once. What was found stays recorded as found.
    pub fn forget_created(&mut self, step: StepId) -> Result<(), StepError> {
        let mut facts = self.state.facts.clone();
        facts.forget_created(step);
        if facts != self.state.facts {
            self.change_state(|state| state.facts.forget_created(step))?;
        }
        Ok(())
    }

    /// The certificate and key the install uses: the operator's, or the
    /// self-signed pair kept under `/etc/stackinstall/tls/`.
    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf)> {
        let install = &self.config.install;
        if install.self_signed {
            let dir = self.host.path(SELF_SIGNED_DIR);
            return Some((dir.join("tls.crt"), dir.join("tls.key")));
        }
        Some((install.ssl_cert.clone()?, install.ssl_key.clone()?))
    }

    /// Runs a future to completion (database clients are async). Ctrl-C
    /// (or SIGTERM) drops it within a tenth of a second, whatever it waits
    /// for (a connect that never answers, a retry's pause), and the step
    /// ends `interrupted`.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> Result<F::Output, StepError> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime can be built")
        });
        runtime.block_on(async {
            tokio::select! {
                output = future => Ok(output),
                () = interruption() => Err(StepError::Interrupted {
                    doing: "waiting for a server to answer".into(),
                }),
            }
        })
    }

    /// Downloads `release`, checks it, and installs its binary at the host
    /// path `binary`, showing its progress.
    pub fn install_release(&self, release: &ReleaseBinary, binary: &str) -> Result<(), StepError> {
        let timeout = Duration::from_secs(self.config.downloads.timeout_seconds);
        let work_dir = self.host.path(download::DOWNLOADS);
        self.warn_unpinned(release);
        let progress = self.ui.download(release.file_name());
        let target = self.host.path(binary);
        download::install_binary(release, &target, &work_dir, timeout, &|done, total| {
            progress.update(done, total)
        })?;
        progress.finish();
        Ok(())
    }

    /// Downloads `release` and checks it, showing its progress.
    pub fn fetch_release(&self, release: &ReleaseBinary) -> Result<Vec<u8>, StepError> {
        let timeout = Duration::from_secs(self.config.downloads.timeout_seconds);
        self.warn_unpinned(release);
        let progress = self.ui.download(release.file_name());
        let bytes = download::fetch_checked(release, timeout, &|done, total| {
            progress.update(done, total)
        })?;
        progress.finish();
        Ok(bytes)
    }

    /// Says loudly, in the run, that `release` has no pin.
    fn warn_unpinned(&self, release: &ReleaseBinary) {
        if release.pin.is_none() {
            self.ui
                .warn(&format!("{}: {}", release.url, release.check()));
        }
    }

    /// The address pods reach the host's databases and NFS export at:
    /// `[cluster] host_ip`, else the host's primary IPv4 address.
    pub fn host_ip(&self) -> Result<String, StepError> {
        self.config.host_ip().ok_or_else(|| {
                StepError::input(
                    "cannot find the host's primary IPv4 address (it has no default route)",
                "set it with `STACKINSTALL_CLUSTER__HOST_IP=ADDRESS` or `[cluster] host_ip` in `--config FILE`",
            )
        })
    }

    /// `path` as the operator knows it: without the `--root` prefix.
    pub fn shown(&self, path: &Path) -> PathBuf {
        self.host.reached(path).shown().to_path_buf()
    }
}
