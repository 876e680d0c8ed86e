//! What the host server steps (`mysql`, `mongodb`, `rabbitmq`, `nfs`) share:
//! the packages they need (installed by the `packages` step, in one apt
//! transaction), recording whether the server was on the host before the
//! first install, and starting or restarting its unit.

use super::{Action, ActionKind, Change, StepError};
pub use super::{ServerPackages, ServerRole};
use crate::context::Context;
use crate::host::{self, packages, service};
use crate::state::{Fact, Preexisting, Server};

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
        packages::install(&all)?;
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
