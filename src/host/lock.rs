//! The run lock: one install or uninstall at a time. The kernel releases an
//! advisory lock when its holder dies, so a dead holder never keeps it.
//!
//! `flock` works on a read-only descriptor: a lock file others can open
//! could be held by any user (and `ecr-refresh` would then renew nothing).
//! It is root's, 0600, opened in its directory held by handle; one found
//! with another owner or mode is made so. A holder is named only when it is
//! a live stackinstall (its pid read from `/proc/locks`, its program from
//! `/proc/PID/exe`); any other holder is an error naming it.

use std::fs::{File, TryLockError};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::fs::{Directory, FileError};

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
    #[error("the run lock `{}` is held by {holder}, which is not a stackinstall run", path.display())]
    Foreign { holder: String, path: PathBuf },
    #[error(transparent)]
    File(#[from] FileError),
}

impl LockError {
    /// What the operator can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Held { .. } => {
                Some("wait for that run to finish; if it is stuck, stop it (`kill PID`)".into())
            }
            Self::Foreign { .. } => Some(
                "it opened the lock file before stackinstall made it root's 0600: stop that process (`sudo kill PID`), then run again".into(),
            ),
            Self::File(error) => error.hint(),
        }
    }
}

impl RunLock {
    /// Takes the lock at `path`, writing this process's pid into it.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let file_error = |action| FileError::new(action, path);
        let mut file = open(path).map_err(file_error("open"))?;
        let mut attempts = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => match holder_error(&mut file, path) {
                    // Released between the two looks: try again.
                    None if attempts < 3 => attempts += 1,
                    error => {
                        return Err(error.unwrap_or_else(|| LockError::Foreign {
                            holder: "a process that /proc/locks does not name".into(),
                            path: path.to_path_buf(),
                        }));
                    }
                },
                Err(TryLockError::Error(error)) => return Err(file_error("lock")(error).into()),
            }
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

/// Opens (or makes) the lock file, root's 0600, never through a link.
fn open(path: &Path) -> std::io::Result<File> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default();
    let (directory, _) = Directory::ensure(parent, 0o755)?;
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::openat(
        directory.fd(),
        name,
        flags,
        Mode::from_raw_mode(0o600),
    )?);
    let stat = rustix::fs::fstat(&file)?;
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    if (stat.st_uid, stat.st_gid) != (uid, gid) {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    if stat.st_mode & 0o7777 != 0o600 {
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o600))?;
    }
    Ok(file)
}

/// Who holds the lock on `file`: a live stackinstall run (named by pid:
/// its program is stackinstall, or it is the pid a run wrote into the
/// root-only file), or something else (named by pid, program and user);
/// `None` when no holder is listed any more.
fn holder_error(file: &mut File, path: &Path) -> Option<LockError> {
    let holders = rustix::fs::fstat(&*file)
        .map(|stat| lock_holders(stat.st_dev, stat.st_ino))
        .unwrap_or_default();
    let written = {
        let mut text = String::new();
        let _ = file.seek(SeekFrom::Start(0));
        let _ = std::io::Read::read_to_string(file, &mut text);
        text.trim().parse::<u32>().ok()
    };
    let path = path.to_path_buf();
    if let Some(pid) = holders
        .iter()
        .find(|pid| Some(**pid) == written || is_stackinstall(**pid))
    {
        return Some(LockError::Held {
            pid: pid.to_string(),
            path,
        });
    }
    let holder = describe(*holders.first()?);
    Some(LockError::Foreign { holder, path })
}

/// The pids `/proc/locks` names for a lock on the file `device`:`inode`.
fn lock_holders(device: u64, inode: u64) -> Vec<u32> {
    let wanted = format!(
        "{:02x}:{:02x}:{inode}",
        rustix::fs::major(device),
        rustix::fs::minor(device)
    );
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`, or with
            // `->` after the number for a waiter.
            let at = fields.iter().position(|field| *field == wanted)?;
            (fields.get(1) != Some(&"->")).then_some(())?;
            fields.get(at.checked_sub(1)?)?.parse().ok()
        })
        .collect()
}

/// Whether `pid` is alive and runs stackinstall.
fn is_stackinstall(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("stackinstall"))
    })
}

/// `pid 1234 (`/usr/bin/flock`, uid 65534)`, as much as can be seen.
fn describe(pid: u32) -> String {
    let program = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| format!("`{}`", exe.display()))
        .unwrap_or_else(|_| "program unknown".into());
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(str::to_string))
        })
        .map_or_else(String::new, |uid| format!(", uid {uid}"));
    format!("pid {pid} ({program}{uid})")
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
