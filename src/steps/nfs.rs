//! NFS: names nfs-kernel-server to the `packages` step, makes the export
//! directory (`/data/stackbill`, owned by nobody:nogroup, mode 0777, so the
//! provisioner's pods can make their volume directories; a directory that
//! is already there keeps its mode and owner, which the plan reports, unless
//! `[nfs] fix_permissions = true`) under a parent only root enters (made
//! 0700 root:root and kept so when the install made it; an existing one
//! that others may enter is refused before anything changes), binds the
//! directory onto itself `nosuid,nodev` with a mount unit (a set-uid
//! program a pod leaves there is inert on the host), and keeps one marked
//! block in `/etc/exports` that exports it to the nodes' addresses only
//! (the kubelet mounts NFS volumes from the node, never from the pod
//! network), with the profile's squash option. Lines other software put in
//! `/etc/exports` are kept as they are; `exportfs -ra` runs only when the
//! block or the mount changed.
//!
//! Done when the block is as the profile says, the directory and its
//! parent are as above, the mount unit is as written, enabled and active,
//! and `exportfs` lists the path. Whether the server was on the host
//! before, and whether the install made the parent, are recorded;
//! uninstall removes the block and the mount unit, keeps the directory and
//! its data (and the package only goes when it was new). The
//! nfs-subdir-external-provisioner chart (StorageClass `nfs-client`) is
//! cluster work, not this step's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::services;
use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::action::Owner;
use crate::config::Config;
use crate::context::{Context, kept_because};
use crate::host::{self, Command, service};
use crate::render::{self, RenderError};
use crate::state::{Fact, Fingerprint, Object, Origin, Reload, Server};

/// The nfs step.
pub struct Nfs;

const PACKAGE: &str = "nfs-kernel-server";
/// The server's own unit; `nfs-kernel-server.service` is an alias of it on
/// Debian and Ubuntu, which `systemctl is-enabled` answers `alias` for.
pub const UNIT: &str = "nfs-server.service";
const EXPORTS: &str = "/etc/exports";
const BEGIN: &str = "# BEGIN stackinstall: managed block, change the profile's [nfs] instead";
const END: &str = "# END stackinstall";
const DIRECTORY_MODE: u32 = 0o777;
/// The export directory's parent, when the install made it: root's alone.
const PARENT_MODE: u32 = 0o700;
const ROOT: Owner = Owner {
    ids: (0, 0),
    name: "root:root",
};
const SYSTEMD_DIR: &str = "/etc/systemd/system";
const MOUNT_TEMPLATE: &str = "nfs-export.mount";
/// `nobody` and `nogroup` on Debian and Ubuntu.
const NOBODY: Owner = Owner {
    ids: (65534, 65534),
    name: "nobody:nogroup",
};

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    server: Some(super::ServerRole {
        packages: server_packages,
        before_install: super::nothing_before_install,
    }),
    needs: &[StepId::Preflight, StepId::Packages],
    rendered: Some(rendered),
    preflight: Some(check_parent),
    ..StepInfo::database(StepId::Nfs, "NFS export for the cluster's volumes")
};

impl Step for Nfs {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config = &context.config;
        fingerprint.add("path", &config.nfs.path);
        fingerprint.add("options", config.nfs.options());
        fingerprint.add("fix_permissions", config.nfs.fix_permissions.to_string());
        fingerprint.add(
            "host_ip",
            config.cluster.host_ip.as_deref().unwrap_or_default(),
        );
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        host::fs::check_shared_dir(&context.host.path(&context.config.nfs.path))?;
        // A parent others may enter is refused here, before any change.
        let (parent_record, parent_action) = parent_look(context)?;
        let mut actions: Vec<Action> = parent_action.into_iter().collect();
        actions.extend(directory_action(context));
        // The server first: where it cannot run (a container) that is what
        // the step says, not a bind mount that cannot be made there either.
        actions.extend(service_actions()?);
        let mount = mount_actions(context)?;
        let mounted = !mount.is_empty();
        actions.extend(mount);
        let path = context.host.path(EXPORTS);
        let current = host::fs::read_optional(&path)?.unwrap_or_default();
        let wanted = with_block(&current, &export_line(context)?, &context.shown(&path))?;
        let changed = wanted != current;
        // A run killed between the write and `exportfs -ra` left the
        // re-export to this one.
        let pending = context.facts().pending.contains(&Reload::Reexport);
        if changed {
            if !pending {
                actions.push(Action::record(Fact::ReloadPending(Reload::Reexport)));
            }
            let shown = context.shown(&path);
            actions.push(Action::write(
                path.clone(),
                &shown,
                wanted.into_bytes(),
                0o644,
            ));
        }
        // A new bind mount is exported only once the table is read again.
        if changed || pending || mounted {
            actions.extend(Action::change(services::Reread {
                command: exportfs(["-ra"]),
                reload: Reload::Reexport,
            }));
        }
        // Whether the export block was there, written down before anything changes.
        let present = block_lines(&current, &context.shown(&path))?.is_some();
        let record = context.claim_of(Object::ExportBlock, present);
        Action::record_first(&mut actions, record);
        Action::record_first(&mut actions, parent_record);
        let directory = context.host.path(&context.config.nfs.path);
        let identity = match host::fs::open_shared_dir(&directory) {
            Ok(held) => Some(identity_of(&held)),
            Err(error) if error.source.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(error.into()),
        };
        let recorded = context.facts().nfs.export_directory.as_ref();
        let record = identity.filter(|identity| Some(identity) != recorded);
        Action::record_first(&mut actions, record.map(Fact::ExportDirectory));
        Ok(actions)
    }

    /// The block in `/etc/exports`, the directory, and `exportfs` listing
    /// the path (no package or service look).
    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let path = context.host.path(EXPORTS);
        let current = host::fs::read_optional(&path)?.unwrap_or_default();
        let wanted = with_block(&current, &export_line(context)?, &context.shown(&path))?;
        if let Some(problem) = directory_problem(
            &context.host,
            &context.config.nfs.path,
            context.facts().nfs.export_directory.as_deref(),
        ) {
            return Err(StepError::failed(
                problem,
                "look at it (`ls -ld` of it and of each directory above it); once it is the directory you want exported, run `stackinstall install --redo nfs`",
            ));
        }
        let made = context.origin(&Object::ExportParent) == Some(Origin::Created);
        if let Some(problem) = parent_problem(&context.host, &context.config.nfs.path, made)? {
            return Err(StepError::failed(
                problem,
                "run `sudo stackinstall install --redo nfs` (it makes the parent root's alone again)",
            ));
        }
        if wanted != current {
            return Err(StepError::failed(
                format!("the export block in `{EXPORTS}` is not as the step left it"),
                "run `stackinstall install --redo nfs`",
            ));
        }
        // `exportfs` lists the exports from its table whether or not the
        // kernel's server runs: ask systemd for that.
        services::check_running(context, UNIT)?;
        check_mount(context)?;
        let exported = exportfs(["-v"]).run()?.stdout;
        let path = &context.config.nfs.path;
        if !exported
            .lines()
            .any(|line| line.split_whitespace().next() == Some(path.as_str()))
        {
            return Err(StepError::failed(
                format!("`exportfs -v` does not list `{path}` although `/etc/exports` has it"),
                "run `sudo exportfs -ra` and look at its errors (and `systemctl status nfs-server`)",
            ));
        }
        Ok(())
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let path = context.host.path(EXPORTS);
        let current = host::fs::read_optional(&path)?.unwrap_or_default();
        let without = without_block(&current, &context.shown(&path))?;
        let mut actions = Vec::new();
        let kept = kept_because(
            context.origin(&Object::ExportBlock),
            "the export block in `/etc/exports`",
        );
        if let Some(kept) = kept.filter(|_| without != current) {
            actions.push(Action::check(kept));
        } else if without != current {
            actions.push(Action::write(
                path.clone(),
                &context.shown(&path),
                without.into_bytes(),
                0o644,
            ));
            actions.push(Action::run(exportfs(["-ra"])));
        }
        actions.extend(mount_removal(context)?);
        let directory = context.host.path(&context.config.nfs.path);
        actions.push(Action::check(format!(
            "{} and the volume data in it (and its parent): remove them by hand once you are sure",
            context.shown(&directory).display()
        )));
        actions.extend(services::purge_actions(
            context,
            Server::Nfs,
            &[PACKAGE],
            UNIT,
        )?);
        Ok(actions)
    }
}

fn server_packages(_context: &Context) -> Result<services::ServerPackages, StepError> {
    Ok(services::ServerPackages {
        server: Server::Nfs,
        names: vec![PACKAGE.into()],
    })
}

/// `nfs-server.service` enabled and started. The kernel's NFS server
/// (nfsd) cannot run in every container: a start that fails in one says so.
fn service_actions() -> Result<Vec<Action>, StepError> {
    let mut actions = Vec::new();
    if !service::is_enabled(UNIT)? {
        actions.push(Action::run_as(ActionKind::Service, service::enable(UNIT)));
    }
    if !service::is_active(UNIT)? {
        actions.extend(Action::change(StartServer));
    }
    Ok(actions)
}

/// Starts `nfs-server.service`; in a container, a start that fails says
/// that the kernel's NFS server cannot run there.
struct StartServer;

impl Change for StartServer {
    fn kind(&self) -> ActionKind {
        ActionKind::Service
    }

    fn lines(&self) -> Vec<String> {
        vec![service::start(UNIT).to_string()]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        match service::start(UNIT).run() {
            Ok(_) => Ok(true),
            Err(error) => Err(match services::container(context) {
                Some(kind) => StepError::failed(
                    format!(
                        "the kernel's NFS server cannot run in this container (`{kind}`, from `/run/systemd/container`): `systemctl start {UNIT}` failed: {error}"
                    ),
                    "nfsd is part of the kernel of the machine the container runs on: export the directory from that machine, or install on a VM or the machine itself, and leave `nfs` out of this run (`--only` without it)",
                ),
                None => error.into(),
            }),
        }
    }
}

fn exportfs<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("exportfs")
        .args(args)
        .timeout(Duration::from_secs(60))
}

/// The addresses of the cluster's nodes: the clients of the export. The
/// kubelet mounts a pod's NFS volume (the provisioner's, and every PVC's)
/// from its node's network namespace, never from the pod network, so a
/// node's address is all a volume needs; a pod network client would let
/// any pod mount every volume. One node (this host) today; a joined node
/// adds its address here.
pub fn node_addresses(context: &Context) -> Result<Vec<String>, StepError> {
    Ok(vec![context.host_ip()?])
}

/// The export line of the profile: `/data/stackbill NODE(rw,...,SQUASH)`
/// for each node address.
fn export_line(context: &Context) -> Result<String, StepError> {
    let config = &context.config;
    let options = config.nfs.options();
    let clients: Vec<String> = node_addresses(context)?
        .iter()
        .map(|address| format!("{address}({options})"))
        .collect();
    Ok(format!("{} {}", config.nfs.path, clients.join(" ")))
}

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
fn parent_look(context: &Context) -> Result<(Option<Fact>, Option<Action>), StepError> {
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
            host_parent,
            &shown,
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
fn check_parent(context: &Context) -> Result<Option<Action>, StepError> {
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

/// The mount unit of the export directory, rendered.
fn mount_unit_text(config: &Config) -> Result<String, RenderError> {
    render::template(
        MOUNT_TEMPLATE,
        minijinja::context! { path => config.nfs.path },
    )
}

/// The mount unit for `render`.
fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    Ok(vec![(
        service::mount_unit(&config.nfs.path),
        mount_unit_text(config)?,
    )])
}

fn render_failed(error: RenderError) -> StepError {
    StepError::failed(
        error.to_string(),
        "this is a bug in stackinstall's templates: please report it",
    )
}

/// The mount unit's file (host path) and name.
fn mount_unit_file(context: &Context) -> (PathBuf, String) {
    let unit = service::mount_unit(&context.config.nfs.path);
    (context.host.path(format!("{SYSTEMD_DIR}/{unit}")), unit)
}

/// The bind mount `nosuid,nodev`: its unit written when it differs,
/// systemd told, the unit enabled and started (restarted when it was
/// active with another file).
fn mount_actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let (path, unit) = mount_unit_file(context);
    let wanted = mount_unit_text(&context.config).map_err(render_failed)?;
    let written = host::fs::read_optional(&path)?.as_deref() != Some(wanted.as_str());
    let mut actions = Vec::new();
    if written {
        let shown = context.shown(&path);
        actions.push(Action::write(path, &shown, wanted.into_bytes(), 0o644));
        actions.push(Action::run(service::daemon_reload()));
    }
    let (enabled, active) = (service::is_enabled(&unit)?, service::is_active(&unit)?);
    if !enabled || !active {
        actions.push(Action::run_as(
            ActionKind::Service,
            service::enable_now(&unit),
        ));
    } else if written {
        actions.push(Action::run_as(ActionKind::Service, service::restart(&unit)));
    }
    Ok(actions)
}

/// The mount unit as written, enabled and active.
fn check_mount(context: &Context) -> Result<(), StepError> {
    let (path, unit) = mount_unit_file(context);
    let wanted = mount_unit_text(&context.config).map_err(render_failed)?;
    let hint = "run `sudo stackinstall install --redo nfs`";
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
fn mount_removal(context: &Context) -> Result<Vec<Action>, StepError> {
    let (path, unit) = mount_unit_file(context);
    if !host::fs::exists(&path) {
        return Ok(Vec::new());
    }
    let shown = context.shown(&path);
    Ok(vec![
        Action::run_as(ActionKind::Service, service::disable_now(&unit)),
        Action::remove(path, &shown),
        Action::run(service::daemon_reload()),
    ])
}

/// What the export directory needs: made when missing; when it is there
/// with another mode or owner, changed only if the profile says so,
/// otherwise reported and left as it is.
fn directory_action(context: &Context) -> Option<Action> {
    let directory = context.host.path(&context.config.nfs.path);
    let shown = context.shown(&directory);
    let (Some(mode), Some((uid, gid))) = (
        host::fs::mode_of(&directory),
        host::fs::owner_of(&directory),
    ) else {
        let parent = directory
            .parent()
            .filter(|parent| !host::fs::exists(parent))
            .map(|parent| context.shown(parent));
        return Action::change(MakeDirectory {
            directory,
            shown,
            parent,
        });
    };
    if mode == DIRECTORY_MODE && (uid, gid) == NOBODY.ids {
        return None;
    }
    let found = format!("mode {mode:04o}, owner {uid}:{gid}");
    Some(match context.config.nfs.fix_permissions {
        true => Action::set_mode_and_owner(
            directory,
            &shown,
            &found,
            (DIRECTORY_MODE, NOBODY),
            "[nfs] fix_permissions = true",
        ),
        false => Action::check(format!(
            "{} was already there with {found} (not owner {}, mode {DIRECTORY_MODE:04o}): left as it is; set `[nfs] fix_permissions = true` in the profile to change it",
            shown.display(),
            NOBODY.name
        )),
    })
}

/// Makes the export directory 0777 nobody:nogroup (its parents checked,
/// see `host::fs::ensure_shared_dir`, a missing parent made 0700) and
/// records its identity.
struct MakeDirectory {
    directory: PathBuf,
    shown: PathBuf,
    /// Its parent as shown, when it is missing too.
    parent: Option<PathBuf>,
}

impl Change for MakeDirectory {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        let parent = match &self.parent {
            Some(parent) => format!(
                " in a new {} (owner {}, mode {PARENT_MODE:04o})",
                parent.display(),
                ROOT.name
            ),
            None => String::new(),
        };
        vec![format!(
            "make {} (owner {}, mode {DIRECTORY_MODE:04o}){parent} and record its device:inode",
            self.shown.display(),
            NOBODY.name
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let (held, created) = host::fs::ensure_shared_dir(
            &self.directory,
            PARENT_MODE,
            (DIRECTORY_MODE, Some(NOBODY.ids)),
        )?;
        context.record(&Fact::ExportDirectory(identity_of(&held)))?;
        Ok(created)
    }
}

/// A directory's `device:inode`.
fn identity_of(held: &host::fs::Directory) -> String {
    let (device, inode) = held.identity();
    format!("{device}:{inode}")
}

/// What is wrong with the export directory at `path`: a directory on its
/// way that others can write, a link in its place, or another directory
/// than the `device:inode` the install `recorded`; `None` when it is fine.
pub fn directory_problem(host: &host::Host, path: &str, recorded: Option<&str>) -> Option<String> {
    let held = match host::fs::open_shared_dir(&host.path(path)) {
        Ok(held) => held,
        Err(error) => {
            return Some(format!(
                "the export directory `{path}` cannot be used: {error}"
            ));
        }
    };
    let (device, inode) = held.identity();
    let found = format!("{device}:{inode}");
    match recorded {
        Some(recorded) if recorded != found => Some(format!(
            "`{path}` is not the directory the export was made for (device:inode {found}, the install recorded {recorded}): it was replaced, and `/etc/exports` exports whatever is there now"
        )),
        _ => None,
    }
}

/// The recorded identity of the export directory, for `doctor`.
pub fn recorded_identity(state: &crate::state::State) -> Option<&str> {
    state.facts.nfs.export_directory.as_deref()
}

/// Where the managed block of `exports` starts and ends (line indexes),
/// `None` when there is none. A start without its end (the file was cut or
/// edited) is an error naming the line: everything after it could be
/// someone else's.
fn block_lines(exports: &str, path: &Path) -> Result<Option<(usize, usize)>, StepError> {
    let lines: Vec<&str> = exports.lines().collect();
    let Some(begin) = lines.iter().position(|l| l.trim() == BEGIN) else {
        return Ok(None);
    };
    match lines[begin + 1..].iter().position(|l| l.trim() == END) {
        Some(offset) => Ok(Some((begin, begin + 1 + offset))),
        None => Err(StepError::failed(
            format!(
                "`{}` line {}: the stackinstall block starts here but has no end marker (`{END}`): nothing was changed in the file",
                path.display(),
                begin + 1
            ),
            format!(
                "put the line `{END}` back after the block's export line (or delete the block's lines), then run again"
            ),
        )),
    }
}

/// `exports` with the managed block holding `line`: replaced where it is,
/// appended when there is none; every other line kept.
pub fn with_block(exports: &str, line: &str, path: &Path) -> Result<String, StepError> {
    let block = format!("{BEGIN}\n{line}\n{END}\n");
    let lines: Vec<&str> = exports.lines().collect();
    let joined = |part: &[&str]| part.iter().map(|l| format!("{l}\n")).collect::<String>();
    Ok(match block_lines(exports, path)? {
        Some((begin, end)) => {
            format!(
                "{}{block}{}",
                joined(&lines[..begin]),
                joined(&lines[end + 1..])
            )
        }
        None if exports.is_empty() => block,
        None if exports.ends_with('\n') => format!("{exports}{block}"),
        None => format!("{exports}\n{block}"),
    })
}

/// `exports` without the managed block.
pub fn without_block(exports: &str, path: &Path) -> Result<String, StepError> {
    let lines: Vec<&str> = exports.lines().collect();
    let joined = |part: &[&str]| part.iter().map(|l| format!("{l}\n")).collect::<String>();
    Ok(match block_lines(exports, path)? {
        Some((begin, end)) => format!("{}{}", joined(&lines[..begin]), joined(&lines[end + 1..])),
        None => exports.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_is_appended_then_replaced_in_place() {
        let foreign = "/srv/backup 192.168.1.0/24(ro)\n";
        let path = Path::new("/etc/exports");
        let first = with_block(foreign, "/data/x 10.42.0.0/16(rw)", path).unwrap();
        assert!(first.starts_with(foreign));
        let second = with_block(
            &format!("{first}/srv/other *(ro)\n"),
            "/data/x 10.50.0.0/16(rw)",
            path,
        )
        .unwrap();
        assert_eq!(
            second,
            format!("{foreign}{BEGIN}\n/data/x 10.50.0.0/16(rw)\n{END}\n/srv/other *(ro)\n")
        );
        assert_eq!(
            without_block(&second, path).unwrap(),
            format!("{foreign}/srv/other *(ro)\n")
        );
    }

    #[test]
    fn a_block_without_its_end_is_an_error_naming_the_line() {
        let path = Path::new("/etc/exports");
        let cut = format!("/srv/a *(ro)\n{BEGIN}\n/data/x 10.42.0.0/16(rw)\n/srv/b *(ro)\n");
        for error in [
            without_block(&cut, path).unwrap_err(),
            with_block(&cut, "/data/x 10.42.0.0/16(rw)", path).unwrap_err(),
        ] {
            let text = error.to_string();
            assert!(text.contains("`/etc/exports` line 2"), "{text}");
            assert!(text.contains("no end marker"), "{text}");
        }
    }
}
