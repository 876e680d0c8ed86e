//! What the host server steps (`mysql`, `mongodb`, `rabbitmq`, `nfs`) share:
//! the packages they need (installed by the `packages` step, in one apt
//! transaction), recording whether the server was on the host before the
//! first install, and starting or restarting its unit; and what the steps
//! that write a unit of their own (the `registry` and `backups` timers, the
//! export's mount unit) share: writing it, restarting it once, removing it.

use super::{Action, ActionKind, Change, StepError};
pub use super::{ServerPackages, ServerRole};
use crate::config::Config;
use crate::context::Context;
use crate::host::installed::{self, INSTALLED_BINARY};
use crate::host::{self, Command, packages, service};
use crate::render::{self, RenderError};
use crate::state::{Fact, HostPackages, Preexisting, Reload, Server};

const SYSTEMD_DIR: &str = "/etc/systemd/system";

/// Whether every one of `packages` is installed.
pub fn installed(packages: &[&str]) -> Result<bool, StepError> {
    Ok(packages::missing(packages)?.is_empty())
}

/// The action that records, before anything changes, whether `server`
/// was already there (`present`), once; `None` once recorded.
pub fn preexisting_action(context: &Context, server: Server, present: bool) -> Option<Action> {
    let recorded = context.facts().server(server).preexisting.is_some();
    let fact = Fact::Preexisting(Preexisting::Server(server), present);
    (!recorded).then(|| Action::record(fact))
}

/// What makes `unit` enabled (started at every boot) and active, running
/// with its current configuration file: the `write` of that file when it
/// changes (first recorded as waiting for a restart, so that a run killed
/// between the write and the restart leaves the restart to the next run),
/// `systemctl enable` when it is not enabled (a package may install a unit
/// without enabling it, as mongodb-org does), then a restart when its file
/// changed (or a restart is still pending) while it ran, or a start when it
/// does not run.
pub fn service_actions(
    context: &Context,
    unit: &str,
    write: Option<Action>,
) -> Result<Vec<Action>, StepError> {
    let changed = write.is_some();
    let (reload, pending, mut actions) = restart_after(context, unit, write.into_iter().collect());
    if !service::is_enabled(unit)? {
        actions.push(Action::run_as(ActionKind::Service, service::enable(unit)));
    }
    let active = service::is_active(unit)?;
    let command = match active {
        true if changed || pending => service::restart(unit),
        true => return Ok(actions),
        false => service::start(unit),
    };
    actions.extend(Action::change(Reread { command, reload }));
    Ok(actions)
}

/// `writes` of the files `unit` reads, led by the record that its restart
/// is waiting (when there are writes and it was not already), so that a
/// run killed between the writes and the restart leaves the restart to the
/// next run, which finds the files right; with that restart and whether it
/// was still pending from an earlier run.
fn restart_after(
    context: &Context,
    unit: &str,
    writes: Vec<Action>,
) -> (Reload, bool, Vec<Action>) {
    let reload = Reload::Restart(unit.to_string());
    let pending = context.facts().pending.contains(&reload);
    let record = (!writes.is_empty() && !pending)
        .then(|| Action::record(Fact::ReloadPending(reload.clone())));
    let actions = record.into_iter().chain(writes).collect();
    (reload, pending, actions)
}

/// The installed copy of the running stackinstall, what stackinstall's own
/// units run (`/usr/local/bin/stackinstall`): its install, when it is not
/// that copy yet.
pub fn installed_binary_action(context: &Context) -> Result<Option<Action>, StepError> {
    let binary = context.host.path(INSTALLED_BINARY);
    Ok((!installed::is_current(&binary)?)
        .then(|| Action::install_running_binary(context.host.reached(binary))))
}

/// One file of a unit stackinstall writes itself (a timer, its service,
/// the configuration they run with, a mount unit): its absolute path on
/// the host, its contents and its mode.
pub struct UnitFile {
    pub path: String,
    pub contents: String,
    pub mode: u32,
}

impl UnitFile {
    /// Its write, when the file on the host differs.
    pub fn write_action(self, context: &Context) -> Result<Option<Action>, StepError> {
        let path = context.host.locate(&self.path);
        let current = host::fs::read_optional(path.reached())?;
        Ok((current.as_deref() != Some(self.contents.as_str()))
            .then(|| Action::write(path, self.contents.into_bytes(), self.mode)))
    }
}

/// A systemd timer that runs the installed stackinstall (`binary` in its
/// templates) with a configuration file of its own.
pub struct OwnTimer {
    /// The timer's unit; its service has the same name, `.service`.
    pub unit: &'static str,
    /// What the service runs, as the configuration file's comment says it
    /// (`stackinstall ecr-refresh`).
    pub runs: &'static str,
    /// The effective configuration the service runs with (`config_file`
    /// in its templates), and that file's mode.
    pub config_file: &'static str,
    pub config_mode: u32,
}

impl OwnTimer {
    /// Its files' paths: the service, the timer, the configuration.
    pub fn paths(&self) -> [String; 3] {
        [
            format!("{SYSTEMD_DIR}/{}", self.unit.replace(".timer", ".service")),
            format!("{SYSTEMD_DIR}/{}", self.unit),
            self.config_file.to_string(),
        ]
    }

    /// The service and the timer, rendered from their templates with
    /// `values` (and `binary`, `config_file`), then the configuration file
    /// holding `config`.
    pub fn files(
        &self,
        config: &Config,
        values: minijinja::Value,
    ) -> Result<Vec<UnitFile>, RenderError> {
        let values = minijinja::context! {
            binary => INSTALLED_BINARY,
            config_file => self.config_file,
            ..values
        };
        let [service, timer, _] = self.paths();
        let mut files = Vec::new();
        for path in [service, timer] {
            let name = path.rsplit('/').next().unwrap_or(&path);
            files.push(UnitFile {
                contents: render::template(name, &values)?,
                path,
                mode: 0o644,
            });
        }
        let effective = toml::to_string(config).expect("the configuration serializes");
        files.push(UnitFile {
            path: self.config_file.to_string(),
            contents: format!(
                "# Written by stackinstall: the configuration `{}` runs with.\n{effective}",
                self.runs
            ),
            mode: self.config_mode,
        });
        Ok(files)
    }
}

/// Whether `path` is a unit file (in `/etc/systemd/system`).
pub fn is_unit_file(path: &str) -> bool {
    path.starts_with(SYSTEMD_DIR)
}

/// `files` as `render` shows them: by file name.
pub fn by_file_name(files: Vec<UnitFile>) -> Vec<(String, String)> {
    (files.into_iter())
        .map(|file| {
            let name = file.path.rsplit('/').next().unwrap_or(&file.path);
            (name.to_string(), file.contents)
        })
        .collect()
}

/// What makes `unit`, whose `files` stackinstall writes itself, run with
/// them: the writes of those that differ (first recorded as waiting for a
/// restart, so that a run killed between the writes and the restart leaves
/// it to the next run, which finds the files right), systemd told, then
/// `systemctl enable --now` when the unit is not enabled and active (it
/// reads them as it starts), else a restart when a file changed (or a
/// restart is still pending): a timer keeps its former schedule, a mount
/// its former options, until then.
pub fn own_unit_actions(
    context: &Context,
    unit: &str,
    files: Vec<UnitFile>,
) -> Result<Vec<Action>, StepError> {
    let mut writes = Vec::new();
    for file in files {
        writes.extend(file.write_action(context)?);
    }
    let written = !writes.is_empty();
    let (reload, pending, mut actions) = restart_after(context, unit, writes);
    if written || pending {
        actions.push(Action::run(service::daemon_reload()));
    }
    let running = service::is_enabled(unit)? && service::is_active(unit)?;
    let command = match (running, written || pending) {
        (false, _) => service::enable_now(unit),
        (true, true) => service::restart(unit),
        (true, false) => return Ok(actions),
    };
    actions.extend(Action::change(Reread { command, reload }));
    Ok(actions)
}

/// The reverse of `own_unit_actions`: `unit` stopped and disabled when its
/// file (one of `paths`, absolute on the host) is there, those of `paths`
/// that are there removed, and systemd told; nothing when none is there.
pub fn own_unit_removals(context: &Context, unit: &str, paths: &[String]) -> Vec<Action> {
    let present: Vec<&String> = (paths.iter())
        .filter(|path| host::fs::exists(&context.host.path(path)))
        .collect();
    if present.is_empty() {
        return Vec::new();
    }
    let mut actions = Vec::new();
    let unit_file = format!("/{unit}");
    if present.iter().any(|path| path.ends_with(&unit_file)) {
        actions.push(Action::run_as(
            ActionKind::Service,
            service::disable_now(unit),
        ));
    }
    for path in present {
        actions.push(Action::remove(context.host.locate(path)));
    }
    actions.push(Action::run(service::daemon_reload()));
    actions
}

/// Runs what makes a server read its configuration again (a restart, a
/// start, `exportfs -ra`), then records that it has.
pub struct Reread {
    pub command: Command,
    pub reload: Reload,
}

impl Change for Reread {
    fn kind(&self) -> ActionKind {
        ActionKind::Service
    }

    fn lines(&self) -> Vec<String> {
        vec![self.command.to_string()]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        self.command.run()?;
        context.record(&Fact::Reloaded(self.reload))?;
        Ok(true)
    }
}

/// Fails while a restart of `unit` is pending in the state: a run stopped
/// between the write of its files and the restart left it running with
/// the former ones. The files are right by then, so a verification that
/// reads only them would call the step done and no run would restart it.
pub fn check_restarted(context: &Context, unit: &str) -> Result<(), StepError> {
    let reload = Reload::Restart(unit.to_string());
    if !context.facts().pending.contains(&reload) {
        return Ok(());
    }
    Err(StepError::failed(
        format!(
            "`{unit}` was not restarted since its files were rewritten (a run stopped in between): it still runs with the former ones"
        ),
        "run stackinstall again (`install`, or `join` on a joined node): it restarts it",
    ))
}

/// Fails unless `unit` is enabled and active: what must hold for the
/// server to be there after a reboot, checked by the step's verification
/// (so by `status` too).
pub fn check_running(context: &Context, unit: &str) -> Result<(), StepError> {
    check_restarted(context, unit)?;
    let enabled = service::is_enabled(unit)?;
    let active = service::is_active(unit)?;
    if enabled && active {
        return Ok(());
    }
    let mut what = format!("`{unit}` {}", unit_state(enabled, active));
    if let Some(container) = container(context).filter(|_| !active) {
        what = format!(
            "{what} (this host is a container, `{container}` in `/run/systemd/container`: a server that needs the kernel's own services, like the NFS server, cannot run in it)"
        );
    }
    let hint =
        format!("`sudo systemctl enable --now {unit}`; why it stopped: `journalctl -u {unit}`");
    Err(StepError::failed(what, hint))
}

/// A unit's state in words.
pub fn unit_state(enabled: bool, active: bool) -> &'static str {
    match (enabled, active) {
        (true, true) => "is enabled and runs",
        (false, true) => "runs but is not enabled: it will not start after a reboot",
        (true, false) => "is enabled but does not run",
        (false, false) => "is not enabled and does not run",
    }
}

/// The kind of container the host is, when systemd says it runs in one
/// (`/run/systemd/container`, written by systemd as PID 1 from its
/// `container` environment variable).
pub fn container(context: &Context) -> Option<String> {
    let path = context.host.path("/run/systemd/container");
    let text = host::fs::read_optional(&path).ok()??;
    let kind = text.trim();
    (!kind.is_empty()).then(|| kind.to_string())
}

/// Installs the packages the servers of the run miss, in one `apt-get
/// update` and one `apt-get install`, recording first what each server
/// gets, for uninstall's purge.
pub struct InstallPackages {
    /// Per server, the packages it misses.
    pub servers: Vec<(Server, Vec<String>)>,
}

impl InstallPackages {
    /// Every missing package, each once.
    fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for name in self.servers.iter().flat_map(|(_, names)| names) {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        all
    }
}

impl Change for InstallPackages {
    fn kind(&self) -> ActionKind {
        ActionKind::Package
    }

    fn lines(&self) -> Vec<String> {
        let all = self.all();
        if all.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "{} (after {})",
            packages::install_command(&all),
            packages::update_command()
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        for (server, names) in &self.servers {
            context.record(&Fact::PackagesAdded(*server, names.clone()))?;
        }
        let all = self.all();
        context.ui.status(&format!("installing {}", all.join(" ")));
        // What the transaction adds is what the host has after it and did
        // not have before; a run killed during it keeps its `before`, which
        // the next run compares (`RecordTransaction`).
        context.record(&Fact::BeforeTransaction(host_packages()?))?;
        packages::install(&all)?;
        context.record(&Fact::AfterTransaction(host_packages()?))?;
        Ok(true)
    }
}

/// The host's installed packages and enabled units, as dpkg and systemd list
/// them now.
fn host_packages() -> Result<HostPackages, StepError> {
    Ok(HostPackages {
        packages: packages::installed_list()?,
        units: service::enabled_units().unwrap_or_default(),
    })
}

/// Compares the host with what it had before a transaction that a killed
/// run left uncompared: what it added joins the state's lists.
pub struct RecordTransaction;

impl Change for RecordTransaction {
    fn kind(&self) -> ActionKind {
        ActionKind::State
    }

    fn lines(&self) -> Vec<String> {
        vec!["record in the state what an interrupted apt transaction added (packages, enabled units), for uninstall".into()]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        context.record(&Fact::AfterTransaction(host_packages()?))?;
        Ok(false)
    }
}

/// What uninstall does with what the transactions added: purges the added
/// packages still installed (in one `apt-get purge`), then disables the
/// units they enabled that are still enabled, then forgets both lists (a
/// later install records its own). Nothing when the state lists none (an
/// older state: each server step purges its own packages).
pub fn purge_transaction_actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let transactions = &context.facts().packages;
    if !transactions.listed() {
        return Ok(Vec::new());
    }
    let installed = packages::installed_list()?;
    let purge: Vec<String> = (transactions.added_packages.iter())
        .filter(|package| installed.contains(package))
        .cloned()
        .collect();
    Ok(Action::change(PurgeTransactions {
        purge: (!purge.is_empty()).then(|| packages::purge_command(&purge)),
        units: transactions.enabled_units.clone(),
    })
    .into_iter()
    .collect())
}

/// Purges what the transactions added and disables the units they enabled.
struct PurgeTransactions {
    purge: Option<Command>,
    units: Vec<String>,
}

impl Change for PurgeTransactions {
    fn kind(&self) -> ActionKind {
        ActionKind::Package
    }

    fn lines(&self) -> Vec<String> {
        let mut detail = match &self.purge {
            Some(command) => format!("{command}, then "),
            None => String::new(),
        };
        if !self.units.is_empty() {
            detail.push_str(&format!(
                "systemctl disable those of {} still enabled, then ",
                self.units.join(" ")
            ));
        }
        detail.push_str("forget the state's list of what the apt transactions added");
        vec![detail]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        if let Some(command) = &self.purge {
            packages::run_apt(command)?;
        }
        let enabled = service::enabled_units()?;
        let left: Vec<String> = (self.units.into_iter())
            .filter(|unit| enabled.contains(unit))
            .collect();
        if !left.is_empty() {
            service::disable(&left).run()?;
        }
        context.change_state(|state| state.facts.forget_transactions())?;
        Ok(true)
    }
}

/// The address a verification logs in at: `configured`, or the host's own
/// address (the one pods reach it at), or loopback without a route.
pub fn login_address(configured: Option<&str>) -> String {
    if let Some(address) = configured {
        return address.to_string();
    }
    host::system::primary_ipv4()
        .map(std::net::IpAddr::V4)
        .map_or_else(|| "127.0.0.1".to_string(), |address| address.to_string())
}

/// The OS `ID` of the host (`ubuntu`, `debian`), empty when unknown.
pub fn os_id(context: &Context) -> String {
    host::system::os_release(&context.host.path("/etc/os-release"))
        .and_then(|fields| fields.get("ID").cloned())
        .unwrap_or_default()
}

/// When the install put `service`'s server on the host (`SERVICE.preexisting`
/// is `false`): stopping its `unit`, then purging its packages whole, the
/// versioned ones too (`mysql-server-8.0`, `mariadb-server-10.11`,
/// `mongodb-org-server`). A server that was there before keeps its packages,
/// and the returned note says so.
pub fn purge_actions(
    context: &Context,
    server: Server,
    packages: &[&str],
    unit: &str,
) -> Result<Vec<Action>, StepError> {
    let facts = context.facts().server(server);
    if !facts.installed_by_us() {
        return Ok(vec![Action::check(format!(
            "the {} server and its packages ({}): they were on the host before the install",
            server.name(),
            packages.join(" ")
        ))]);
    }
    if context.facts().packages.listed() {
        // The `packages` step purges exactly what its transactions added.
        return Ok(
            match service::exists(unit)?
                && (service::is_enabled(unit)? || service::is_active(unit)?)
            {
                true => vec![Action::run_as(
                    ActionKind::Service,
                    service::disable_now(unit),
                )],
                false => Vec::new(),
            },
        );
    }
    let recorded = facts.packages.iter().map(String::as_str);
    let mut installed: Vec<String> = Vec::new();
    for package in packages.iter().copied().chain(recorded) {
        if !installed.iter().any(|p| p == package) && packages::is_installed(package)? {
            installed.push(package.to_string());
        }
    }
    for package in packages::installed_matching(packages)? {
        if !installed.contains(&package) {
            installed.push(package);
        }
    }
    if installed.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![
        Action::run_as(ActionKind::Service, service::disable_now(unit)),
        Action::run_as(ActionKind::Package, packages::purge_command(&installed)),
    ])
}
