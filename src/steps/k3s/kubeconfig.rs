//! K3s's kubeconfig holds cluster-admin credentials: K3s is started with
//! `write-kubeconfig-mode: "0600"` (`config_file.rs`) so only root reads
//! `/etc/rancher/k3s/k3s.yaml`, and root gets a copy as `/root/.kube/config`
//! (0600, directory 0700) so `kubectl` and `helm` by hand work after the
//! install, as they did after the bash installer. The tool's own `kubectl`
//! and `helm` calls name the K3s file in `KUBECONFIG` (`host::kube`).
//!
//! A `/root/.kube/config` that differs from K3s's and that stackinstall did
//! not write (the operator's config for another cluster) is never lost: it
//! is kept as `/root/.kube/config.stackinstall-backup-TIME` (0600) before
//! the copy replaces it, and the plan says so. A `/root/.kube/config` that
//! is a symbolic link to K3s's file is root's own choice and is kept. The state records the
//! SHA-256 of the copy last written (`k3s.root_kubeconfig_sha256`), which
//! is how a later run knows an older copy as its own.

use sha2::{Digest, Sha256};

use crate::action::{Action, ActionKind, Change};
use crate::context::Context;
use crate::error::StepError;
use crate::host::{self, kube};
use crate::state::Fact;

/// The mode K3s writes its kubeconfig with (its `write-kubeconfig-mode`).
pub const MODE: u32 = 0o600;
/// root's own kubeconfig, which `kubectl` and `helm` read by default.
pub const ROOT_KUBECONFIG: &str = "/root/.kube/config";

/// What is at root's kubeconfig path before the copy.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    /// Nothing, or K3s's own text, or a copy stackinstall wrote: replaced.
    Replaceable,
    /// Someone else's file: kept as a backup first.
    Theirs,
    /// It cannot be read (a plan without root).
    Unknown,
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whose the file at root's kubeconfig path is, given K3s's `current` text.
fn existing(context: &Context, current: Option<&str>) -> Result<Existing, StepError> {
    let target = context.host.path(ROOT_KUBECONFIG);
    if !host::fs::exists(&target) {
        return Ok(Existing::Replaceable);
    }
    let Some(text) = readable(&target)? else {
        return Ok(Existing::Unknown);
    };
    let written = context.facts().k3s.root_kubeconfig_sha256.as_deref();
    let ours = written == Some(sha256(&text).as_str());
    Ok(match ours || Some(text.as_str()) == current {
        true => Existing::Replaceable,
        false => Existing::Theirs,
    })
}

/// Whether K3s's kubeconfig is there with a mode other than 0600 (written
/// by an earlier install with `--write-kubeconfig-mode 644`): K3s must be
/// started again with the new flags.
pub fn too_open(context: &Context) -> bool {
    host::fs::mode_of(&context.host.path(kube::KUBECONFIG)).is_some_and(|mode| mode != MODE)
}

/// The copy for root, when it is missing or differs from K3s's file (or
/// when a plan without root cannot read them to tell), or when K3s
/// `restarts` first (it writes its kubeconfig again as it starts).
pub fn copy_action(context: &Context, restarts: bool) -> Result<Option<Action>, StepError> {
    if links_to_k3s(context)? {
        return Ok(None);
    }
    let source = context.host.path(kube::KUBECONFIG);
    let target = context.host.path(ROOT_KUBECONFIG);
    let current = readable(&source)?;
    if !restarts
        && current.is_some()
        && current == readable(&target)?
        && host::fs::mode_of(&target) == Some(MODE)
    {
        return Ok(None);
    }
    let existing = existing(context, current.as_deref())?;
    Ok(Action::change(CopyKubeconfig { existing }))
}

/// Copies K3s's kubeconfig to root's, keeping someone else's file there as
/// a backup first.
struct CopyKubeconfig {
    /// What is at root's path now, as far as the look could tell.
    existing: Existing,
}

impl Change for CopyKubeconfig {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        let backup = match self.existing {
            Existing::Replaceable => String::new(),
            Existing::Theirs => format!(
                "; the {ROOT_KUBECONFIG} there differs from K3s's and was not written by stackinstall: it is kept as {ROOT_KUBECONFIG}.stackinstall-backup-TIME (mode 0600)"
            ),
            Existing::Unknown => format!(
                "; a {ROOT_KUBECONFIG} there that stackinstall did not write is kept as {ROOT_KUBECONFIG}.stackinstall-backup-TIME (mode 0600)"
            ),
        };
        vec![format!(
            "copy {} to {ROOT_KUBECONFIG} (mode 0600, directory 0700) for kubectl and helm by hand{backup}",
            kube::KUBECONFIG,
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        copy(context)
    }
}

/// The file's text; `None` when it is missing or only root may read it.
fn readable(path: &std::path::Path) -> Result<Option<String>, StepError> {
    match host::fs::read_own_optional(path) {
        Err(error) if error.source.kind() == std::io::ErrorKind::PermissionDenied => Ok(None),
        read => Ok(read?),
    }
}

/// Whether root's kubeconfig is a symbolic link to K3s's own file (a
/// layout K3s documents, docs.k3s.io "Cluster Access"): root reads the file
/// this install manages, so the link is kept, neither followed nor
/// replaced by a copy.
fn links_to_k3s(context: &Context) -> Result<bool, StepError> {
    let link = context.host.path(ROOT_KUBECONFIG);
    let Some(target) = host::fs::link_target(&link)? else {
        return Ok(false);
    };
    let parent = std::path::Path::new(ROOT_KUBECONFIG)
        .parent()
        .expect("the kubeconfig has a directory");
    Ok(lexically_normal(&parent.join(target)) == std::path::Path::new(kube::KUBECONFIG))
}

/// `path` with `.` and `..` resolved without looking at the file system.
fn lexically_normal(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut normal = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// Copies K3s's kubeconfig to root's, keeping someone else's file there
/// as a backup first; returns whether it changed anything. A link to
/// K3s's file is kept as it is.
pub fn copy(context: &mut Context) -> Result<bool, StepError> {
    if links_to_k3s(context)? {
        return Ok(false);
    }
    let source = context.host.path(kube::KUBECONFIG);
    let text = host::fs::read_own_optional(&source)?.ok_or_else(|| {
        StepError::failed(
            format!("K3s did not write its kubeconfig `{}`", kube::KUBECONFIG),
            "look at `journalctl -u k3s`, then run `stackinstall install --redo k3s`",
        )
    })?;
    let target = context.host.path(ROOT_KUBECONFIG);
    let directory = target.parent().expect("the kubeconfig has a directory");
    let made = host::fs::ensure_private_dir(directory)?;
    if existing(context, Some(&text))? == Existing::Theirs {
        back_up(context, &target)?;
    }
    context.record(&Fact::RootKubeconfig(sha256(&text)))?;
    Ok(host::fs::ensure_file(&target, text.as_bytes(), MODE)? || made)
}

/// Keeps the file at `target` as `TARGET.stackinstall-backup-TIME` (0600).
fn back_up(context: &Context, target: &std::path::Path) -> Result<(), StepError> {
    let text = host::fs::read_own_optional(target)?.unwrap_or_default();
    let stamp = host::log::file_stamp();
    let mut backup = target.with_file_name(format!("config.stackinstall-backup-{stamp}"));
    let mut suffix = 1;
    while host::fs::exists(&backup) {
        suffix += 1;
        backup = target.with_file_name(format!("config.stackinstall-backup-{stamp}-{suffix}"));
    }
    host::fs::write_atomic(&backup, text.as_bytes(), MODE)?;
    context.ui.warn(&format!(
        "{ROOT_KUBECONFIG} was not written by stackinstall and differs from K3s's: kept as {}",
        context.shown(&backup).display()
    ));
    Ok(())
}

/// For uninstall: removes root's copy while it is still K3s's (a file
/// root changed or replaced since is left alone).
pub fn undo_action(context: &Context) -> Result<Option<Action>, StepError> {
    if links_to_k3s(context)? {
        return Ok(None);
    }
    let target = context.host.path(ROOT_KUBECONFIG);
    let copy = host::fs::read_own_optional(&target)?;
    if copy.is_none() || copy != host::fs::read_own_optional(&context.host.path(kube::KUBECONFIG))?
    {
        return Ok(None);
    }
    Ok(Some(Action::remove(context.host.reached(target))))
}

/// Fails when K3s's kubeconfig is readable by others than root.
pub fn verify(context: &Context) -> Result<(), StepError> {
    if too_open(context) {
        return Err(StepError::failed(
            format!(
                "`{}` is readable by other users (every local account gets cluster-admin)",
                kube::KUBECONFIG
            ),
            "run `stackinstall install --redo k3s` to start K3s with `write-kubeconfig-mode` 0600",
        ));
    }
    Ok(())
}
