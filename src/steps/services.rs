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

/// The service action: a restart when its configuration changed, a start
/// when it is not running, else nothing.
pub fn service_action(unit: &str, config_changed: bool) -> Result<Option<Action>, StepError> {
    let command = if config_changed {
        service::restart(unit)
    } else if !service::is_active(unit)? {
        service::enable_now(unit)
    } else {
        return Ok(None);
    };
    Ok(Some(Action::run_as(ActionKind::Service, command)))
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
    packages::install(&all)?;
    Ok(true)
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
