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

mod exports;
mod mount;
mod parent;

use std::path::{Path, PathBuf};
use std::time::Duration;

use exports::block_lines;
pub use exports::{with_block, without_block};
use mount::{check_mount, mount_actions, mount_removal, rendered};
pub use parent::parent_problem;
use parent::{PARENT_MODE, ROOT, check_parent, parent_look};

use super::services;
use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::action::Owner;
use crate::context::{Context, kept_because};
use crate::host::{self, Command, service};
use crate::state::{Fact, Fingerprint, Object, Origin, Reload, Server};

/// The nfs step.
pub struct Nfs;

const PACKAGE: &str = "nfs-kernel-server";
/// The server's own unit; `nfs-kernel-server.service` is an alias of it on
/// Debian and Ubuntu, which `systemctl is-enabled` answers `alias` for.
pub const UNIT: &str = "nfs-server.service";
const EXPORTS: &str = "/etc/exports";
/// The table of what is exported, which `exportfs` keeps and `rpc.mountd`
/// reads (exportfs(8), FILES): `exportfs -v` prints it; reading it needs
/// no program.
const ETAB: &str = "/var/lib/nfs/etab";
const DIRECTORY_MODE: u32 = 0o777;
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
    rendered: Some(rendered_files),
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
            actions.push(Action::write(
                context.host.reached(path.clone()),
                wanted.into_bytes(),
                0o644,
            ));
        }
        // The server before the bind mount: where it cannot run (a
        // container) that is what the step says, not a mount that cannot be
        // made there either. Which of the two mounts the kernel exports
        // matters not for `nosuid` (it is the host's path that runs
        // programs), and `exportfs -ra` below exports the bind mount.
        actions.extend(service_actions()?);
        let mount = mount_actions(context)?;
        let mounted = !mount.is_empty();
        actions.extend(mount);
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
        let exported = host::fs::read_optional(&context.host.path(ETAB))?.unwrap_or_default();
        let path = &context.config.nfs.path;
        if !exported
            .lines()
            .any(|line| line.split_whitespace().next() == Some(path.as_str()))
        {
            return Err(StepError::failed(
                format!(
                    "`{ETAB}` (what `exportfs -v` lists) does not have `{path}` although `/etc/exports` has it"
                ),
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
                context.host.reached(path.clone()),
                without.into_bytes(),
                0o644,
            ));
            actions.push(Action::run(exportfs(["-ra"])));
        }
        actions.extend(mount_removal(context));
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
/// any pod mount every volume. This host, and the joined nodes of
/// `[nfs] node_addresses`.
pub fn node_addresses(context: &Context) -> Result<Vec<String>, StepError> {
    let mut addresses = vec![context.host_ip()?];
    for address in &context.config.nfs.node_addresses {
        if !addresses.contains(address) {
            addresses.push(address.clone());
        }
    }
    Ok(addresses)
}

/// The export line of the profile: `/data/stackbill NODE(rw,...,SQUASH)`
/// for each node address.
fn export_line(context: &Context) -> Result<String, StepError> {
    Ok(export_line_to(&context.config, &node_addresses(context)?))
}

/// The export line of the profile to `addresses`.
fn export_line_to(config: &crate::config::Config, addresses: &[String]) -> String {
    let options = config.nfs.options();
    let clients: Vec<String> = (addresses.iter())
        .map(|address| format!("{address}({options})"))
        .collect();
    format!("{} {}", config.nfs.path, clients.join(" "))
}

/// The mount unit, and the managed block of `/etc/exports` as a file
/// without one gets it (the node's address `HOST_IP` when it is not
/// found), for `render`.
fn rendered_files(
    config: &crate::config::Config,
) -> Result<Vec<(String, String)>, crate::render::RenderError> {
    let mut files = rendered(config)?;
    let address = config.host_ip().unwrap_or_else(|| "HOST_IP".into());
    let line = export_line_to(config, &[address]);
    let block = with_block("", &line, Path::new("/etc/exports"))
        .expect("an empty file has no broken block");
    files.push(("exports".into(), block));
    Ok(files)
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
            context.host.reached(directory),
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
