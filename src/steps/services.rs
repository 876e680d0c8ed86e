//! What the host server steps (`mysql`, `mongodb`, `rabbitmq`, `nfs`) share:
//! installing missing packages, recording whether the server was on the
//! host before the first install, and starting or restarting its unit.

use super::{Action, ActionKind, StepError};
use crate::context::Context;
use crate::host::{self, packages, service};

const INSTALL_PACKAGES: &str = "install-packages";
const RECORD_PREEXISTING: &str = "record-preexisting";
const RECORD_NEW: &str = "record-new";

/// The state key that says whether `service`'s server was there before us.
pub fn preexisting_key(service: &str) -> String {
    format!("{service}.preexisting")
}

/// The package actions for `packages`: nothing when all are installed.
/// Also records, before anything changes, whether the server was already
/// there (`preexisting`), once.
pub fn package_actions(
    context: &Context,
    service: &str,
    packages: &[&str],
) -> Result<Vec<Action>, StepError> {
    let missing = packages::missing(packages)?;
    let mut actions = Vec::new();
    if context.fact(&preexisting_key(service)).is_none() {
        let (tag, what) = match missing.is_empty() {
            true => (
                RECORD_PREEXISTING,
                "was already on the host: uninstall keeps it",
            ),
            false => (RECORD_NEW, "is new on this host: uninstall may remove it"),
        };
        let detail = format!("record in the state that {service} {what}");
        actions.push(Action::custom(ActionKind::Check, tag, detail));
    }
    if !missing.is_empty() {
        let detail = format!(
            "{} (after {})",
            packages::install_command(&missing),
            packages::update_command()
        );
        actions.push(Action::custom(
            ActionKind::Package,
            INSTALL_PACKAGES,
            detail,
        ));
    }
    Ok(actions)
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
    let mut action = Action::run(command);
    action.kind = ActionKind::Service;
    Ok(Some(action))
}

/// Carries out a generic action or one of the shared custom ones for
/// `service`; returns `None` for a custom action that is the step's own.
pub fn perform(
    context: &mut Context,
    service: &str,
    action: &Action,
    packages: &[&str],
) -> Result<Option<bool>, StepError> {
    match action.tag() {
        Some(RECORD_PREEXISTING) => context
            .record_fact(&preexisting_key(service), "true")
            .map(|()| Some(false)),
        Some(RECORD_NEW) => context
            .record_fact(&preexisting_key(service), "false")
            .map(|()| Some(false)),
        Some(INSTALL_PACKAGES) => {
            let missing = packages::missing(packages)?;
            context.record_fact(&packages_key(service), &missing.join(" "))?;
            context
                .ui
                .status(&format!("installing {}", missing.join(" ")));
            packages::install(&missing)?;
            Ok(Some(true))
        }
        Some(_) => Ok(None),
        None => action.perform().map(Some),
    }
}

/// Carries out a server step's `actions`: the shared ones through
/// [`perform`], and the step's own (its provisioning, however many actions
/// the plan lists for it) by one call of `provision`. Whether anything
/// changed.
pub fn apply(
    context: &mut Context,
    service: &str,
    actions: &[Action],
    packages: &[&str],
    provision: fn(&mut Context) -> Result<bool, StepError>,
) -> Result<bool, StepError> {
    let (mut changed, mut provisioned) = (false, false);
    for action in actions {
        match perform(context, service, action, packages)? {
            Some(result) => changed |= result,
            None if !provisioned => {
                changed |= provision(context)?;
                provisioned = true;
            }
            None => {}
        }
    }
    Ok(changed)
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
    let mut stop = Action::run(service::disable_now(unit));
    stop.kind = ActionKind::Service;
    let mut purge = Action::run(packages::purge_command(&installed));
    purge.kind = ActionKind::Package;
    Ok(vec![stop, purge])
}
