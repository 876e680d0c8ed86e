//! The export directory's parent (`/data`): only root enters it, so no
//! local user reaches the volumes. Made 0700 root:root when missing (the
//! fact recorded), given that back when it was widened since; one that was
//! there before and lets others in is refused before anything changes.

use std::path::Path;

use crate::action::Owner;
use crate::context::Context;
use crate::host;
use crate::state::{Fact, Object, Origin};
use crate::steps::{Action, StepError, StepId};

/// The export directory's parent, when the install made it: root's alone.
pub(super) const PARENT_MODE: u32 = 0o700;
pub(super) const ROOT: Owner = Owner {
    ids: (0, 0),
    name: "root:root",
};

/// The directory the export directory is in: never `/` (only root may
/// enter it, and `/` cannot be that).
fn parent_path(path: &str) -> Result<&str, StepError> {
    match Path::new(path).parent().and_then(Path::to_str) {
        Some(parent) if parent != "/" && !parent.is_empty() => Ok(parent),
        _ => Err(StepError::input(
            format!(
                "`nfs.path` = {path:?} is directly under `/`: its parent must be a directory only root may enter"
            ),
            "put the export one level down (`/data/stackbill`); `nfs.path` is stored in every PersistentVolume, so choose it before the first install",
        )),
    }
}

/// The export directory's parent: recorded as made by the install when it
/// is missing (the directory's making makes it 0700 root:root), given
/// 0700 root:root back when the install made it and it changed since,
/// refused when it was there before and others may enter it.
pub(super) fn parent_look(context: &Context) -> Result<(Option<Fact>, Option<Action>), StepError> {
    let parent = parent_path(&context.config.nfs.path)?;
    let host_parent = context.host.path(parent);
    let found = parent_mode_and_owner(&host_parent)?;
    let claim = context.claim_of(Object::ExportParent, found.is_some());
    let claimed = match &claim {
        Some(Fact::Origin(_, origin)) => Some(*origin),
        _ => None,
    };
    let made = context.origin(&Object::ExportParent).or(claimed) == Some(Origin::Created);
    let Some((mode, uid, gid)) = found else {
        return Ok((claim, None));
    };
    let shown = context.shown(&host_parent);
    if made && (mode, (uid, gid)) != (PARENT_MODE, ROOT.ids) {
        let now = format!("mode {mode:04o}, owner {uid}:{gid}");
        let action = Action::set_mode_and_owner(
            context.host.reached(host_parent),
            &now,
            (PARENT_MODE, ROOT),
            "the install made it: only root enters it",
        );
        return Ok((claim, Some(action)));
    }
    match made || root_only(mode, uid) {
        true => Ok((claim, None)),
        false => Err(StepError::input(
            format!(
                "`{}`, the parent of the export directory, is mode {mode:04o}, owner {uid}:{gid}: local users could enter it and reach every volume in `{}`; nothing was changed",
                shown.display(),
                context.config.nfs.path
            ),
            format!(
                "make it root's alone (NFS clients are not affected: the server finds the export by its path as root): `sudo chown root:root {0} && sudo chmod 0700 {0}`, then run again",
                shown.display()
            ),
        )),
    }
}

/// For `preflight`, before any step changes anything: the export's parent
/// is refused there when it was there before and others may enter it
/// (nothing is shown when it is fine: `nfs` itself says what it changes).
pub(super) fn check_parent(context: &Context) -> Result<Option<Action>, StepError> {
    if context.included.contains(&StepId::Nfs) {
        parent_look(context)?;
    }
    Ok(None)
}

/// Whether a directory of `mode` owned by `uid` lets only root in.
fn root_only(mode: u32, uid: u32) -> bool {
    uid == ROOT.ids.0 && mode & 0o077 == 0
}

/// The mode and owner of the directory at `path` (opened as a write's
/// parents are, see `host::fs::open_dir`); `None` when it is missing.
fn parent_mode_and_owner(path: &Path) -> Result<Option<(u32, u32, u32)>, StepError> {
    match host::fs::open_dir(path) {
        Ok(held) => Ok(Some(held.mode_and_owner())),
        Err(error) if error.source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// What is wrong with the export directory's parent: others may enter it
/// (or, when the install `made` it, it is no longer 0700 root:root);
/// `None` when it is fine or missing (the directory's own check says so).
pub fn parent_problem(
    host: &host::Host,
    path: &str,
    made: bool,
) -> Result<Option<String>, StepError> {
    let parent = parent_path(path)?;
    let Some((mode, uid, gid)) = parent_mode_and_owner(&host.path(parent))? else {
        return Ok(None);
    };
    let wanted = match made {
        true => (mode, (uid, gid)) == (PARENT_MODE, ROOT.ids),
        false => root_only(mode, uid),
    };
    Ok((!wanted).then(|| {
        let made = match made {
            true => "made by the install 0700 root:root, ",
            false => "",
        };
        format!(
            "`{parent}`, the parent of the export directory `{path}` ({made}now mode {mode:04o}, owner {uid}:{gid}), lets others in: local users can reach every volume"
        )
    }))
}
