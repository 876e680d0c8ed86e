//! One apt transaction for the host's servers. Before `mysql`, `mongodb`,
//! `rabbitmq` and `nfs` configure their servers, this step asks each of them
//! that is part of the run which Debian packages it needs and where they
//! come from (MongoDB's own repository and signing key), records per server
//! whether it was on the host already and which packages it misses, adds
//! the sources, and installs every missing package with one `apt-get
//! update` and one `apt-get install`, recording exactly what that
//! transaction added (dpkg's list and the enabled units, before and after),
//! which `uninstall --delete-db` purges and disables. The steps that then run side
//! by side never wait on dpkg's lock for each other, and apt resolves all
//! the packages at once. A step left out of the run (`--skip-db`, `--only`,
//! `--from`) gets nothing installed; with none of them left, this step is
//! left out too. Done when every package of the run's servers is installed.

use super::services::{self, InstallPackages, ServerPackages, ServerRole};
use super::{Action, Step, StepError, StepId, StepInfo};
use crate::context::Context;
use crate::host::packages;

/// The packages step.
pub struct Packages;

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    needs: &[StepId::Preflight],
    role: super::Role::ServesDependents,
    ..StepInfo::database(
        StepId::Packages,
        "Install the host servers' packages at once",
    )
};

impl Step for Packages {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let wanted = wanted(context)?;
        let missing = missing(&wanted)?;
        let mut actions = Vec::new();
        let mut before_install = Vec::new();
        let mut install = InstallPackages {
            servers: Vec::new(),
        };
        for (role, server) in wanted {
            let absent: Vec<String> = (server.names.iter())
                .filter(|name| missing.contains(name))
                .cloned()
                .collect();
            actions.extend(services::preexisting_action(
                context,
                server.server,
                absent.is_empty(),
            ));
            if !absent.is_empty() {
                before_install.extend((role.before_install)(context)?);
                install.servers.push((server.server, absent));
            }
        }
        let interrupted = context.facts().packages.before.is_some();
        if missing.is_empty() && interrupted {
            actions.extend(Action::change(services::RecordTransaction));
        }
        actions.extend(before_install);
        actions.extend(Action::change(install));
        Ok(actions)
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        Self::removals(context)
    }

    /// Every package of the run's servers is installed.
    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let missing = missing(&wanted(context)?)?;
        match missing.is_empty() {
            true => Ok(()),
            false => Err(StepError::failed(
                format!("`{}` not installed", missing.join("`, `")),
                "run the install again; `apt-get install` says why a package does not install",
            )),
        }
    }
}

impl Packages {
    /// Uninstall: purges exactly the packages the install's transactions
    /// added and disables the units they enabled.
    fn removals(context: &Context) -> Result<Vec<Action>, StepError> {
        services::purge_transaction_actions(context)
    }
}

/// The packages of `wanted` that are not installed (one `dpkg-query`),
/// each once.
fn missing(wanted: &[Wanted]) -> Result<Vec<String>, StepError> {
    let mut names: Vec<&str> = Vec::new();
    for name in wanted.iter().flat_map(|(_, server)| &server.names) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    Ok(packages::missing(&names)?)
}

/// A server step of the run, with the packages it wants.
type Wanted = (ServerRole, ServerPackages);

/// What the server steps of the run want installed.
fn wanted(context: &Context) -> Result<Vec<Wanted>, StepError> {
    let mut wanted = Vec::new();
    for id in &context.included {
        if let Some(role) = id.info().server {
            wanted.push((role, (role.packages)(context)?));
        }
    }
    Ok(wanted)
}
