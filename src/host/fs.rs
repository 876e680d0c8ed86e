//! Files: every write is atomic (temp file, fsync, rename, fsync of the
//! directory), so a reader sees the old content or the new, never half.
//!
//! The tool runs as root and writes in directories other accounts can
//! write (`/var/lib/mongodb` belongs to `mongodb`, `render --out` may name
//! anyone's directory), so no write or read of its own files goes through a
//! symbolic link: the temporary file is made with `O_CREAT|O_EXCL|O_NOFOLLOW`,
//! its owner and mode are set on the open descriptor, a link planted at the
//! temporary name or at the target is refused, and the tool's own files are
//! read with `O_NOFOLLOW`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    pub(crate) fn new(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self {
            action,
            path,
            source,
        }
    }

    /// What the operator can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        let refused = self.source.get_ref()?.downcast_ref::<Refused>()?;
        Some(format!(
            "stackinstall never writes or reads its files through a link: look at who made `{}` (`ls -l`, and who can write in its directory), remove it, then run again",
            refused.path.display()
        ))
    }
}

/// A path that is not the plain file it should be (a symbolic link, a
/// hard link to another file, a directory): refused, never followed.
#[derive(Debug, thiserror::Error)]
#[error("`{}` is {what}; refusing to follow it", path.display())]
pub struct Refused {
    pub path: PathBuf,
    pub what: &'static str,
}

fn refused(path: &Path, what: &'static str) -> io::Error {
    io::Error::other(Refused {
        path: path.to_path_buf(),
        what,
    })
}

/// Who owns a file: user id and group id.
pub type Owner = (u32, u32);

/// The most this tool reads of any one input file: configuration,
/// certificates, keys, its own state are all far smaller. A bigger one
/// (`/dev/zero`, a log by mistake) is refused instead of filling memory.
pub const MAX_READ: u64 = 16 * 1024 * 1024;

/// Reads at most `MAX_READ` bytes of `path`; more is an error. Follows
/// links: for the operator's own inputs (`--config`, `--ssl-cert`, which
/// are often links, as Let's Encrypt's are).
pub fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    read_from(fs::File::open(path)?)
}

fn read_from(file: fs::File) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_READ + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_READ / 1024 / 1024),
        ));
    }
    Ok(bytes)
}

/// Opens a file of the tool's own for reading without following a link at
/// its name: a link there, a hard link to another file, or anything but a
/// regular file is refused.
fn open_own(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => refused(path, "a symbolic link"),
            _ => error,
        })?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(refused(path, "not a regular file"));
    }
    if metadata.nlink() > 1 {
        return Err(refused(path, "a hard link to another file"));
    }
    Ok(file)
}

/// Reads the text of `path` as `read_limited` does; `None` when it does not
/// exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, FileError> {
    text_or_none(path, read_limited(path))
}

/// Reads a file the tool writes itself (state, credentials, the MongoDB key
/// file, rendered files) never through a link: see `open_own`; `None` when
/// it does not exist.
pub fn read_own_optional(path: &Path) -> Result<Option<String>, FileError> {
    text_or_none(path, open_own(path).and_then(read_from))
}

fn text_or_none(path: &Path, read: io::Result<Vec<u8>>) -> Result<Option<String>, FileError> {
    match read {
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

/// Reads the bytes of a file the tool had written for itself (a pulled
/// chart), never through a link: see `open_own`.
pub fn read_own_bytes(path: &Path) -> Result<Vec<u8>, FileError> {
    open_own(path)
        .and_then(read_from)
        .map_err(FileError::new("read", path))
}

/// The entries of the directory `path` (not followed into), sorted; empty
/// when there is no such directory.
pub fn entries_of(path: &Path) -> Result<Vec<PathBuf>, FileError> {
    let listing = match fs::read_dir(path) {
        Ok(listing) => listing,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(FileError::new("list", path)(error)),
    };
    let mut entries = listing
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(FileError::new("list", path))?;
    entries.sort();
    Ok(entries)
}

/// Renames `from` to `to` (in the same file system; a link at `to` is
/// replaced, never followed).
pub fn rename(from: &Path, to: &Path) -> Result<(), FileError> {
    fs::rename(from, to).map_err(FileError::new("rename", from))?;
    tracing::info!(target: "file", "renamed {} to {}", from.display(), to.display());
    Ok(())
}

/// Removes the empty directory at `path`; returns whether there was one.
pub fn remove_empty_dir(path: &Path) -> Result<bool, FileError> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(FileError::new("remove the directory", path)(error)),
    }
}

/// Writes `contents` to `path` atomically with permission bits `mode`,
/// owned by the running user, creating missing parent directories (0755).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    write_atomic_owned(path, contents, mode, None)
}

/// `write_atomic`, the file owned by `owner` when given.
///
/// The temporary file has a fixed name next to the target (runs hold the
/// run lock, so there is one writer). One left by a killed run is removed
/// (unlinked, never opened) and made anew with `O_CREAT|O_EXCL|O_NOFOLLOW`;
/// owner and mode are set on its descriptor before it is renamed. A link at
/// the temporary name or at `path` is refused, and left as it is.
pub fn write_atomic_owned(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<(), FileError> {
    let (head, tail) = contents.split_at(contents.len() / 2);
    write_with(path, mode, owner, |file, points| {
        file.write_all(head)?;
        points.reach("torn", file);
        file.write_all(tail)
    })
}

/// The atomic write of `write_atomic_owned`, the contents written by `fill`
/// (which reaches the `torn` point half way).
fn write_with(
    path: &Path,
    mode: u32,
    owner: Option<Owner>,
    fill: impl FnOnce(&mut fs::File, &WritePoints) -> io::Result<()>,
) -> Result<(), FileError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if !parent.exists() {
        ensure_dir(parent, 0o755)?;
    }
    let temporary = temporary_path(path);
    let points = WritePoints::of(path);
    let mut made = false;
    let write = || -> io::Result<()> {
        refuse_link(path)?;
        remove_leftover(&temporary)?;
        // Declared before the file, so dropped after it is closed.
        let _no_child_starts = (mode & 0o111 != 0).then(super::command::writing_executable);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o700)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)
            .map_err(|error| match error.kind() {
                io::ErrorKind::AlreadyExists => {
                    refused(&temporary, "made by someone else meanwhile")
                }
                _ => error,
            })?;
        made = true;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        fill(&mut file, &points)?;
        file.sync_all()?;
        points.reach("unrenamed", &file);
        fs::rename(&temporary, path)?;
        points.reach("renamed", &file);
        sync_directory(parent)
    };
    write().map_err(|error| {
        if made {
            let _ = fs::remove_file(&temporary);
        }
        FileError::new("write", path)(error)
    })?;
    tracing::info!(target: "file", "wrote {} (mode {mode:o})", path.display());
    Ok(())
}

/// Refuses a symbolic link (or a directory) at `path`, the target of a write.
fn refuse_link(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => Err(refused(path, "a symbolic link")),
        Ok(metadata) if metadata.is_dir() => Err(refused(path, "a directory")),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Unlinks a temporary file a killed run left (never opening it); a link
/// or anything but a plain file there is refused.
fn remove_leftover(temporary: &Path) -> io::Result<()> {
    match fs::symlink_metadata(temporary) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            Err(refused(temporary, "a symbolic link"))
        }
        Ok(metadata) if !metadata.is_file() => Err(refused(temporary, "not a regular file")),
        Ok(_) => fs::remove_file(temporary),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn sync_directory(directory: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(directory)?
        .sync_all()
}

/// The temporary file `write_atomic` writes before renaming it to `path`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.stackinstall-tmp"))
}

/// The kill points of one atomic write of a file (see `killpoint`):
/// `write NAME: torn` (half the temporary file written), `unrenamed`
/// (complete and synced, not renamed) and `renamed` (renamed, the
/// directory not yet synced). What is written is on disk when a test kills
/// the run there.
struct WritePoints(String);

impl WritePoints {
    fn of(path: &Path) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        Self(name.unwrap_or_default())
    }

    fn reach(&self, phase: &str, file: &fs::File) {
        super::killpoint::reached_then(
            || format!("write {}: {phase}", self.0),
            || {
                let _ = file.sync_all();
            },
        );
    }
}

/// Makes `path` hold exactly `contents` with `mode`; returns whether it changed.
pub fn ensure_file(path: &Path, contents: &[u8], mode: u32) -> Result<bool, FileError> {
    ensure_file_owned(path, contents, mode, None)
}

/// `ensure_file`, the file also owned by `owner` when given. The current
/// file is read without following a link (a link there is an error).
pub fn ensure_file_owned(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<bool, FileError> {
    let current = open_own(path).and_then(|file| {
        let metadata = file.metadata()?;
        Ok((read_from(file)?, metadata))
    });
    let same = match current {
        Ok((bytes, metadata)) => bytes == contents && fits(&metadata, mode, owner),
        Err(error) if error.kind() == io::ErrorKind::NotFound => false,
        Err(error) => return Err(FileError::new("read", path)(error)),
    };
    if same {
        return Ok(false);
    }
    write_atomic_owned(path, contents, mode, owner)?;
    Ok(true)
}

/// Whether `target` is already a copy of `source` with `mode` and `owner`
/// (compared in chunks: for files too big to hold in memory, like a
/// binary). A link at `target` is an error.
pub fn is_copy_of(
    source: &Path,
    target: &Path,
    mode: u32,
    owner: Owner,
) -> Result<bool, FileError> {
    let file = match open_own(target) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(FileError::new("read", target)(error)),
    };
    let metadata = file.metadata().map_err(FileError::new("read", target))?;
    if !fits(&metadata, mode, Some(owner)) {
        return Ok(false);
    }
    let source_file = fs::File::open(source).map_err(FileError::new("read", source))?;
    same_bytes(source_file, file).map_err(FileError::new("compare", target))
}

/// Makes `target` a copy of `source` with `mode` and `owner`, written
/// atomically only when it differs; returns whether it changed.
pub fn ensure_copy(
    source: &Path,
    target: &Path,
    mode: u32,
    owner: Owner,
) -> Result<bool, FileError> {
    if is_copy_of(source, target, mode, owner)? {
        return Ok(false);
    }
    let mut source_file = fs::File::open(source).map_err(FileError::new("read", source))?;
    write_with(target, mode, Some(owner), |file, points| {
        io::copy(&mut source_file, file)?;
        points.reach("torn", file);
        Ok(())
    })?;
    Ok(true)
}

fn fits(metadata: &fs::Metadata, mode: u32, owner: Option<Owner>) -> bool {
    metadata.mode() & 0o7777 == mode
        && owner.is_none_or(|(uid, gid)| metadata.uid() == uid && metadata.gid() == gid)
}

fn same_bytes(mut left: fs::File, mut right: fs::File) -> io::Result<bool> {
    use std::io::Read;
    if left.metadata()?.len() != right.metadata()?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let read = left.read(&mut a)?;
        if read == 0 {
            return Ok(true);
        }
        right.read_exact(&mut b[..read])?;
        if a[..read] != b[..read] {
            return Ok(false);
        }
    }
}

/// Makes `path` a directory; returns whether it made it. Only directories
/// it makes get a mode (`mode` for `path`, 0755 for missing parents): an
/// existing directory keeps its mode and owner (`/tmp` stays 1777). A
/// symbolic link on the way that someone else could have planted is
/// refused (see `refuse_planted_links`).
pub fn ensure_dir(path: &Path, mode: u32) -> Result<bool, FileError> {
    check_directory_path(path)?;
    if path.is_dir() {
        return Ok(false);
    }
    let mut missing = Vec::new();
    let mut current = Some(path);
    while let Some(directory) = current.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        missing.push(directory);
        current = directory.parent();
    }
    for directory in missing.into_iter().rev() {
        let wanted = if directory == path { mode } else { 0o755 };
        match fs::DirBuilder::new().mode(wanted & 0o700).create(directory) {
            Ok(()) => set_mode_and_owner(directory, wanted, None)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && directory.is_dir() => {}
            Err(error) => return Err(FileError::new("create directory", directory)(error)),
        }
    }
    Ok(true)
}

/// Refuses `path` when one of its components that exists is a symbolic
/// link in a directory that someone other than the running user can write
/// (group or others may write it, or another user owns it; a sticky bit
/// does not stop anyone from making a new name there): such a link may
/// have been planted to turn the files root writes next into, say,
/// `/etc`. This holds for paths the operator gave too (`render --out
/// /tmp/review`, `[nfs] path`): the operator named a directory, not
/// whatever link another account put there. A link in a directory only
/// the running user writes (root's own layout, `/var/lib -> /data/lib`) is
/// followed.
/// Fails when `path` leads through a link someone else could have planted
/// (see `refuse_planted_links`): for a directory the tool writes into or
/// hands to another program (the NFS export), looked at before anything
/// changes.
pub fn check_directory_path(path: &Path) -> Result<(), FileError> {
    refuse_planted_links(path).map_err(FileError::new("use the directory", path))
}

fn refuse_planted_links(path: &Path) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    let mut current = PathBuf::new();
    for component in path.components() {
        let parent = current.clone();
        current.push(component);
        let metadata = match fs::symlink_metadata(&current) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        let directory = match parent.as_os_str().is_empty() {
            true => fs::metadata("."),
            false => fs::metadata(&parent),
        }?;
        if directory.uid() != user || directory.mode() & 0o022 != 0 {
            return Err(refused(
                &current,
                "a symbolic link in a directory other users can write",
            ));
        }
    }
    Ok(())
}

/// Makes `path` a directory for the tool's own secrets: made 0700, or
/// narrowed to 0700 when it is there with more (only for directories that
/// belong to stackinstall, like `/etc/stackinstall`); returns whether it
/// changed anything.
pub fn ensure_private_dir(path: &Path) -> Result<bool, FileError> {
    if ensure_dir(path, 0o700)? {
        return Ok(true);
    }
    match mode_of(path) {
        Some(0o700) => Ok(false),
        _ => set_mode_and_owner(path, 0o700, None).map(|()| true),
    }
}

/// Sets `mode` (and `owner`, when given) of the file or directory at `path`
/// through a descriptor opened without following a link.
pub fn set_mode_and_owner(path: &Path, mode: u32, owner: Option<Owner>) -> Result<(), FileError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => refused(path, "a symbolic link"),
            _ => error,
        })
        .map_err(FileError::new("open", path))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(FileError::new("change the owner of", path))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(FileError::new("set permissions of", path))
}

/// Makes `path` owned by `uid`:`gid`, through a descriptor opened without
/// following a link; returns whether it changed.
pub fn ensure_owner(path: &Path, uid: u32, gid: u32) -> Result<bool, FileError> {
    let metadata = fs::symlink_metadata(path).map_err(FileError::new("look at", path))?;
    if metadata.uid() == uid && metadata.gid() == gid {
        return Ok(false);
    }
    set_mode_and_owner(path, metadata.mode() & 0o7777, Some((uid, gid)))?;
    Ok(true)
}

/// Makes `link` a symbolic link to `target` (replacing a link or file
/// there atomically); returns whether it changed.
pub fn ensure_symlink(link: &Path, target: &Path) -> Result<bool, FileError> {
    if link_target(link)?.as_deref() == Some(target) {
        return Ok(false);
    }
    if let Some(parent) = link.parent().filter(|parent| !parent.is_dir()) {
        ensure_dir(parent, 0o755)?;
    }
    let temporary = temporary_path(link);
    let make = || -> io::Result<()> {
        match fs::remove_file(&temporary) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        std::os::unix::fs::symlink(target, &temporary)?;
        fs::rename(&temporary, link)
    };
    make().map_err(FileError::new("link", link))?;
    tracing::info!(target: "file", "linked {} -> {}", link.display(), target.display());
    Ok(true)
}

/// Where the symbolic link `link` points; `None` when there is no link.
pub fn link_target(link: &Path) -> Result<Option<PathBuf>, FileError> {
    match fs::read_link(link) {
        Ok(target) => Ok(Some(target)),
        Err(error)
            if error.kind() == io::ErrorKind::NotFound
                || error.kind() == io::ErrorKind::InvalidInput =>
        {
            Ok(None)
        }
        Err(error) => Err(FileError::new("read the link", link)(error)),
    }
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

/// The permission bits of `path` (not of what a link there points to), if
/// it exists.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::symlink_metadata(path)
        .ok()
        .map(|metadata| metadata.mode() & 0o7777)
}

/// The owner of `path` (not of what a link there points to), if it exists.
pub fn owner_of(path: &Path) -> Option<Owner> {
    fs::symlink_metadata(path)
        .ok()
        .map(|metadata| (metadata.uid(), metadata.gid()))
}

/// Whether `path` is there (a link counts, whatever it points to).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_in_a_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        let victim = dir.path().join("victim");
        let private = dir.path().join("private");
        for directory in [&shared, &victim, &private] {
            fs::create_dir(directory).unwrap();
        }
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&victim, shared.join("out")).unwrap();
        std::os::unix::fs::symlink(&victim, private.join("out")).unwrap();
        for planted in [shared.join("out"), shared.join("out/deeper")] {
            let error = ensure_dir(&planted, 0o755).unwrap_err();
            assert!(
                error.to_string().contains(&format!(
                    "`{}` is a symbolic link in a directory other users can write",
                    shared.join("out").display()
                )),
                "{error}"
            );
        }
        assert!(!victim.join("deeper").exists());
        assert!(
            !ensure_dir(&private.join("out"), 0o700).unwrap(),
            "root's own link is followed"
        );
    }

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

    /// A link planted at the temporary name or at the target is refused,
    /// left as it is, and what it points to is unchanged.
    #[test]
    fn planted_links_are_refused_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        fs::write(&victim, b"root:x:0:0\n").unwrap();
        let target = dir.path().join("encryption");
        for link in [temporary_path(&target), target.clone()] {
            std::os::unix::fs::symlink(&victim, &link).unwrap();
            let refusals = [
                write_atomic(&target, b"key\n", 0o600).unwrap_err(),
                ensure_file(&target, b"key\n", 0o600).unwrap_err(),
            ];
            for error in refusals {
                let text = error.to_string();
                assert!(
                    text.contains(&format!("`{}` is a symbolic link", link.display())),
                    "{text}"
                );
                assert!(error.hint().is_some());
            }
            assert_eq!(fs::read(&victim).unwrap(), b"root:x:0:0\n");
            assert!(
                fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            fs::remove_file(&link).unwrap();
        }
        assert!(read_own_optional(&victim).unwrap().is_some());
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        assert!(
            read_own_optional(&target).is_err(),
            "a link is not read through"
        );
        assert!(set_mode_and_owner(&target, 0o600, None).is_err());
        assert_eq!(
            mode_of(&victim),
            Some(0o666 & !umask()),
            "the link's target kept its mode"
        );
    }

    fn umask() -> u32 {
        // SAFETY: umask has no preconditions; it is set back at once.
        unsafe {
            let mask = libc::umask(0o022);
            libc::umask(mask);
            mask
        }
    }

    /// Only directories `ensure_dir` makes get a mode.
    #[test]
    fn an_existing_directory_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("tmp");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!ensure_dir(&shared, 0o755).unwrap());
        assert_eq!(mode_of(&shared), Some(0o1777));
        let made = dir.path().join("a/b/private");
        assert!(ensure_dir(&made, 0o700).unwrap());
        assert_eq!(mode_of(&made), Some(0o700));
        assert_eq!(mode_of(&dir.path().join("a")), Some(0o755));
    }
}
