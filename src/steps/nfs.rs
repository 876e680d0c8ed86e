//! NFS: names nfs-kernel-server to the `packages` step, makes the export
//! directory (`/data/stackbill`, owned by nobody:nogroup, mode 0777, so the
//! provisioner's pods can make their volume directories; a directory that
//! is already there keeps its mode and owner, which the plan reports, unless
//! `[nfs] fix_permissions = true`), and keeps one marked block in
//! `/etc/exports` that exports it to the pod network and to the host's own
//! address (kubelet mounts NFS volumes from the host). Lines
//! other software put in `/etc/exports` are kept as they are; `exportfs -ra`
//! runs only when the block changed.
//!
//! Done when the block is as the profile says, the directory is there (with
//! its owner and mode when we made or fixed it), and `exportfs` lists the path. Whether the server was on the
//! host before is recorded (`nfs.preexisting`); uninstall removes the block
//! (and the package only when it was new). The nfs-subdir-external-provisioner
//! chart (StorageClass `nfs-client`) is cluster work, not this step's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::services;
use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::action::Owner;
use crate::context::{Context, kept_because};
use crate::host::{self, Command, service};
use crate::state::{Fact, Fingerprint, Object, Reload, Server};

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
    ..StepInfo::database(StepId::Nfs, "NFS export for the cluster's volumes")
};

impl Step for Nfs {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config = &context.config;
        fingerprint.add("path", &config.nfs.path);
        fingerprint.add("options", &config.nfs.export_options);
        fingerprint.add("pod_cidr", &config.cluster.pod_cidr);
        fingerprint.add("fix_permissions", config.nfs.fix_permissions.to_string());
        fingerprint.add(
            "host_ip",
            config.cluster.host_ip.as_deref().unwrap_or_default(),
        );
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        host::fs::check_shared_dir(&context.host.path(&context.config.nfs.path))?;
        let mut actions: Vec<Action> = directory_action(context).into_iter().collect();
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
        actions.extend(service_actions()?);
        if changed || pending {
            actions.extend(Action::change(services::Reread {
                command: exportfs(["-ra"]),
                reload: Reload::Reexport,
            }));
        }
        // Whether the export block was there, written down before anything changes.
        let present = block_lines(&current, &context.shown(&path))?.is_some();
        let record = context.claim_of(Object::ExportBlock, present);
        Action::record_first(&mut actions, record);
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
        if wanted != current {
            return Err(StepError::failed(
                format!("the export block in `{EXPORTS}` is not as the step left it"),
                "run `stackinstall install --redo nfs`",
            ));
        }
        // `exportfs` lists the exports from its table whether or not the
        // kernel's server runs: ask systemd for that.
        services::check_running(context, UNIT)?;
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
        let directory = context.host.path(&context.config.nfs.path);
        actions.push(Action::check(format!(
            "{} and the volume data in it: remove it by hand once you are sure",
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

/// The export line of the profile: `/data/stackbill 10.42.0.0/16(rw,...)
/// HOST_IP(rw,...)`. The host's own address is there because kubelet mounts
/// a pod's NFS volume (the provisioner's, and every PVC's) from the host's
/// network namespace, not the pod network.
fn export_line(context: &Context) -> Result<String, StepError> {
    let config = &context.config;
    let options = &config.nfs.export_options;
    Ok(format!(
        "{} {}({options}) {}({options})",
        config.nfs.path,
        config.cluster.pod_cidr,
        context.host_ip()?
    ))
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
        return Action::change(MakeDirectory { directory, shown });
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
/// see `host::fs::ensure_shared_dir`) and records its identity.
struct MakeDirectory {
    directory: PathBuf,
    shown: PathBuf,
}

impl Change for MakeDirectory {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "make {} (owner {}, mode {DIRECTORY_MODE:04o}) and record its device:inode",
            self.shown.display(),
            NOBODY.name
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let (held, created) =
            host::fs::ensure_shared_dir(&self.directory, DIRECTORY_MODE, Some(NOBODY.ids))?;
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
