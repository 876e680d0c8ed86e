//! K3s: installs the profile's pinned K3s the way K3s documents for servers
//! without internet access to its installer: the `k3s` binary from the
//! release, checked against the release's `sha256sum-<arch>.txt`, goes to
//! `/usr/local/bin/k3s`, then the pinned install script runs with
//! `INSTALL_K3S_SKIP_DOWNLOAD=true`, K3s configured by
//! `/etc/rancher/k3s/config.yaml` written from the profile's `[cluster]`
//! (`config_file.rs`: its networks, API port and TLS SANs, Traefik and
//! ServiceLB disabled, the kubeconfig 0600: only root reads
//! `/etc/rancher/k3s/k3s.yaml`; root gets a copy as `/root/.kube/config`,
//! see `kubeconfig.rs`). Done when `k3s --version` is the pinned one, the
//! `k3s` service is active, this host's node is Ready (another node that
//! is not is said, not waited for) and the kubeconfig is 0600
//! (one left 0644 by an earlier install makes the script run again). A K3s
//! of another version is reported, never replaced. Before it changes
//! anything it records whether a Kubernetes was there (`k3s.preexisting`:
//! the binary, the `k3s` service, or a listener on the API port);
//! uninstall removes root's copy of the kubeconfig (when it still is K3s's)
//! and runs the `k3s-uninstall.sh` the script wrote only when it was not.
//!
//! Before K3s starts, it also puts the kubelet's image credential provider
//! in place (`credential_provider`): a K3s already running is restarted
//! once when that or its configuration file changes (the plan says so; a
//! run killed before the restart leaves it pending for the next run).
//! Preflight refuses a pinned K3s that cannot run this install
//! (`version.rs`) and a change of the networks K3s made its cluster with.

pub mod config_file;
pub mod credential_provider;
mod kubeconfig;
mod leftovers;
pub mod lock;
pub mod version;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::{Context, Origin, kept_because};
use crate::host::download::{self, DOWNLOADS, ReleaseBinary};
use crate::host::installed::INSTALLED_BINARY;
use crate::host::{self, Command, cluster, kube, service};
use crate::render::RenderError;
use crate::state::{Fact, Fingerprint, Preexisting, Reload};
use crate::steps::services::Reread;

/// The K3s step.
pub struct K3s;

/// Where K3s's binary goes (the install script's default `BIN_DIR`).
pub const BINARY: &str = "/usr/local/bin/k3s";
/// The script K3s's installer writes for uninstall.
pub const UNINSTALL_SCRIPT: &str = "/usr/local/bin/k3s-uninstall.sh";
/// The install script's name in the downloads directory, while it runs.
const INSTALL_SCRIPT: &str = "k3s-install.sh";
/// The install script's arguments: a server, configured by its file
/// (`config_file`).
const SERVER_FLAGS: &str = "server";
/// The script K3s's installer writes for an agent's uninstall.
pub const AGENT_UNINSTALL_SCRIPT: &str = "/usr/local/bin/k3s-agent-uninstall.sh";
/// The package a node needs to mount the NFS export's volumes (the
/// kubelet runs `mount.nfs`): on the first host the NFS server's package
/// brings it along.
pub const NFS_CLIENT: &str = "nfs-common";

/// The install script's `INSTALL_K3S_EXEC`: `agent` on a host joining as
/// one, else `server` (configured by its file either way).
fn exec(context: &Context) -> &'static str {
    match &context.join {
        Some(join) if join.role == crate::join::Role::Agent => "agent",
        _ => SERVER_FLAGS,
    }
}

/// K3s's unit on this host: `k3s-agent` on an agent (install.sh names it
/// so), else `k3s`.
pub fn unit(context: &Context) -> &'static str {
    match &context.join {
        Some(join) => join.role.unit(),
        None => "k3s",
    }
}

/// Whether this host joins as an agent: no API server of its own, no
/// kubeconfig; its K3s is done when its unit runs.
fn is_agent(context: &Context) -> bool {
    exec(context) == "agent"
}

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    preflight: Some(preflight),
    downloads: Some(downloads),
    leftovers: Some(leftovers::leftovers),
    rendered: Some(rendered),
    needs: &[StepId::Preflight],
    ..StepInfo::infra(StepId::K3s, "Install K3s")
};

impl Step for K3s {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint
            .add("version", &context.config.versions.k3s)
            .add("flags", exec(context))
            .add("config", config_file::render_for(context)?)
            .add(
                "credential_provider",
                credential_provider::rendered_config(context)?,
            );
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let version = &context.config.versions.k3s;
        let installed = installed_version(context)?;
        let upgrade_from = installed.clone().filter(|found| found != version);
        let mut actions = Vec::new();
        let agent = is_agent(context);
        // An agent holds none of the cluster's data: the servers' backups,
        // each taken before its own upgrade, hold it.
        if let Some(from) = upgrade_from.as_ref().filter(|_| !agent) {
            actions.extend(Action::change(BackupFirst::new(
                context,
                &format!("K3s {from} → {version}"),
                &format!("k3s-{version}"),
            )));
        }
        let upgrading = upgrade_from.is_some();
        // Servers change their K3s one at a time: the first server takes
        // the lock a joining server takes (a joined server's `join` holds
        // it already).
        let lock = upgrading && !agent && context.join.is_none() && has_other_servers(context)?;
        if lock {
            actions.extend(Action::change(ServerLock { take: true }));
        }
        if installed.is_none() || upgrading {
            actions.push(Action::install_release(release(context), BINARY));
        }
        let aside = set_aside(context);
        let starts = installed.is_none()
            || upgrade_from.is_some()
            || aside.is_some()
            || !service::is_active(unit(context))?
            || (!agent && kubeconfig::too_open(context));
        if starts {
            let then = match upgrading {
                true => then_on_other_nodes(context)?,
                false => None,
            };
            actions.extend(aside.and_then(Action::change));
            actions.extend(Action::change(RunInstallScript {
                script: install_script(context),
                version: version.clone(),
                exec: exec(context),
                upgrade_from,
                then,
            }));
            actions.extend((!agent).then(|| wait_for_nodes(context)));
        }
        if lock {
            actions.extend(Action::change(ServerLock { take: false }));
        }
        // What goes before the writes but is no change K3s reads: the NFS
        // client package, the backup before the move to etcd.
        let mut prepare = node_packages(context)?;
        let to_etcd = context.cluster_init
            && installed.is_some()
            && !host::fs::exists(&context.host.path(host::backup::K3S_ETCD));
        if to_etcd && !upgrading {
            prepare.extend(Action::change(BackupFirst::new(
                context,
                "the move of K3s's datastore from SQLite to embedded etcd",
                "ha-enable",
            )));
        }
        let mut writes = credential_provider::actions(context)?;
        writes.extend(config_file::action(context)?);
        let (pending, reread) = restart_once(context, !writes.is_empty(), starts);
        let copy = match agent {
            true => None,
            false => kubeconfig::copy_action(context, !starts && !reread.is_empty())?,
        };
        if actions.is_empty()
            && !agent
            && cluster::nodes_ready(&this_node(context))?.is_none_or(|(ready, total)| ready < total)
        {
            actions.push(wait_for_nodes(context));
        }
        if actions.is_empty() {
            actions.push(Action::check(format!(
                "K3s {version} is installed and its node is Ready{}",
                others_not_ready(context)?
            )));
        }
        // A run killed between the install script and its removal left it.
        let script = context.host.path(DOWNLOADS).join(INSTALL_SCRIPT);
        if !starts && script.exists() {
            actions.push(Action::remove(context.host.reached(script)));
        }
        let mut wiring = prepare;
        wiring.extend(pending);
        wiring.extend(writes);
        match starts {
            false => wiring.extend(reread),
            true => actions.extend(reread),
        }
        wiring.extend(actions);
        wiring.extend(copy);
        // Whether a Kubernetes was there, written down before anything changes.
        let unrecorded =
            context.facts().k3s.preexisting.is_none() && !context.was_done(StepId::K3s);
        let record = match unrecorded {
            true => Some(Fact::Preexisting(
                Preexisting::K3s,
                kubernetes_present(context)?,
            )),
            false => None,
        };
        Action::record_first(&mut wiring, record);
        Ok(wiring)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        match installed_version(context)? {
            None => {
                return Err(StepError::failed(
                    format!("`{BINARY}` is missing"),
                    "run `stackinstall install --redo k3s`",
                ));
            }
            Some(found) if found != context.config.versions.k3s => {
                return Err(StepError::failed(
                    format!("K3s is still {found}, not {}", context.config.versions.k3s),
                    "run `stackinstall install --redo k3s`",
                ));
            }
            Some(_) => {}
        }
        let unit = unit(context);
        if !service::is_active(unit)? {
            return Err(StepError::failed(
                format!("the `{unit}` service is not active"),
                format!("look at `journalctl -u {unit}`, then run `systemctl start {unit}`"),
            ));
        }
        if is_agent(context) {
            config_file::check(context)?;
            return credential_provider::check(context);
        }
        match cluster::nodes_ready(&this_node(context))? {
            Some((ready, total)) if ready == total => {}
            found => return Err(not_ready(found)),
        }
        kubeconfig::verify(context)?;
        config_file::check(context)?;
        credential_provider::check(context)
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let origin = context
            .facts()
            .k3s
            .preexisting
            .map(Origin::from_preexisting);
        if let Some(kept) = kept_because(origin, "K3s") {
            return Ok(vec![Action::check(kept)]);
        }
        let mut actions: Vec<Action> = kubeconfig::undo_action(context)?.into_iter().collect();
        let agent_script = context.host.path(AGENT_UNINSTALL_SCRIPT);
        let script = match agent_script.exists() {
            true => agent_script,
            false => context.host.path(UNINSTALL_SCRIPT),
        };
        if script.exists() {
            actions.push(Action::run(
                Command::new(script.display().to_string()).timeout(Duration::from_secs(600)),
            ));
        } else {
            // K3s never installed (its download failed, say): what the step
            // wrote before it, which K3s's script would have removed.
            let path = Path::new(config_file::PATH);
            actions.push(Action::remove(context.host.locate(path)));
        }
        // The credential provider's link and config, when `registry` (whose
        // undo removes them) never ran.
        if !context.state.steps.contains_key(&StepId::Registry) {
            actions.extend(credential_provider::removals(context));
            if host::fs::exists(&context.host.path(INSTALLED_BINARY)) {
                actions.push(Action::check(format!(
                    "{INSTALLED_BINARY}, the installed stackinstall: remove it by hand when you no longer need it"
                )));
            }
        }
        Ok(actions)
    }
}

/// K3s's configuration file and the kubelet's credential provider's, for
/// `render`.
fn rendered(config: &crate::config::Config) -> Result<Vec<(String, String)>, RenderError> {
    Ok(vec![
        ("k3s-config.yaml".into(), config_file::render(config)),
        (
            "credential-provider-config.yaml".into(),
            crate::provider::kubelet_config(config, crate::provider::REFRESH_CONFIG)?,
        ),
    ])
}

/// On a joining host: the NFS client package, when it is missing (the
/// kubelet mounts the export's volumes on every node).
fn node_packages(context: &Context) -> Result<Vec<Action>, StepError> {
    if context.join.is_none() {
        return Ok(Vec::new());
    }
    let missing = host::packages::missing(&[NFS_CLIENT])?;
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Action::run(host::packages::install_command(&missing))])
}

/// Whether a K3s or another Kubernetes is on the host already: its binary,
/// its service, or something listening on the API server's port.
fn kubernetes_present(context: &Context) -> Result<bool, StepError> {
    Ok(context.host.path(BINARY).exists()
        || service::is_active("k3s")?
        || host::system::port_use(context.config.cluster.api_port) != host::system::PortUse::Free)
}

/// The K3s release binary of this machine's architecture.
fn release(context: &Context) -> ReleaseBinary {
    let base = download::url_for(&context.config.downloads.k3s, &context.config.versions.k3s);
    let (binary, sums) = match download::architecture() {
        "amd64" => ("k3s".to_string(), "sha256sum-amd64.txt".to_string()),
        arch => (format!("k3s-{arch}"), format!("sha256sum-{arch}.txt")),
    };
    let version = &context.config.versions.k3s;
    context.config.downloads.release(
        &format!("k3s/{version}"),
        format!("{base}/{binary}"),
        Some(format!("{base}/{sums}")),
        None,
    )
}

/// The pinned version's install script (K3s publishes no sum of it).
fn install_script(context: &Context) -> ReleaseBinary {
    let version = &context.config.versions.k3s;
    let url = download::url_for(&context.config.downloads.k3s_install_script, version);
    (context.config.downloads).release(&format!("k3s/{version}"), url, None, None)
}

/// The files K3s downloads: the binary and the install script.
pub fn downloads(context: &Context) -> Vec<ReleaseBinary> {
    vec![release(context), install_script(context)]
}

/// The version of the installed K3s; `None` when there is none. Another
/// version than the pinned one is an upgrade when the install put K3s
/// there and the move is one stackinstall makes (`crate::upgrade`: no
/// skipped minor, no downgrade); else an error: reported, not replaced.
fn installed_version(context: &Context) -> Result<Option<String>, StepError> {
    let binary = context.host.path(BINARY);
    if !binary.exists() {
        return Ok(None);
    }
    let found = running_version(context)?.unwrap_or_default();
    let pinned = &context.config.versions.k3s;
    if &found == pinned {
        return Ok(Some(found));
    }
    if context.facts().k3s.preexisting == Some(false) {
        return match crate::upgrade::check_path(crate::upgrade::Component::K3s, &found, pinned) {
            Ok(_) => Ok(Some(found)),
            Err(refusal) => Err(refusal.into()),
        };
    }
    Err(StepError::input(
        format!(
            "K3s `{found}` is already installed at `{BINARY}`, but profile `{}` pins `{pinned}`",
            context.config.name
        ),
        format!(
            "stackinstall does not replace a K3s it did not install: upgrade it to {pinned} yourself, or uninstall it (`{UNINSTALL_SCRIPT}`), or run with --skip-infra to use it as it is"
        ),
    ))
}

/// `k3s version v1.29.0+k3s1 (3190a5a7)` -> `v1.29.0+k3s1`.
/// The version the installed K3s names (`k3s --version`, read once a run);
/// `None` when it names none.
pub fn running_version(context: &Context) -> Result<Option<String>, StepError> {
    let printed = host::installed::version_output(&context.host.path(BINARY), &["--version"])?;
    Ok(parse_version(&printed))
}

pub fn parse_version(output: &str) -> Option<String> {
    let line = output
        .lines()
        .find(|line| line.starts_with("k3s version "))?;
    line.split_whitespace().nth(2).map(str::to_string)
}

/// Before an upgrade: a backup of the host (`stackinstall backup`'s
/// archive), encrypted to `[backup] key_file` when it is set, else
/// root-only and unencrypted (said loudly): no one is there to type a
/// passphrase in the middle of a run.
pub(crate) struct BackupFirst {
    path: PathBuf,
    shown: String,
    encrypted: bool,
    upgrade: String,
}

impl BackupFirst {
    /// The backup before `upgrade` (`K3s v1.29.0+k3s1 → v1.29.5+k3s1`),
    /// its file named after `label`.
    pub(crate) fn new(context: &Context, upgrade: &str, label: &str) -> Self {
        let encrypted = context.config.backup.key_file.is_some();
        let name = format!(
            "backup-before-{label}-{}.tar.gz{}",
            host::log::file_stamp(),
            if encrypted { ".age" } else { "" }
        );
        let path = context
            .host
            .path(&context.config.backup.directory)
            .join(name);
        Self {
            shown: context.shown(&path).display().to_string(),
            path,
            encrypted,
            upgrade: upgrade.to_string(),
        }
    }
}

impl Change for BackupFirst {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "back up the host to `{}` before the upgrade of {} ({})",
            self.shown,
            self.upgrade,
            match self.encrypted {
                true => "encrypted to `[backup] key_file`",
                false => "NOT encrypted: no `[backup] key_file`; root's, mode 0600",
            }
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let Some(back_up) = context.back_up else {
            return Err(StepError::failed(
                format!(
                    "{} needs a backup first, and this command takes none",
                    self.upgrade
                ),
                "run `sudo stackinstall install`: it backs the host up, then upgrades",
            ));
        };
        back_up(context, &self.path)?;
        let message = format!(
            "backup before the upgrade of {}: `{}`",
            self.upgrade, self.shown
        );
        context.tell_summary(match self.encrypted {
            true => format!(
                "Backup before the upgrade of {}: {}",
                self.upgrade, self.shown
            ),
            false => format!(
                "Backup before the upgrade of {}: {} (NOT encrypted)",
                self.upgrade, self.shown
            ),
        });
        match self.encrypted {
            true => context.ui.note(&message),
            false => context.ui.warn(&format!(
                "{message} is NOT ENCRYPTED (no `[backup] key_file`): it holds every password; root's, mode 0600"
            )),
        }
        Ok(true)
    }
}

/// On a server joining a cluster restored since it last held its data
/// (the join file names the restore): K3s stopped and its datastore set
/// aside, so that it starts empty and joins the restored cluster. `None`
/// when the datastore holds no etcd (a new server) or was set aside for
/// that restore already.
struct SetAside {
    stamp: String,
    db: String,
    aside: String,
}

fn set_aside(context: &Context) -> Option<SetAside> {
    let join = context.join.as_ref()?;
    let stamp = join.restored.as_ref()?;
    let aside = host::backup::datastore_aside(&context.host, stamp);
    let etcd = context.host.path(host::backup::K3S_ETCD);
    if join.role != crate::join::Role::Server || !etcd.exists() || aside.exists() {
        return None;
    }
    Some(SetAside {
        stamp: stamp.clone(),
        db: context.shown(etcd.parent()?).display().to_string(),
        aside: context.shown(&aside).display().to_string(),
    })
}

impl Change for SetAside {
    fn kind(&self) -> ActionKind {
        ActionKind::Command
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "stop K3s and move its datastore `{}` aside to `{}`: it holds the cluster as it was before the first server's restore ({}); K3s starts empty and joins the restored cluster",
            self.db, self.aside, self.stamp
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        host::backup::set_datastore_aside(&context.host, &self.stamp).map_err(|error| {
            StepError::failed(
                format!("cannot set K3s's datastore aside: {error}"),
                "look at `systemctl status k3s`, then run the same `stackinstall join` again",
            )
        })?;
        context.ui.note(&format!(
            "K3s's datastore from before the restore is kept at `{}`: remove it once the cluster is healthy",
            self.aside
        ));
        Ok(true)
    }
}

/// Runs the pinned version's install script with the binary already in
/// place (`INSTALL_K3S_SKIP_DOWNLOAD`), starting K3s with this install's
/// flags.
struct RunInstallScript {
    script: ReleaseBinary,
    version: String,
    /// `server` or `agent`.
    exec: &'static str,
    /// The installed version, when this is an upgrade.
    upgrade_from: Option<String>,
    /// What the other nodes do after this one's upgrade (K3s's order).
    then: Option<String>,
}

impl Change for RunInstallScript {
    fn kind(&self) -> ActionKind {
        ActionKind::Command
    }

    fn lines(&self) -> Vec<String> {
        let run = format!(
            "run the K3s {} install script ({}, {}) with INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_EXEC='{}'",
            self.version,
            self.script.url,
            self.script.check(),
            self.exec
        );
        match &self.upgrade_from {
            Some(from) => (Some(format!("upgrade K3s {from} → {}: {run}", self.version))
                .into_iter())
            .chain(
                self.then
                    .iter()
                    .map(|then| format!("{then} (this server first)")),
            )
            .collect(),
            None => vec![run],
        }
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let script_bytes = context.fetch_release(&self.script)?;
        let script: PathBuf = context.host.path(DOWNLOADS).join(INSTALL_SCRIPT);
        host::fs::ensure_dir(&context.host.path(DOWNLOADS), 0o700)?;
        host::fs::write_atomic(&script, &script_bytes, 0o700)?;
        let result = Command::new("sh")
            .arg(script.display().to_string())
            .env("INSTALL_K3S_SKIP_DOWNLOAD", "true")
            .env("INSTALL_K3S_VERSION", &self.version)
            .env("INSTALL_K3S_EXEC", self.exec)
            .timeout(Duration::from_secs(600))
            .run();
        host::fs::remove_file(&script)?;
        result?;
        if let (Some(from), Some(then)) = (&self.upgrade_from, &self.then) {
            let done = format!("K3s {from} → {} done on this server; {then}", self.version);
            context.ui.note(&done);
            context.tell_summary(done);
        }
        Ok(true)
    }
}

/// The wait for this host's node to be Ready, within the profile's limit.
/// What makes K3s read its rewired files (`rewired`: the credential
/// provider's or its configuration file changed): one restart, recorded as
/// pending before the writes so that a run killed in between restarts it
/// next time; when the install script (re)starts K3s anyway (`starts`),
/// only the pending restart is cleared.
/// Returns the record that goes before the writes and what comes after.
fn restart_once(context: &Context, rewired: bool, starts: bool) -> (Option<Action>, Vec<Action>) {
    let reload = Reload::Restart(unit(context).into());
    let pending = context.facts().pending.contains(&reload);
    if starts {
        let cleared = pending.then(|| Action::record(Fact::Reloaded(reload)));
        return (None, cleared.into_iter().collect());
    }
    let record = (rewired && !pending).then(|| Action::record(Fact::ReloadPending(reload.clone())));
    let mut actions = Vec::new();
    if rewired || pending {
        actions.extend(Action::change(Reread {
            command: service::restart(unit(context)),
            reload,
        }));
        actions.extend((!is_agent(context)).then(|| wait_for_nodes(context)));
    }
    (record, actions)
}

/// This host's node name: K3s's steps wait for this node (another node
/// down is `nodes`' and doctor's to report, and must not stop this
/// host's install); every node when the cluster has none of this name.
fn this_node(context: &Context) -> String {
    crate::join::node_name(&context.host)
}

/// `; not Ready: NAME, ...` for the cluster's other nodes that are not
/// Ready (said, not waited for), else nothing.
fn others_not_ready(context: &Context) -> Result<String, StepError> {
    let this = this_node(context);
    let down: Vec<String> = (crate::node::in_snapshot()?.unwrap_or_default().into_iter())
        .filter(|node| !node.ready && node.name != this)
        .map(|node| node.name)
        .collect();
    Ok(match down.is_empty() {
        true => String::new(),
        false => format!(
            "; other nodes not Ready: {} (`stackinstall nodes`, `stackinstall doctor`)",
            down.join(", ")
        ),
    })
}

pub(crate) fn wait_for_nodes(context: &Context) -> Action {
    let limit = Duration::from_secs(context.config.downloads.ready_timeout_seconds);
    Action::wait_until("this host's node is Ready", limit, wait_until_ready)
}

fn wait_until_ready(context: &Context, limit: Duration) -> Result<(), StepError> {
    let deadline = Instant::now() + limit;
    loop {
        // The nodes now (they change by itself): the run's snapshot is
        // older than this read.
        cluster::forget();
        let found = kube::nodes_ready(&this_node(context))?;
        match found {
            Some((ready, total)) if ready == total => return Ok(()),
            Some((ready, total)) => context.ui.status(&format!("nodes Ready: {ready}/{total}")),
            None => context
                .ui
                .status("waiting for the Kubernetes API to answer"),
        }
        if Instant::now() >= deadline {
            return Err(not_ready(found));
        }
        host::command::pause(Duration::from_secs(2))?;
    }
}

fn not_ready(found: Option<(usize, usize)>) -> StepError {
    let what = match found {
        Some((ready, total)) => format!("only {ready} of {total} nodes are Ready"),
        None => "the Kubernetes API does not answer (`kubectl get nodes` failed)".to_string(),
    };
    StepError::failed(
        what,
        "look at `journalctl -u k3s` and `kubectl get nodes`, then run again",
    )
}

/// The pinned K3s can run this install; with `--skip-infra`, K3s must
/// already be running with a Ready node instead.
fn preflight(context: &Context) -> Result<Option<Action>, StepError> {
    if !context.config.install.skip_infra {
        let mut check = version::check(&context.config.versions.k3s)?;
        if let Some(networks) = config_file::check_networks(context)? {
            check = Action::check(format!("{}; {networks}", check.detail()));
        }
        if let Some(upgrade) = upgrade_check(context)? {
            check = Action::check(format!("{}; {}", check.detail(), upgrade.detail()));
        }
        return Ok(Some(check));
    }
    match cluster::nodes_ready(&this_node(context)) {
        Ok(Some((ready, total))) if ready == total => Ok(Some(Action::check(format!(
            "--skip-infra: Kubernetes answers, {ready}/{total} nodes Ready"
        )))),
        Ok(found) => Err(StepError::skipped_but_missing(
            "K3s",
            &not_ready(found).to_string(),
        )),
        Err(error) => Err(StepError::skipped_but_missing("K3s", &error.to_string())),
    }
}

/// Before anything changes: a K3s of another version is an upgrade this
/// run may make (one minor at most, never down, the pinned Istio
/// supporting the new Kubernetes; with other nodes, K3s's order: every
/// other etcd member Ready and no node behind), or refused naming the way
/// through. On a joined node the first server checked Istio's range when
/// it moved, and an agent cannot read the cluster (`join-command` checked
/// the servers for it).
pub(crate) fn upgrade_check(context: &Context) -> Result<Option<Action>, StepError> {
    let pinned = &context.config.versions.k3s;
    let Some(found) = installed_version(context)? else {
        return Ok(None);
    };
    if &found == pinned {
        return Ok(None);
    }
    let mut checked = vec!["one minor at most".to_string()];
    if context.join.is_none() {
        crate::upgrade::check_pair(&context.config.versions.istio, pinned)?;
        checked.push(format!(
            "Istio {} supports its Kubernetes",
            context.config.versions.istio
        ));
    }
    if !is_agent(context) {
        match crate::node::in_snapshot()? {
            Some(nodes) => {
                let this = this_node(context);
                crate::upgrade::check_nodes(&nodes, &this, &found, pinned)?;
                checked.push(format!(
                    "of {} node(s), every other etcd member Ready and none behind {found}",
                    nodes.len()
                ));
                checked.extend(crate::upgrade::order(&nodes, &this, pinned));
            }
            None => checked
                .push("the other nodes not read: the Kubernetes API does not answer".to_string()),
        }
    }
    Ok(Some(Action::check(format!(
        "K3s {found} → {pinned} is an upgrade stackinstall makes ({})",
        checked.join("; ")
    ))))
}

/// Whether the cluster has servers other than this one.
fn has_other_servers(context: &Context) -> Result<bool, StepError> {
    let this = this_node(context);
    Ok(crate::node::in_snapshot()?
        .is_some_and(|nodes| (nodes.iter()).any(|node| node.is_server() && node.name != this)))
}

/// The servers' lock (`crate::join::take_lock`), taken before this
/// server's K3s changes and let go once its node is Ready again.
struct ServerLock {
    take: bool,
}

impl Change for ServerLock {
    fn kind(&self) -> ActionKind {
        ActionKind::Command
    }

    fn lines(&self) -> Vec<String> {
        let lease = format!("the Lease `kube-system/{}`", crate::join::LOCK_LEASE);
        vec![match self.take {
            true => format!(
                "take the servers' lock ({lease}): one server changes its K3s at a time, waiting while another holds it"
            ),
            false => format!("let go of the servers' lock ({lease})"),
        }]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let access = lock::LockAccess::Member;
        match self.take {
            true => lock::take_lock(context, access)?,
            false => lock::release_lock(context, access)?,
        }
        Ok(true)
    }
}

/// What follows this server's upgrade to the pinned K3s on the other
/// nodes (`upgrade::order`), when the cluster answers.
fn then_on_other_nodes(context: &Context) -> Result<Option<String>, StepError> {
    if is_agent(context) {
        return Ok(None);
    }
    let Some(nodes) = crate::node::in_snapshot()? else {
        return Ok(None);
    };
    let this = this_node(context);
    Ok(crate::upgrade::order(
        &nodes,
        &this,
        &context.config.versions.k3s,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_k3s_output() {
        let output = "k3s version v1.29.0+k3s1 (3190a5a7)\ngo version go1.21.5\n";
        assert_eq!(parse_version(output).as_deref(), Some("v1.29.0+k3s1"));
        assert_eq!(parse_version("nonsense"), None);
    }
}
