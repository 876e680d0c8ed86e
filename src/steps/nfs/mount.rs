//! The export directory bound onto itself `nosuid,nodev` by a mount unit
//! (`/etc/systemd/system/data-stackbill.mount`, from
//! `templates/nfs-export.mount`): a set-uid program a pod leaves in a
//! volume runs without its owner's rights on the host. Written, enabled
//! and started by the step; stopped and removed by uninstall, the data
//! underneath kept.

use std::path::PathBuf;

use crate::config::Config;
use crate::context::Context;
use crate::host::{self, service};
use crate::render::{self, RenderError};
use crate::state::{Fact, Reload};
use crate::steps::{Action, ActionKind, StepError, services};

const SYSTEMD_DIR: &str = "/etc/systemd/system";
const TEMPLATE: &str = "nfs-export.mount";

/// The mount unit of the export directory, rendered.
fn mount_unit_text(config: &Config) -> Result<String, RenderError> {
    render::template(TEMPLATE, minijinja::context! { path => config.nfs.path })
}

/// The mount unit for `render`.
pub(super) fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    Ok(vec![(
        service::mount_unit(&config.nfs.path),
        mount_unit_text(config)?,
    )])
}

/// The mount unit's file (host path) and name.
fn mount_unit_file(context: &Context) -> (PathBuf, String) {
    let unit = service::mount_unit(&context.config.nfs.path);
    (context.host.path(format!("{SYSTEMD_DIR}/{unit}")), unit)
}

/// The bind mount `nosuid,nodev`: its unit written when it differs
/// (first recorded as waiting for a restart, as `services::service_actions`
/// does: a run killed between the write and the restart leaves the old
/// options mounted, and the next run finds the file already right),
/// systemd told, the unit enabled and started (restarted when it was
/// active with another file, or a restart is still pending).
pub(super) fn mount_actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let (path, unit) = mount_unit_file(context);
    let wanted = mount_unit_text(&context.config).map_err(crate::steps::template_bug)?;
    let written = host::fs::read_optional(&path)?.as_deref() != Some(wanted.as_str());
    let reload = Reload::Restart(unit.clone());
    let pending = context.facts().pending.contains(&reload);
    let mut actions = Vec::new();
    if written {
        if !pending {
            actions.push(Action::record(Fact::ReloadPending(reload.clone())));
        }
        actions.push(Action::write(
            context.host.reached(path),
            wanted.into_bytes(),
            0o644,
        ));
    }
    if written || pending {
        actions.push(Action::run(service::daemon_reload()));
    }
    let (enabled, active) = (service::is_enabled(&unit)?, service::is_active(&unit)?);
    let command = match (enabled && active, written || pending) {
        (false, _) => service::enable_now(&unit),
        (true, true) => service::restart(&unit),
        (true, false) => return Ok(actions),
    };
    actions.extend(Action::change(services::Reread { command, reload }));
    Ok(actions)
}

/// The mount unit as written, enabled and active.
pub(super) fn check_mount(context: &Context) -> Result<(), StepError> {
    let (path, unit) = mount_unit_file(context);
    let wanted = mount_unit_text(&context.config).map_err(crate::steps::template_bug)?;
    let hint = "run `sudo stackinstall install --redo nfs`";
    if context
        .facts()
        .pending
        .contains(&Reload::Restart(unit.clone()))
    {
        return Err(StepError::failed(
            format!(
                "`{unit}` was rewritten but not restarted since (a run stopped in between): the export may still be bound with the former options"
            ),
            hint,
        ));
    }
    if host::fs::read_optional(&path)?.as_deref() != Some(wanted.as_str()) {
        return Err(StepError::failed(
            format!(
                "the mount unit `{}` is not as the step wrote it: set-uid programs in the export may not be inert",
                context.shown(&path).display()
            ),
            hint,
        ));
    }
    let (enabled, active) = (service::is_enabled(&unit)?, service::is_active(&unit)?);
    if !(enabled && active) {
        return Err(StepError::failed(
            format!(
                "`{unit}` {}: the export is not bound `nosuid,nodev`",
                services::unit_state(enabled, active)
            ),
            format!("{hint}; why it stopped: `journalctl -u {unit}`"),
        ));
    }
    Ok(())
}

/// Unmounts the bind mount and removes its unit (the data underneath
/// stays where it was).
pub(super) fn mount_removal(context: &Context) -> Result<Vec<Action>, StepError> {
    let (path, unit) = mount_unit_file(context);
    if !host::fs::exists(&path) {
        return Ok(Vec::new());
    }
    Ok(vec![
        Action::run_as(ActionKind::Service, service::disable_now(&unit)),
        Action::remove(context.host.reached(path)),
        Action::run(service::daemon_reload()),
    ])
}
