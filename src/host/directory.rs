//! Directories held by handle. A path is looked at once: each part is
//! opened `O_DIRECTORY|O_NOFOLLOW` relative to the one before, from `/`,
//! its owner and mode checked with `fstat` on that handle, and every later
//! create, rename and sync happens relative to the handle (`openat`,
//! `renameat`). Whoever renames a directory on the path afterwards, or puts
//! a link in its place, changes a name the tool no longer uses.
//!
//! A directory on the path of a write is refused when an ordinary user
//! owns it or can write it (uid or gid 1000 and above, `nobody`, or
//! everyone): such a user could swap the next directory before the tool
//! opens it. Accepted besides the running user's and root's own: a
//! directory a package gave to its service account (a system uid, like
//! `mongodb`'s `/var/lib/mongodb` or `rabbitmq`'s `/etc/rabbitmq`) below a
//! directory only root writes; a directory a system group may write
//! (Ubuntu's `/var/log` is `root:syslog 0775`); and a sticky directory
//! everyone writes (`/tmp`) when the entry the path takes in it is root's.
//! A symbolic link is followed only in a directory only root writes
//! (root's own layout, `/var/lib -> /data/lib`).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Stat};

/// A path that is not the plain file it should be (a symbolic link, a
/// hard link to another file, a directory): refused, never followed.
#[derive(Debug, thiserror::Error)]
#[error("`{}` is {what}; refusing to follow it", path.display())]
pub struct Refused {
    pub path: PathBuf,
    pub what: &'static str,
}

pub(crate) fn refused(path: &Path, what: &'static str) -> io::Error {
    io::Error::other(Refused {
        path: path.to_path_buf(),
        what,
    })
}

/// The lowest uid and gid of an ordinary account (`UID_MIN`, `GID_MIN` of
/// Debian's and Ubuntu's `/etc/login.defs`); below are system accounts.
const FIRST_ORDINARY_ID: u32 = 1000;
/// `nobody` and `nogroup`: anyone's, never a service's.
const NOBODY: u32 = 65534;
/// At most this many symbolic links followed on one path (the kernel's own
/// limit, `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// A directory on the path of a write that an ordinary user owns or can
/// write: refused, naming who.
#[derive(Debug, thiserror::Error)]
#[error("`{}` {who}: a file written below it could be turned elsewhere; refusing to use it", path.display())]
pub struct Exposed {
    pub path: PathBuf,
    pub who: String,
}

impl Exposed {
    /// The commands that make it safe.
    pub fn hint(&self) -> String {
        format!(
            "a directory stackinstall writes in, and every directory above it, must be writable by root alone: look at what is in `{0}` (`ls -la {0}`), then `sudo chown root:root {0} && sudo chmod go-w {0}`, or name another directory (`render` needs no root: run it as the user who owns the directory)",
            self.path.display()
        )
    }
}

fn exposed(path: &Path, who: String) -> io::Error {
    io::Error::other(Exposed {
        path: path.to_path_buf(),
        who,
    })
}

/// What a walk does with a missing part of the path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Fails with `NotFound`.
    Fail,
    /// Makes it: the last part with this mode, the others 0755.
    Make(u32),
}

/// A directory opened `O_DIRECTORY|O_NOFOLLOW` after its path was checked.
pub struct Directory {
    fd: OwnedFd,
    path: PathBuf,
    stat: Stat,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Directory({})", self.path.display())
    }
}

impl Directory {
    /// Opens the existing directory `path`, checked part by part.
    pub fn open(path: &Path) -> io::Result<Self> {
        walk(path, Missing::Fail).map(|(directory, _)| directory)
    }

    /// Opens `path`, making what is missing; returns it and whether its
    /// last part was made.
    pub fn ensure(path: &Path, mode: u32) -> io::Result<(Self, bool)> {
        walk(path, Missing::Make(mode))
    }

    /// Checks the part of `path` that exists; a missing rest is fine.
    pub fn check(path: &Path) -> io::Result<()> {
        match walk(path, Missing::Fail) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its device and inode: what a later look compares to find it swapped.
    pub fn identity(&self) -> (u64, u64) {
        (self.stat.st_dev, self.stat.st_ino)
    }

    /// Its permission bits and owner, as opened.
    pub fn mode_and_owner(&self) -> (u32, u32, u32) {
        (
            self.stat.st_mode & 0o7777,
            self.stat.st_uid,
            self.stat.st_gid,
        )
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The entry `name` (one part, no `/`), not followed if it is a link.
    pub fn entry(&self, name: &OsStr) -> io::Result<Option<Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Opens the file `name` in it for reading, never through a link.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::empty())
            .map(File::from)
            .map_err(|error| match error {
                rustix::io::Errno::LOOP => refused(&self.path.join(name), "a symbolic link"),
                error => error.into(),
            })
    }

    /// Opens the directory `name` in it (not followed if it is a link),
    /// without judging it: for a directory handed to others (the NFS
    /// export), whose own owner and mode are the caller's business.
    pub fn open_child(&self, name: &OsStr) -> io::Result<Self> {
        open_child(self, name)
    }

    /// Makes the directory `name` in it with `mode` (and `owner`), or opens
    /// the one there; returns it and whether it was made. Not judged.
    pub fn ensure_child(
        &self,
        name: &OsStr,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<(Self, bool)> {
        let made = make_child(self, name, mode)?;
        let mut child = open_child(self, name)?;
        if made {
            if let Some((uid, gid)) = owner {
                rustix::fs::fchown(&child.fd, Some(uid_of(uid)), Some(gid_of(gid)))?;
            }
            rustix::fs::fchmod(&child.fd, Mode::from_raw_mode(mode))?;
            child.stat = rustix::fs::fstat(&child.fd)?;
        }
        Ok((child, made))
    }

    /// The names in it, sorted.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_os_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes the entry `name` (one part, no `/`) that is not a
    /// directory: a link is removed itself, never followed.
    pub fn remove_entry(&self, name: &OsStr) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(Into::into)
    }

    /// Flushes its entries to disk.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(Into::into)
    }

    /// Whether only root (or the running user) can change its entries.
    fn only_trusted_write(&self) -> bool {
        let mode = self.stat.st_mode;
        is_trusted_user(self.stat.st_uid)
            && (mode & 0o020 == 0 || is_trusted_group(self.stat.st_gid))
            && mode & 0o002 == 0
    }
}

fn uid_of(uid: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(uid)
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

fn is_trusted_user(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

fn is_trusted_group(gid: u32) -> bool {
    gid == 0 || gid == rustix::process::getegid().as_raw()
}

fn is_system(id: u32) -> bool {
    id < FIRST_ORDINARY_ID && id != NOBODY
}

/// The account name of `id` in the machine's `file` (`/etc/passwd`,
/// `/etc/group`), with the number.
fn named(file: &str, id: u32) -> String {
    let name = std::fs::read_to_string(file).ok().and_then(|text| {
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&id.to_string().as_str())).then(|| fields[0].to_string())
        })
    });
    match name {
        Some(name) => format!("`{name}` ({id})"),
        None => format!("{id}"),
    }
}

/// Refuses `child` (reached from `parent`) when an ordinary user owns it or
/// can write it; see the module's comment for what is accepted.
fn judge(parent: Option<&Directory>, child: &Directory) -> io::Result<()> {
    let Stat {
        st_uid: uid,
        st_gid: gid,
        st_mode: mode,
        ..
    } = child.stat;
    let bits = mode & 0o7777;
    if !is_trusted_user(uid) && !is_system(uid) {
        return Err(exposed(
            &child.path,
            format!("belongs to user {}", named("/etc/passwd", uid)),
        ));
    }
    if !is_trusted_user(uid) && !parent.is_some_and(Directory::only_trusted_write) {
        return Err(exposed(
            &child.path,
            format!(
                "belongs to the account {} in a directory others can write too",
                named("/etc/passwd", uid)
            ),
        ));
    }
    if bits & 0o020 != 0 && !is_trusted_group(gid) && !is_system(gid) {
        return Err(exposed(
            &child.path,
            format!(
                "can be written by group {} (mode {bits:04o})",
                named("/etc/group", gid)
            ),
        ));
    }
    if bits & 0o002 != 0 && bits & 0o1000 == 0 {
        return Err(exposed(
            &child.path,
            format!("can be written by everyone (mode {bits:04o})"),
        ));
    }
    Ok(())
}

/// The parts of `path` to walk, `..` kept (resolved against the handles).
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn open_root() -> io::Result<Directory> {
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        "/",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    Ok(Directory {
        fd,
        path: PathBuf::from("/"),
        stat,
    })
}

fn open_child(parent: &Directory, name: &OsStr) -> io::Result<Directory> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&parent.fd, name, flags, Mode::empty())?;
    let stat = rustix::fs::fstat(&fd)?;
    Ok(Directory {
        fd,
        path: parent.path.join(name),
        stat,
    })
}

/// Makes the directory `name` in `parent` (0700 until its mode is set on
/// its handle); returns whether it made it (false: it was there).
fn make_child(parent: &Directory, name: &OsStr, mode: u32) -> io::Result<bool> {
    match rustix::fs::mkdirat(&parent.fd, name, Mode::from_raw_mode(mode & 0o700)) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

fn is_link(parent: &Directory, name: &OsStr) -> bool {
    rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// Walks `path` from `/`, judging each directory; see [`Missing`].
fn walk(path: &Path, missing: Missing) -> io::Result<(Directory, bool)> {
    let absolute = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir()?.join(path),
    };
    let root = open_root()?;
    judge(None, &root)?;
    let mut stack = vec![root];
    let mut pending = parts(&absolute);
    let (mut links, mut made) = (0, false);
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let parent = stack.last().expect("the root stays");
        let last = pending.is_empty();
        let child = match open_child(parent, &name) {
            Ok(child) => child,
            Err(_) if is_link(parent, &name) => {
                let link = parent.path.join(&name);
                if !parent.only_trusted_write() {
                    return Err(refused(
                        &link,
                        "a symbolic link in a directory other users can write",
                    ));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(refused(&link, "a loop of symbolic links"));
                }
                let target = rustix::fs::readlinkat(&parent.fd, name.as_os_str(), Vec::new())?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                let mut followed = parts(&target);
                followed.extend(pending);
                pending = followed;
                continue;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let Missing::Make(mode) = missing else {
                    return Err(error);
                };
                let wanted = if last { mode } else { 0o755 };
                if make_child(parent, &name, wanted)? {
                    let child = open_child(parent, &name)?;
                    rustix::fs::fchmod(&child.fd, Mode::from_raw_mode(wanted))?;
                    made |= last;
                    Directory {
                        stat: rustix::fs::fstat(&child.fd)?,
                        ..child
                    }
                } else {
                    // Made meanwhile by someone else: look again.
                    pending.push_front(name);
                    continue;
                }
            }
            Err(error) => return Err(error),
        };
        judge(Some(parent), &child)?;
        stack.push(child);
    }
    let mut directory = stack.pop().expect("the root stays");
    directory.path = absolute;
    if let Some(name) = directory.path.file_name() {
        super::killpoint::pause_point(&name.to_string_lossy());
    }
    Ok((directory, made))
}

/// Whether `error` is one of the refusals of this module or of `fs`.
pub fn is_refusal(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| {
        inner.downcast_ref::<Exposed>().is_some() || inner.downcast_ref::<Refused>().is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_others_can_write_is_refused_naming_who() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = Directory::ensure(&open.join("review"), 0o755).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("can be written by everyone (mode 0777)"),
            "{error}"
        );
        assert!(!open.join("review").exists());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let (review, made) = Directory::ensure(&open.join("review"), 0o750).unwrap();
        assert!(made);
        assert_eq!(review.mode_and_owner().0, 0o750);
    }

    #[test]
    fn dot_dot_and_links_in_a_root_only_directory_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let via = dir.path().join("link/../link/deeper");
        let (deeper, made) = Directory::ensure(&via, 0o700).unwrap();
        assert!(made && real.join("deeper").is_dir());
        assert_eq!(
            deeper.identity(),
            Directory::open(&real.join("deeper")).unwrap().identity()
        );
    }
}
