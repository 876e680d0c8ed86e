//! The run lock: one install or uninstall at a time. The kernel releases an
//! advisory lock when its holder dies, so a dead holder never keeps it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::fs::{FileError, ensure_dir};

/// Held for the whole run; released when dropped or when the process dies.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another stackinstall run (pid {pid}) holds the lock `{}`", path.display())]
    Held { pid: String, path: PathBuf },
    #[error(transparent)]
    File(#[from] FileError),
}

impl RunLock {
    /// Takes the lock at `path`, writing this process's pid into it.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        if let Some(parent) = path.parent() {
            ensure_dir(parent, 0o755)?;
        }
        let file_error = |action| {
            let path = path.to_path_buf();
            move |source| FileError {
                action,
                path,
                source,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(file_error("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                    path: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(error)) => return Err(file_error("lock")(error).into()),
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        write_pid(&mut file).map_err(file_error("write"))?;
        Ok(Self {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/lock");
        let first = RunLock::acquire(&path).unwrap();
        let error = RunLock::acquire(&path).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        drop(first);
        // A child another test forks meanwhile shares the lock's open file
        // until its exec: give it that moment.
        let again = (0..100).find_map(|_| {
            RunLock::acquire(&path)
                .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(10)))
                .ok()
        });
        assert!(again.is_some(), "free again once dropped");
    }
}
