//! The installed copy of stackinstall itself, `/usr/local/bin/stackinstall`:
//! what systemd units run as root (the ECR renewal timer; later the
//! kubelet's credential provider). It is root:root 0755 in a directory only
//! root writes, so no other account can change what root runs, wherever the
//! operator started the installer from (`sudo ./stackinstall` in a home
//! directory would otherwise hand that home's owner root).

use std::path::Path;

use super::fs::{self, FileError};

/// Where the installed copy lives on the host (before `Host::path`).
pub const INSTALLED_BINARY: &str = "/usr/local/bin/stackinstall";

const MODE: u32 = 0o755;
const ROOT: fs::Owner = (0, 0);

/// The running binary: the file the kernel runs, even if its path changed.
fn running() -> &'static Path {
    Path::new("/proc/self/exe")
}

/// Whether `target` already holds the running binary, root:root 0755.
pub fn is_current(target: &Path) -> Result<bool, FileError> {
    fs::is_copy_of(running(), target, MODE, ROOT)
}

/// Copies the running binary to `target` (root:root 0755, atomically),
/// only when it differs; returns whether it changed.
pub fn ensure_installed(target: &Path) -> Result<bool, FileError> {
    fs::ensure_copy(running(), target, MODE, ROOT)
}
