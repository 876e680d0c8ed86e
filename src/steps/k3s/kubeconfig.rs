//! K3s's kubeconfig holds cluster-admin credentials: K3s is started with
//! `--write-kubeconfig-mode 0600` so only root reads
//! `/etc/rancher/k3s/k3s.yaml`, and root gets a copy as `/root/.kube/config`
//! (0600, directory 0700) so `kubectl` and `helm` by hand work after the
//! install, as they did after the bash installer. The tool's own `kubectl`
//! and `helm` calls name the K3s file in `KUBECONFIG` (`host::kube`).

use super::super::{Action, ActionKind, StepError};
use crate::context::Context;
use crate::host::{self, kube};

/// The mode K3s writes its kubeconfig with (its `--write-kubeconfig-mode`).
pub const MODE: u32 = 0o600;
/// root's own kubeconfig, which `kubectl` and `helm` read by default.
pub const ROOT_KUBECONFIG: &str = "/root/.kube/config";

/// Whether K3s's kubeconfig is there with a mode other than 0600 (written
/// by an earlier install with `--write-kubeconfig-mode 644`): K3s must be
/// started again with the new flags.
pub fn too_open(context: &Context) -> bool {
    host::fs::mode_of(&context.host.path(kube::KUBECONFIG)).is_some_and(|mode| mode != MODE)
}

/// The copy for root, when it is missing or differs from K3s's file (or
/// when a plan without root cannot read them to tell).
pub fn copy_action(context: &Context) -> Result<Option<Action>, StepError> {
    let source = context.host.path(kube::KUBECONFIG);
    let target = context.host.path(ROOT_KUBECONFIG);
    let current = readable(&source)?;
    if current.is_some()
        && current == readable(&target)?
        && host::fs::mode_of(&target) == Some(MODE)
    {
        return Ok(None);
    }
    Ok(Some(Action::call(
        ActionKind::File,
        format!(
            "copy {} to {} (mode 0600, directory 0700) for kubectl and helm by hand",
            kube::KUBECONFIG,
            ROOT_KUBECONFIG
        ),
        |context| copy(context),
    )))
}

/// The file's text; `None` when it is missing or only root may read it.
fn readable(path: &std::path::Path) -> Result<Option<String>, StepError> {
    match host::fs::read_own_optional(path) {
        Err(error) if error.source.kind() == std::io::ErrorKind::PermissionDenied => Ok(None),
        read => Ok(read?),
    }
}

/// Copies K3s's kubeconfig to root's; returns whether it changed anything.
pub fn copy(context: &Context) -> Result<bool, StepError> {
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
    Ok(host::fs::ensure_file(&target, text.as_bytes(), MODE)? || made)
}

/// For uninstall: removes root's copy while it is still K3s's (a file
/// root changed or replaced since is left alone).
pub fn undo_action(context: &Context) -> Result<Option<Action>, StepError> {
    let target = context.host.path(ROOT_KUBECONFIG);
    let copy = host::fs::read_own_optional(&target)?;
    if copy.is_none() || copy != host::fs::read_own_optional(&context.host.path(kube::KUBECONFIG))?
    {
        return Ok(None);
    }
    Ok(Some(Action::remove(
        target,
        std::path::Path::new(ROOT_KUBECONFIG),
    )))
}

/// Fails when K3s's kubeconfig is readable by others than root.
pub fn verify(context: &Context) -> Result<(), StepError> {
    if too_open(context) {
        return Err(StepError::failed(
            format!(
                "`{}` is readable by other users (every local account gets cluster-admin)",
                kube::KUBECONFIG
            ),
            "run `stackinstall install --redo k3s` to start K3s with `--write-kubeconfig-mode 0600`",
        ));
    }
    Ok(())
}
