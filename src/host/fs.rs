//! Files: every write is atomic (temp file, fsync, rename, fsync of the
//! directory), so a reader sees the old content or the new, never half.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", path.display())]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    fn new(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self {
            action,
            path,
            source,
        }
    }
}

/// The most this tool reads of any one input file: configuration,
/// certificates, keys, its own state are all far smaller. A bigger one
/// (`/dev/zero`, a log by mistake) is refused instead of filling memory.
pub const MAX_READ: u64 = 16 * 1024 * 1024;

/// Reads at most `MAX_READ` bytes of `path`; more is an error.
pub fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_READ + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_READ / 1024 / 1024),
        ));
    }
    Ok(bytes)
}

/// Reads `path` as text; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match read_limited(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| FileError {
            action: "read",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(FileError::new("read", path)(error)),
    }
}

/// Reads the bytes of `path`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, FileError> {
    read_limited(path).map_err(FileError::new("read", path))
}

/// Writes `contents` to `path` atomically with permission bits `mode`,
/// creating missing parent directories (mode 0755).
///
/// The temporary file has a fixed name next to the target (runs hold the
/// run lock, so there is one writer), so one left by a killed run is
/// truncated and reused by the next write instead of piling up.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if !parent.exists() {
        ensure_dir(parent, 0o755)?;
    }
    let temporary = temporary_path(path);
    let crash = crash::armed(path);
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        let (head, tail) = contents.split_at(contents.len() / 2);
        file.write_all(head)?;
        crash::at(crash, crash::Phase::Torn, &file);
        file.write_all(tail)?;
        file.sync_all()?;
        crash::at(crash, crash::Phase::Unrenamed, &file);
        fs::rename(&temporary, path)?;
        crash::at(crash, crash::Phase::Renamed, &file);
        fs::File::open(parent)?.sync_all()
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&temporary);
        FileError::new("write", path)(error)
    })?;
    tracing::info!(target: "file", "wrote {} (mode {mode:o})", path.display());
    Ok(())
}

/// The temporary file `write_atomic` writes before renaming it to `path`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.stackinstall-tmp"))
}

/// Crash points for the kill tests (debug builds only): with
/// `STACKINSTALL_TEST_CRASH_WRITE=NAME:N:PHASE`, the N-th atomic write of a
/// file named NAME in this run sends this process SIGKILL at PHASE: `torn`
/// (half the temporary file written), `unrenamed` (complete and synced, not
/// renamed) or `renamed` (renamed, the directory not yet synced). Release
/// builds read no such variable.
mod crash {
    use std::path::Path;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Phase {
        Torn,
        Unrenamed,
        Renamed,
    }

    /// The phase to die at during this write, if this is the chosen write.
    #[cfg(debug_assertions)]
    pub fn armed(path: &Path) -> Option<Phase> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static WRITES: AtomicUsize = AtomicUsize::new(0);
        let setting = std::env::var("STACKINSTALL_TEST_CRASH_WRITE").ok()?;
        let mut fields = setting.split(':');
        let (name, nth, phase) = (fields.next()?, fields.next()?, fields.next()?);
        if path.file_name()?.to_str()? != name {
            return None;
        }
        let count = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        (nth.parse::<usize>().ok()? == count).then_some(match phase {
            "torn" => Phase::Torn,
            "unrenamed" => Phase::Unrenamed,
            _ => Phase::Renamed,
        })
    }

    #[cfg(not(debug_assertions))]
    pub fn armed(_path: &Path) -> Option<Phase> {
        None
    }

    /// Dies here when `armed` chose this phase (what is written is on disk).
    pub fn at(armed: Option<Phase>, phase: Phase, file: &std::fs::File) {
        if armed == Some(phase) {
            let _ = file.sync_all();
            // SAFETY: raising a signal in this process has no preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}

/// Makes `path` hold exactly `contents` with `mode`; returns whether it changed.
pub fn ensure_file(path: &Path, contents: &[u8], mode: u32) -> Result<bool, FileError> {
    let same_content = fs::read(path).is_ok_and(|current| current == contents);
    if same_content && mode_of(path) == Some(mode) {
        return Ok(false);
    }
    write_atomic(path, contents, mode)?;
    Ok(true)
}

/// Makes `path` a directory with `mode` (parents too); returns whether it changed.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<bool, FileError> {
    if path.is_dir() {
        if mode_of(path) == Some(mode) {
            return Ok(false);
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(FileError::new("set permissions of", path))?;
        return Ok(true);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(FileError::new("create directory", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(FileError::new("set permissions of", path))?;
    Ok(true)
}

/// Makes `path` owned by `uid`:`gid`; returns whether it changed.
pub fn ensure_owner(path: &Path, uid: u32, gid: u32) -> Result<bool, FileError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = fs::metadata(path).map_err(FileError::new("look at", path))?;
    if metadata.uid() == uid && metadata.gid() == gid {
        return Ok(false);
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(FileError::new("change the owner of", path))?;
    Ok(true)
}

/// Removes the file at `path`; returns whether there was one.
pub fn remove_file(path: &Path) -> Result<bool, FileError> {
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(target: "file", "removed {}", path.display());
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(FileError::new("remove", path)(error)),
    }
}

/// The permission bits of `path`, if it exists.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|metadata| metadata.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_file_writes_once_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/file.toml");
        assert!(ensure_file(&path, b"a = 1\n", 0o600).unwrap());
        assert!(!ensure_file(&path, b"a = 1\n", 0o600).unwrap());
        assert_eq!(mode_of(&path), Some(0o600));
        assert!(ensure_file(&path, b"a = 1\n", 0o644).unwrap());
        assert!(ensure_file(&path, b"a = 2\n", 0o644).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "a = 2\n");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    /// A reader racing a writer sees only whole contents, old or new.
    #[test]
    fn a_reader_never_sees_a_half_written_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.toml");
        let versions: Vec<Vec<u8>> = (b'a'..=b'd').map(|byte| vec![byte; 256 * 1024]).collect();
        write_atomic(&path, &versions[0], 0o644).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (reads, writes) = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let seen = fs::read(&path).unwrap();
                    assert!(
                        versions.contains(&seen),
                        "a reader saw {} bytes that are no whole version",
                        seen.len()
                    );
                    reads += 1;
                }
                reads
            });
            for round in 0..400 {
                write_atomic(&path, &versions[round % versions.len()], 0o644).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            (reader.join().unwrap(), 400)
        });
        assert!(reads > 0 && writes == 400);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.toml")]);
    }

    /// A temporary file left by a killed run is reused, not left beside it.
    #[test]
    fn a_temporary_file_left_by_a_killed_run_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        fs::write(temporary_path(&path), b"half of a").unwrap();
        write_atomic(&path, b"whole = true\n", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole = true\n");
        assert!(!temporary_path(&path).exists());
    }
}
