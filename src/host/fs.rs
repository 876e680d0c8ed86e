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

/// Reads `path` as text; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    match fs::read(path) {
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
    fs::read(path).map_err(FileError::new("read", path))
}

/// Writes `contents` to `path` atomically with permission bits `mode`,
/// creating missing parent directories (mode 0755).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if !parent.exists() {
        ensure_dir(parent, 0o755)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temporary = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        fs::File::open(parent)?.sync_all()
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&temporary);
        FileError::new("write", path)(error)
    })?;
    tracing::info!(target: "file", "wrote {} (mode {mode:o})", path.display());
    Ok(())
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
}
