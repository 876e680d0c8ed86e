//! `stackinstall ha enable`: moves the first server's datastore from SQLite
//! to embedded etcd, which a second server needs to join (docs.k3s.io
//! "High Availability Embedded etcd", "Converting from SQLite to embedded
//! etcd": restart the server with `cluster-init`, K3s v1.22.2 or later).
//! The K3s step does it through the engine (checkpoint, lock, log, kill
//! points): a backup of the host first (the `backup` command's archive:
//! the datastore and the server token among it), then `cluster-init: true`
//! in `/etc/rancher/k3s/config.yaml` and one restart.

use std::path::Path;

use super::Result;
use crate::cli::{HaAction, HaArgs};
use crate::config::Flags;
use crate::context::Context;
use crate::engine::Selection;
use crate::engine::install as engine;
use crate::host::{self, service};
use crate::steps::k3s::{self, config_file};
use crate::steps::{StepError, preflight};
use crate::upgrade::Version;

/// The first K3s that converts SQLite to etcd on a `cluster-init` restart.
const FIRST_CONVERTING: Version = Version {
    major: 1,
    minor: 22,
    patch: 2,
};

/// Runs `ha`.
pub fn run(root: &Path, args: HaArgs) -> Result<()> {
    let HaAction::Enable = args.action;
    preflight::check_root()?;
    let mut context = super::command_context(root, &args.config, Flags::default(), false, false)?;
    if !service::is_active("k3s").map_err(StepError::from)? {
        return Err(StepError::input(
            "K3s does not run as a server on this host: `ha enable` runs on the first server",
            "start K3s (`systemctl start k3s`), or install first (`stackinstall install`)",
        )
        .into());
    }
    if config_file::has_etcd(&context) {
        crate::outln!(
            "K3s already keeps its data in embedded etcd: servers can join (`sudo stackinstall join-command --role server`)."
        );
        return Ok(());
    }
    check_version(&context)?;
    context.cluster_init = true;
    context.back_up = Some(crate::backup::before_upgrade);
    let _lock = context.state_file().lock()?;
    context.reload_state()?;
    context.log_path = Some(host::log::start(
        &context.host.path(super::install::LOG_DIR),
        "ha-enable",
    )?);
    let inclusion = Selection::ha().resolve();
    context.included = inclusion.included();
    engine::run(&mut context, &inclusion, 1)?;
    if !host::fs::exists(&context.host.path(host::backup::K3S_ETCD)) {
        return Err(StepError::failed(
            "K3s restarted, but `/var/lib/rancher/k3s/server/db/etcd` is not there: the datastore is still SQLite",
            "look at `journalctl -u k3s`; the backup taken first is in `[backup] directory`",
        )
        .into());
    }
    crate::outln!(
        "K3s keeps its data in embedded etcd now. Join two more servers, one at a time (`sudo stackinstall join-command --role server`): three servers survive the loss of one; two survive none."
    );
    Ok(())
}

/// K3s v1.22.2 or later: older ones cannot convert SQLite to etcd.
fn check_version(context: &Context) -> Result<(), StepError> {
    let version = k3s::running_version(context)?.unwrap_or_default();
    if Version::parse(&version) < Some(FIRST_CONVERTING) {
        return Err(StepError::input(
            format!(
                "K3s {version} cannot move its datastore from SQLite to etcd (v1.22.2 and later can)"
            ),
            "upgrade K3s first (`versions.k3s` in a --config file, then `sudo stackinstall install`)",
        ));
    }
    Ok(())
}
