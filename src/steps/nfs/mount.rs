//! The export directory bound onto itself `nosuid,nodev` by a mount unit
//! (`/etc/systemd/system/data-stackbill.mount`, from
//! `templates/nfs-export.mount`): a set-uid program a pod leaves in a
//! volume runs without its owner's rights on the host. Written, enabled
//! and started by the step; stopped and removed by uninstall, the data
//! underneath kept.

use crate::config::Config;
use crate::context::Context;
use crate::host::{self, service};
use crate::render::{self, RenderError};
use crate::steps::services::{self, UnitFile};
use crate::steps::{Action, StepError};

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

/// The mount unit's file (absolute path on the host) and name.
fn mount_unit_file(context: &Context) -> (String, String) {
    let unit = service::mount_unit(&context.config.nfs.path);
    (format!("{SYSTEMD_DIR}/{unit}"), unit)
}

/// The bind mount `nosuid,nodev`: its unit written when it differs,
/// systemd told, the unit enabled and started, or restarted when it was
/// active with another file (`services::own_unit_actions`: a run killed
/// between the write and the restart leaves the restart to the next run).
pub(super) fn mount_actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let (path, unit) = mount_unit_file(context);
    let contents = mount_unit_text(&context.config).map_err(crate::steps::template_bug)?;
    let file = UnitFile {
        path,
        contents,
        mode: 0o644,
    };
    services::own_unit_actions(context, &unit, vec![file])
}

/// The mount unit as written, enabled and active.
pub(super) fn check_mount(context: &Context) -> Result<(), StepError> {
    let (path, unit) = mount_unit_file(context);
    let path = context.host.path(path);
    let wanted = mount_unit_text(&context.config).map_err(crate::steps::template_bug)?;
    let hint = "run `sudo stackinstall install --redo nfs`";
    services::check_restarted(context, &unit)?;
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
pub(super) fn mount_removal(context: &Context) -> Vec<Action> {
    let (path, unit) = mount_unit_file(context);
    services::own_unit_removals(context, &unit, &[path])
}
