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

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use super::directory::refused;
pub use super::directory::{Directory, Exposed, Refused};
pub use super::killpoint::pause_point;

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
        let inner = self.source.get_ref()?;
        if let Some(exposed) = inner.downcast_ref::<Exposed>() {
            return Some(exposed.hint());
        }
        if let Some(foreign) = inner.downcast_ref::<NotRoots>() {
            return Some(foreign.hint());
        }
        let refused = inner.downcast_ref::<Refused>()?;
        Some(format!(
            "stackinstall never writes or reads its files through a link: look at who made `{}` (`ls -l`, and who can write in its directory), remove it, then run again",
            refused.path.display()
        ))
    }
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

/// Reads at most `MAX_READ` bytes of an open file; more is an error.
pub fn read_open_file(file: fs::File) -> io::Result<Vec<u8>> {
    read_from(file)
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
/// its name or on its directory's path (see [`Directory`]): a link there,
/// a hard link to another file, or anything but a regular file is refused.
pub(crate) fn open_own(path: &Path) -> io::Result<fs::File> {
    let (parent, name) = split(path)?;
    let file = Directory::open(parent)?.open_file(name)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(refused(path, "not a regular file"));
    }
    if metadata.nlink() > 1 {
        return Err(refused(path, "a hard link to another file"));
    }
    Ok(file)
}

/// The directory `path` is in, and its name there.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            },
            name,
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not the path of a file in a directory",
        )),
    }
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

/// Why `read_root_only` did not read a file.
#[derive(Debug)]
pub enum RootOnlyError {
    /// It is there but not root's alone (a link, another owner, writable
    /// by group or others, a hard link): the reason.
    Unsafe(String),
    File(FileError),
}

/// Reads a file whose contents root will trust (the bash installer's
/// passwords): only when it is a regular file owned by root, not a link
/// (at its name or on its directory's path), not hard-linked, and not
/// writable by group or others; `None` when it does not exist.
pub fn read_root_only(path: &Path) -> Result<Option<String>, RootOnlyError> {
    let file = match open_own(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if super::directory::is_refusal(&error) => {
            return Err(RootOnlyError::Unsafe(error.to_string()));
        }
        Err(error) => return Err(RootOnlyError::File(FileError::new("read", path)(error))),
    };
    let metadata = file
        .metadata()
        .map_err(|error| RootOnlyError::File(FileError::new("read", path)(error)))?;
    let mode = metadata.mode() & 0o7777;
    if metadata.uid() != 0 {
        return Err(RootOnlyError::Unsafe(format!(
            "it belongs to uid {}, not root",
            metadata.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(RootOnlyError::Unsafe(format!(
            "group or others may write it (mode {mode:04o})"
        )));
    }
    text_or_none(path, read_from(file)).map_err(RootOnlyError::File)
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
/// replaced, never followed), each directory held by handle.
pub fn rename(from: &Path, to: &Path) -> Result<(), FileError> {
    let rename = || -> io::Result<()> {
        let (from_parent, from_name) = split(from)?;
        let (to_parent, to_name) = split(to)?;
        let source = Directory::open(from_parent)?;
        let target = Directory::open(to_parent)?;
        rustix::fs::renameat(source.fd(), from_name, target.fd(), to_name)?;
        target.sync()
    };
    rename().map_err(FileError::new("rename", from))?;
    tracing::info!(target: "file", "renamed {} to {}", from.display(), to.display());
    Ok(())
}

/// Removes the empty directory at `path`; returns whether there was one.
pub fn remove_empty_dir(path: &Path) -> Result<bool, FileError> {
    let remove = || -> io::Result<()> {
        let (parent, name) = split(path)?;
        let directory = Directory::open(parent)?;
        rustix::fs::unlinkat(directory.fd(), name, AtFlags::REMOVEDIR)?;
        Ok(())
    };
    match remove() {
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
/// (which reaches the `torn` point half way), in the directory held by
/// handle from the check to the sync.
fn write_with(
    path: &Path,
    mode: u32,
    owner: Option<Owner>,
    fill: impl FnOnce(&mut fs::File, &WritePoints) -> io::Result<()>,
) -> Result<(), FileError> {
    let write = || -> io::Result<()> {
        let (parent, name) = split(path)?;
        let (directory, _) = Directory::ensure(parent, 0o755)?;
        write_in(&directory, name, mode, owner, fill)
    };
    write().map_err(FileError::new("write", path))?;
    tracing::info!(target: "file", "wrote {} (mode {mode:o})", path.display());
    Ok(())
}

/// Writes the file `name` of `directory` atomically: a temporary file made
/// `O_CREAT|O_EXCL|O_NOFOLLOW` beside it, owner and mode set on its
/// descriptor, filled, synced, renamed over `name`, the directory synced.
fn write_in(
    directory: &Directory,
    name: &OsStr,
    mode: u32,
    owner: Option<Owner>,
    fill: impl FnOnce(&mut fs::File, &WritePoints) -> io::Result<()>,
) -> io::Result<()> {
    let path = directory.path().join(name);
    let temporary_name = temporary_path(&path)
        .file_name()
        .expect("a temporary name")
        .to_os_string();
    let points = WritePoints::of(&path);
    refuse_link(directory, name, &path)?;
    remove_leftover(directory, &temporary_name, &temporary_path(&path))?;
    // Declared before the file, so dropped after it is closed.
    let _no_child_starts = (mode & 0o111 != 0).then(super::command::writing_executable);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut file = rustix::fs::openat(
        directory.fd(),
        &temporary_name,
        flags,
        Mode::from_raw_mode(mode & 0o700),
    )
    .map(fs::File::from)
    .map_err(|error| match error {
        rustix::io::Errno::EXIST => {
            refused(&temporary_path(&path), "made by someone else meanwhile")
        }
        error => error.into(),
    })?;
    let fill_and_rename = || -> io::Result<()> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        fill(&mut file, &points)?;
        file.sync_all()?;
        points.reach("unrenamed", &file);
        rustix::fs::renameat(directory.fd(), &temporary_name, directory.fd(), name)?;
        points.reach("renamed", &file);
        directory.sync()
    };
    fill_and_rename().inspect_err(|_| {
        let _ = rustix::fs::unlinkat(directory.fd(), &temporary_name, AtFlags::empty());
    })
}

/// Refuses a symbolic link (or a directory) at `name`, the target of a write.
fn refuse_link(directory: &Directory, name: &OsStr, path: &Path) -> io::Result<()> {
    match directory.entry(name)? {
        Some(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            Err(refused(path, "a symbolic link"))
        }
        Some(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            Err(refused(path, "a directory"))
        }
        _ => Ok(()),
    }
}

/// Unlinks a temporary file a killed run left (never opening it); a link
/// or anything but a plain file there is refused.
fn remove_leftover(directory: &Directory, name: &OsStr, path: &Path) -> io::Result<()> {
    match directory.entry(name)? {
        Some(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            Err(refused(path, "a symbolic link"))
        }
        Some(stat) if stat.st_mode & libc::S_IFMT != libc::S_IFREG => {
            Err(refused(path, "not a regular file"))
        }
        Some(_) => Ok(rustix::fs::unlinkat(
            directory.fd(),
            name,
            AtFlags::empty(),
        )?),
        None => Ok(()),
    }
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
    let (parent, name) = split(path).map_err(FileError::new("write", path))?;
    let (directory, _) = Directory::ensure(parent, 0o755).map_err(FileError::new("write", path))?;
    ensure_file_in(&directory, name, contents, mode, owner)
}

/// `ensure_file_owned` of the file `name` in the held `directory`: for a
/// command that writes several files in one directory (`render --out`).
pub fn ensure_file_in(
    directory: &Directory,
    name: &OsStr,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<bool, FileError> {
    let path = directory.path().join(name);
    let current = directory.open_file(name).and_then(|file| {
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(refused(&path, "not a regular file"));
        }
        if metadata.nlink() > 1 {
            return Err(refused(&path, "a hard link to another file"));
        }
        Ok((read_from(file)?, metadata))
    });
    let same = match current {
        Ok((bytes, metadata)) => bytes == contents && fits(&metadata, mode, owner),
        Err(error) if error.kind() == io::ErrorKind::NotFound => false,
        Err(error) => return Err(FileError::new("read", &path)(error)),
    };
    if same {
        return Ok(false);
    }
    let (head, tail) = contents.split_at(contents.len() / 2);
    write_in(directory, name, mode, owner, |file, points| {
        file.write_all(head)?;
        points.reach("torn", file);
        file.write_all(tail)
    })
    .map_err(FileError::new("write", &path))?;
    tracing::info!(target: "file", "wrote {} (mode {mode:o})", path.display());
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
/// existing directory keeps its mode and owner (`/tmp` stays 1777). Each
/// part of the path is checked as [`Directory`] says: a directory an
/// ordinary user owns or can write, or a link someone else could have
/// planted, is refused.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<bool, FileError> {
    Directory::ensure(path, mode)
        .map(|(_, made)| made)
        .map_err(FileError::new("use the directory", path))
}

/// `ensure_dir`, keeping the directory open: what is written in it goes
/// to the directory that was checked, whatever happens to its path.
pub fn ensure_held_dir(path: &Path, mode: u32) -> Result<Directory, FileError> {
    Directory::ensure(path, mode)
        .map(|(directory, _)| directory)
        .map_err(FileError::new("use the directory", path))
}

/// Opens the existing directory `path`, checked part by part.
pub fn open_dir(path: &Path) -> Result<Directory, FileError> {
    Directory::open(path).map_err(FileError::new("open the directory", path))
}

/// Fails when the part of `path` that exists leads through a link someone
/// else could have planted or a directory an ordinary user owns or can
/// write (see [`Directory`]): for a directory the tool writes into or hands
/// to another program (the NFS export), looked at before anything changes.
pub fn check_directory_path(path: &Path) -> Result<(), FileError> {
    Directory::check(path).map_err(FileError::new("use the directory", path))
}

/// Makes `path` a directory handed to other accounts (the NFS export,
/// `nobody`'s 0777): its parents are checked as for a write (see
/// [`Directory`]), a missing parent made with `parent_mode` (the ones above
/// it 0755), the directory itself made with `mode` and `owner` on its
/// handle, or opened when it is there (never through a link), and not
/// judged. Returns it and whether it was made.
pub fn ensure_shared_dir(
    path: &Path,
    parent_mode: u32,
    (mode, owner): (u32, Option<Owner>),
) -> Result<(Directory, bool), FileError> {
    let make = || -> io::Result<(Directory, bool)> {
        let (parent, name) = split(path)?;
        let (parent, _) = Directory::ensure(parent, parent_mode)?;
        pause_point(&name.to_string_lossy());
        parent
            .ensure_child(name, mode, owner)
            .map_err(|error| match error.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) => {
                    refused(path, "not a directory (a symbolic link?)")
                }
                _ => error,
            })
    };
    make().map_err(FileError::new("use the directory", path))
}

/// `check_directory_path` for a directory handed to others: its parents
/// are checked, and the directory itself, when there, must not be a link.
pub fn check_shared_dir(path: &Path) -> Result<(), FileError> {
    let check = || -> io::Result<()> {
        let (parent, name) = split(path)?;
        Directory::check(parent)?;
        let parent = match Directory::open(parent) {
            Ok(parent) => parent,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        match parent.entry(name)? {
            Some(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                Err(refused(path, "a symbolic link in place of the directory"))
            }
            _ => Ok(()),
        }
    };
    check().map_err(FileError::new("use the directory", path))
}

/// Opens the existing directory `path` as `ensure_shared_dir` does.
pub fn open_shared_dir(path: &Path) -> Result<Directory, FileError> {
    let open = || -> io::Result<Directory> {
        let (parent, name) = split(path)?;
        Directory::open(parent)?
            .open_child(name)
            .map_err(|error| match error.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) => {
                    refused(path, "not a directory (a symbolic link?)")
                }
                _ => error,
            })
    };
    open().map_err(FileError::new("open the directory", path))
}

/// A private directory of the tool's that belongs to another account
/// (`/var/log` is `root:syslog 0775` on Ubuntu, so that group could make
/// `/var/log/stackinstall` first): refused, never narrowed and used.
#[derive(Debug, thiserror::Error)]
#[error("`{}` belongs to {uid}:{gid}, not root: another account made it and could read or swap what stackinstall keeps there; refusing to use it", path.display())]
pub struct NotRoots {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

impl NotRoots {
    /// The commands that make it root's.
    pub fn hint(&self) -> String {
        format!(
            "look at what is in it (`sudo ls -la {0}`), then make it root's: `sudo chown -R root:root {0} && sudo chmod 0700 {0}` (or remove it and run again)",
            self.path.display()
        )
    }
}

/// Makes `path` a directory for the tool's own secrets: made 0700, or
/// narrowed to 0700 when it is there with more (only for directories that
/// belong to stackinstall, like `/etc/stackinstall`); one that another
/// account owns is refused ([`NotRoots`]). Returns whether it changed
/// anything.
pub fn ensure_private_dir(path: &Path) -> Result<bool, FileError> {
    ensure_private_held_dir(path).map(|(_, changed)| changed)
}

/// `ensure_private_dir`, keeping the directory open.
pub fn ensure_private_held_dir(path: &Path) -> Result<(Directory, bool), FileError> {
    let error = FileError::new("use the directory", path);
    let (directory, made) = Directory::ensure(path, 0o700).map_err(error)?;
    if made {
        return Ok((directory, true));
    }
    let (mode, uid, gid) = directory.mode_and_owner();
    if uid != rustix::process::geteuid().as_raw() {
        let foreign = NotRoots {
            path: path.to_path_buf(),
            uid,
            gid,
        };
        return Err(FileError::new("use the directory", path)(io::Error::other(
            foreign,
        )));
    }
    if mode == 0o700 {
        return Ok((directory, false));
    }
    rustix::fs::fchmod(directory.fd(), Mode::from_raw_mode(0o700))
        .map_err(|error| FileError::new("set permissions of", path)(error.into()))?;
    Ok((directory, true))
}

/// Sets `mode` (and `owner`, when given) of the file or directory at `path`
/// through a descriptor opened without following a link, in its directory
/// held by handle.
pub fn set_mode_and_owner(path: &Path, mode: u32, owner: Option<Owner>) -> Result<(), FileError> {
    let file = split(path)
        .and_then(|(parent, name)| {
            let directory = Directory::open(parent)?;
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            rustix::fs::openat(directory.fd(), name, flags, Mode::empty()).map_err(|error| {
                match error {
                    rustix::io::Errno::LOOP => refused(path, "a symbolic link"),
                    error => error.into(),
                }
            })
        })
        .map_err(FileError::new("open", path))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(FileError::new("change the owner of", path))?;
    }
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
        .map_err(|error| FileError::new("set permissions of", path)(error.into()))
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
/// there atomically, in its directory held by handle); returns whether it
/// changed.
pub fn ensure_symlink(link: &Path, target: &Path) -> Result<bool, FileError> {
    if link_target(link)?.as_deref() == Some(target) {
        return Ok(false);
    }
    let make = || -> io::Result<()> {
        let (parent, name) = split(link)?;
        let (directory, _) = Directory::ensure(parent, 0o755)?;
        let temporary = temporary_path(link);
        let temporary = temporary.file_name().expect("a temporary name");
        match rustix::fs::unlinkat(directory.fd(), temporary, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(error) => return Err(error.into()),
        }
        rustix::fs::symlinkat(target, directory.fd(), temporary)?;
        rustix::fs::renameat(directory.fd(), temporary, directory.fd(), name)?;
        directory.sync()
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

/// Removes the file at `path` (in its directory held by handle); returns
/// whether there was one.
pub fn remove_file(path: &Path) -> Result<bool, FileError> {
    let remove = || -> io::Result<()> {
        let (parent, name) = split(path)?;
        let directory = Directory::open(parent)?;
        rustix::fs::unlinkat(directory.fd(), name, AtFlags::empty())?;
        Ok(())
    };
    match remove() {
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

/// The files under `directory` with a set-uid or set-gid bit (not
/// directories: a set-gid directory only passes its group on), walked
/// without following links nor leaving its file system, at most `limit`
/// entries looked at; returns them and whether the walk stopped at the
/// limit. An entry below the top that cannot be read is skipped.
pub fn set_id_files(directory: &Path, limit: usize) -> Result<(Vec<PathBuf>, bool), FileError> {
    let top = fs::symlink_metadata(directory).map_err(FileError::new("look at", directory))?;
    // The top itself unreadable (doctor run without root): said, not
    // taken for an empty export.
    fs::read_dir(directory).map_err(FileError::new("list", directory))?;
    let mut found = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    let mut seen = 0;
    while let Some(current) = pending.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > limit {
                return Ok((found, true));
            }
            let Ok(metadata) = entry.path().symlink_metadata() else {
                continue;
            };
            if metadata.is_dir() && metadata.dev() == top.dev() {
                pending.push(entry.path());
            } else if metadata.is_file() && metadata.mode() & 0o6000 != 0 {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    Ok((found, false))
}

/// Whether `path` is there (a link counts, whatever it points to).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
