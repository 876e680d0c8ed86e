//! The installed copy of stackinstall itself, `/usr/local/bin/stackinstall`:
//! what systemd units run as root (the ECR renewal timer; later the
//! kubelet's credential provider). It is root:root 0755 in a directory only
//! root writes, so no other account can change what root runs, wherever the
//! operator started the installer from (`sudo ./stackinstall` in a home
//! directory would otherwise hand that home's owner root).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::command::{Command, CommandError};
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

/// What tells one file from another without reading it: device, inode,
/// size, modification and change times (a binary replaced or rewritten
/// changes at least one; the change time cannot be set back).
type Identity = (u64, u64, u64, i64, i64, i64, i64);

fn identity(path: &Path) -> Option<Identity> {
    let meta = std::fs::metadata(path).ok()?;
    Some((
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ))
}

/// What a binary printed for its version, by path and arguments, with the
/// file it was then.
type Printed = HashMap<(PathBuf, Vec<String>), (Identity, String)>;

static VERSIONS: Mutex<Option<Printed>> = Mutex::new(None);

/// What the program at `binary` prints to standard output when run with
/// `args` (its version), run once per run: a preflight check and the
/// step's own look share it, unless the file changed in between (an
/// upgrade replaced it).
pub fn version_output(binary: &Path, args: &[&str]) -> Result<String, CommandError> {
    let key = (
        binary.to_path_buf(),
        args.iter().map(|arg| arg.to_string()).collect::<Vec<_>>(),
    );
    let before = identity(binary);
    if let Some(before) = before {
        let known = VERSIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, printed)) = known.as_ref().and_then(|known| known.get(&key))
            && *seen == before
        {
            return Ok(printed.clone());
        }
    }
    let output = Command::new(binary.display().to_string())
        .args(args.iter().copied())
        .run()?;
    if let Some(before) = before.filter(|before| identity(binary) == Some(*before)) {
        let mut known = VERSIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get_or_insert_with(HashMap::new)
            .insert(key, (before, output.stdout.clone()));
    }
    Ok(output.stdout)
}
