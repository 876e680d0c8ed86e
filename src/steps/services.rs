//! What the host server steps (`mysql`, `mongodb`, `rabbitmq`, `nfs`) share:
//! the packages they need (installed by the `packages` step, in one apt
//! transaction), recording whether the server was on the host before the
//! first install, and starting or restarting its unit.

use super::{Action, ActionKind, StepError};
use crate::context::Context;
use crate::host::{self, packages, service};

/// The state key that says whether `service`'s server was there before us.
pub fn preexisting_key(service: &str) -> String {
    format!("{service}.preexisting")
}

/// The Debian packages a server step needs, and the apt sources (files to
/// write, keys to fetch) to add before they can install.
pub struct ServerPackages {
    /// The server's name in the state's facts (`mysql`, `mongodb`, ...).
    pub service: &'static str,
    pub names: Vec<String>,
}

/// Whether every one of `packages` is installed.
pub fn installed(packages: &[&str]) -> Result<bool, StepError> {
    Ok(packages::missing(packages)?.is_empty())
}

/// The action that records, before anything changes, whether `service`'s
/// server was already there (`preexisting`), once; `None` once recorded.
pub fn preexisting_action(context: &Context, service: &str, present: bool) -> Option<Action> {
    if context.fact(&preexisting_key(service)).is_some() {
        return None;
    }
    let (preexisting, what) = match present {
        true => ("true", "was already on the host: uninstall keeps it"),
        false => ("false", "is new on this host: uninstall may remove it"),
    };
    let detail = format!("record in the state that {service} {what}");
    let key = preexisting_key(service);
    Some(Action::call(ActionKind::Check, detail, move |context| {
        context.record_fact(&key, preexisting).map(|()| false)
    }))
}

/// What makes `unit` enabled (started at every boot) and active, running
/// with its current configuration: `systemctl enable` when it is not
/// enabled (a package may install a unit without enabling it, as
/// mongodb-org does), then a restart when its configuration changed while
/// it ran, or a start when it does not run.
pub fn service_actions(unit: &str, config_changed: bool) -> Result<Vec<Action>, StepError> {
    let mut actions = Vec::new();
    if !service::is_enabled(unit)? {
        actions.push(Action::run_as(ActionKind::Service, service::enable(unit)));
    }
    let active = service::is_active(unit)?;
    if config_changed && active {
        actions.push(Action::run_as(ActionKind::Service, service::restart(unit)));
    } else if !active {
        actions.push(Action::run_as(ActionKind::Service, service::start(unit)));
    }
    Ok(actions)
}

/// Fails unless `unit` is enabled and active: what must hold for the
/// server to be there after a reboot, checked by the step's verification
/// (so by `status` too).
pub fn check_running(context: &Context, unit: &str) -> Result<(), StepError> {
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

/// Installs those of each server's `packages` that are missing, in one
/// `apt-get update` and one `apt-get install`, recording first what each
/// server gets (`SERVICE.packages`) for uninstall.
pub fn install_missing(
    context: &mut Context,
    servers: &[(&'static str, Vec<String>)],
) -> Result<bool, StepError> {
    let mut all = Vec::new();
    for (service, names) in servers {
        let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
        let missing = packages::missing(&wanted)?;
        if !missing.is_empty() {
            context.record_fact(&packages_key(service), &missing.join(" "))?;
        }
        let new: Vec<String> = (missing.into_iter())
            .filter(|name| !all.contains(name))
            .collect();
        all.extend(new);
    }
    if all.is_empty() {
        return Ok(false);
    }
    context.ui.status(&format!("installing {}", all.join(" ")));
    record_before_transaction(context)?;
    packages::install(&all)?;
    record_transaction(context)?;
    Ok(true)
}

/// The state key of the packages the install's apt transactions added,
/// space-separated: what `uninstall --delete-db` purges.
pub const ADDED_PACKAGES: &str = "packages.added";
/// The state key of the units the transactions enabled (their packages'
/// maintainer scripts did): what uninstall disables, if a purge leaves them.
pub const ENABLED_UNITS: &str = "packages.enabled-units";
/// What the host had before the transaction, kept until it is compared.
const PACKAGES_BEFORE: &str = "packages.installed-before";
const UNITS_BEFORE: &str = "packages.units-before";

/// Records the installed packages and enabled units before a transaction
/// (a run killed during it compares them on its next run).
fn record_before_transaction(context: &mut Context) -> Result<(), StepError> {
    let packages = packages::installed_list()?;
    if packages.is_empty() {
        return Ok(());
    }
    let units = service::enabled_units().unwrap_or_default();
    // A run killed during its transaction left the host's state before it:
    // that one stays (the transaction may still be running).
    context.record_fact(PACKAGES_BEFORE, &packages.join(" "))?;
    context.record_fact(UNITS_BEFORE, &units.join(" "))?;
    Ok(())
}

/// Adds what the transaction added (packages, enabled units) to the
/// state's lists, comparing the host with what it had before; once.
pub fn record_transaction(context: &mut Context) -> Result<(), StepError> {
    let Some(before) = context.fact(PACKAGES_BEFORE).map(str::to_string) else {
        return Ok(());
    };
    let units_before = context.fact(UNITS_BEFORE).unwrap_or_default().to_string();
    let new = |now: Vec<String>, before: &str, key: &str| {
        let before: Vec<&str> = before.split_whitespace().collect();
        let mut list: Vec<String> = context
            .fact(key)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for item in now
            .into_iter()
            .filter(|item| !before.contains(&item.as_str()))
        {
            if !list.contains(&item) {
                list.push(item);
            }
        }
        list.join(" ")
    };
    let packages = new(packages::installed_list()?, &before, ADDED_PACKAGES);
    let units = new(
        service::enabled_units().unwrap_or_default(),
        &units_before,
        ENABLED_UNITS,
    );
    context.set_fact(ADDED_PACKAGES, &packages)?;
    context.set_fact(ENABLED_UNITS, &units)?;
    context.forget_fact(PACKAGES_BEFORE)?;
    context.forget_fact(UNITS_BEFORE)?;
    Ok(())
}

/// Whether a transaction was started but not compared yet (the run that
/// started it was killed).
pub fn transaction_unrecorded(context: &Context) -> bool {
    context.fact(PACKAGES_BEFORE).is_some()
}

/// What uninstall does with what the transactions added: purges the added
/// packages still installed (in one `apt-get purge`), then disables the
/// units they enabled that are still enabled, then forgets both lists (a
/// later install records its own). Nothing when the state lists none (an
/// older state: each server step purges its own packages).
pub fn purge_transaction_actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let listed = |key: &str| -> Vec<String> {
        let list = context.fact(key).unwrap_or_default();
        list.split_whitespace().map(str::to_string).collect()
    };
    let (added, units) = (listed(ADDED_PACKAGES), listed(ENABLED_UNITS));
    if context.fact(ADDED_PACKAGES).is_none() && context.fact(ENABLED_UNITS).is_none() {
        return Ok(Vec::new());
    }
    let installed = packages::installed_list()?;
    let purge: Vec<String> = (added.into_iter())
        .filter(|package| installed.contains(package))
        .collect();
    let command = (!purge.is_empty()).then(|| packages::purge_command(&purge));
    let mut detail = match &command {
        Some(command) => format!("{command}, then "),
        None => String::new(),
    };
    if !units.is_empty() {
        detail.push_str(&format!(
            "systemctl disable those of {} still enabled, then ",
            units.join(" ")
        ));
    }
    detail.push_str("forget the state's list of what the apt transactions added");
    let undo = move |context: &mut Context| -> Result<bool, StepError> {
        if let Some(command) = &command {
            packages::run_apt(command)?;
        }
        let enabled = service::enabled_units()?;
        let left: Vec<String> = (units.into_iter())
            .filter(|unit| enabled.contains(unit))
            .collect();
        if !left.is_empty() {
            service::disable(&left).run()?;
        }
        context.forget_fact(ADDED_PACKAGES)?;
        context.forget_fact(ENABLED_UNITS)?;
        Ok(true)
    };
    Ok(vec![Action::call(ActionKind::Package, detail, undo)])
}

/// The address a verification logs in at: `configured`, or the host's own
/// address (the one pods reach it at), or loopback without a route.
pub fn login_address(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
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

/// The state key that lists the packages the install put on the host for
/// `service` (recorded before it installs them).
pub fn packages_key(service: &str) -> String {
    format!("{service}.packages")
}

/// When the install put `service`'s server on the host (`SERVICE.preexisting`
/// is `false`): stopping its `unit`, then purging its packages whole, the
/// versioned ones too (`mysql-server-8.0`, `mariadb-server-10.11`,
/// `mongodb-org-server`). A server that was there before keeps its packages,
/// and the returned note says so.
pub fn purge_actions(
    context: &Context,
    service: &str,
    packages: &[&str],
    unit: &str,
) -> Result<Vec<Action>, StepError> {
    if context.fact(&preexisting_key(service)) != Some("false") {
        return Ok(vec![Action::check(format!(
            "the {service} server and its packages ({}): they were on the host before the install",
            packages.join(" ")
        ))]);
    }
    if context.fact(ADDED_PACKAGES).is_some() {
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
    let recorded = context.fact(&packages_key(service)).unwrap_or_default();
    let mut installed: Vec<String> = Vec::new();
    for package in packages.iter().copied().chain(recorded.split_whitespace()) {
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
