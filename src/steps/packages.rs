//! One apt transaction for the host's servers. Before `mysql`, `mongodb`,
//! `rabbitmq` and `nfs` configure their servers, this step asks each of them
//! that is part of the run which Debian packages it needs and where they
//! come from (MongoDB's own repository and signing key), records per server
//! whether it was on the host already (`SERVICE.preexisting`; then
//! `SERVICE.packages`, what the install put there, for uninstall's purge),
//! adds the sources, and installs every missing package with one
//! `apt-get update` and one `apt-get install`. The steps that then run side
//! by side never wait on dpkg's lock for each other, and apt resolves all
//! the packages at once. A step left out of the run (`--skip-db`, `--only`,
//! `--from`) gets nothing installed; with none of them left, this step is
//! left out too. Done when every package of the run's servers is installed.

use super::services::{self, ServerPackages};
use super::{Action, ActionKind, Group, Step, StepError};
use crate::context::Context;
use crate::host::packages;

/// The packages step.
pub struct Packages;

impl Step for Packages {
    fn id(&self) -> &'static str {
        "packages"
    }

    fn title(&self) -> &'static str {
        "Install the host servers' packages at once"
    }

    fn group(&self) -> Group {
        Group::Database
    }

    fn needs(&self) -> &'static [&'static str] {
        &["preflight"]
    }

    fn serves_dependents(&self) -> bool {
        true
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let wanted = wanted(context)?;
        let missing = missing(&wanted)?;
        let mut actions = Vec::new();
        let mut before_install = Vec::new();
        let mut installs: Vec<(&'static str, Vec<String>)> = Vec::new();
        for (step, server) in wanted {
            let complete = !server.names.iter().any(|name| missing.contains(name));
            actions.extend(services::preexisting_action(
                context,
                server.service,
                complete,
            ));
            if !complete {
                before_install.extend(step.before_install(context)?);
                installs.push((server.service, server.names));
            }
        }
        if missing.is_empty() && services::transaction_unrecorded(context) {
            let detail = "record what an interrupted apt transaction added (packages, enabled units), for uninstall";
            actions.push(Action::call(ActionKind::Check, detail, |context| {
                services::record_transaction(context).map(|()| false)
            }));
        }
        if missing.is_empty() {
            return Ok(actions);
        }
        actions.extend(before_install);
        let detail = format!(
            "{} (after {})",
            packages::install_command(&missing),
            packages::update_command()
        );
        actions.push(Action::call(ActionKind::Package, detail, move |context| {
            services::install_missing(context, &installs)
        }));
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

/// A step of the run that needs this one, with the packages it wants.
type Wanted = (Box<dyn Step>, ServerPackages);

/// What the steps of the run that need this one want installed.
fn wanted(context: &Context) -> Result<Vec<Wanted>, StepError> {
    let mut wanted = Vec::new();
    for step in super::all() {
        let included = context.included.iter().any(|id| id == step.id());
        if included
            && step.needs().contains(&"packages")
            && let Some(server) = step.packages(context)?
        {
            wanted.push((step, server));
        }
    }
    Ok(wanted)
}
