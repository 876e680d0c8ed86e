//! What a backup takes from the machine that needs a program or a file
//! read beyond the usual limit: K3s's datastore, the MySQL dump, and the
//! archive written root-only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::command::{Command, CommandError};
use super::fs::{FileError, ensure_private_dir, write_atomic};
use super::{Host, service};

/// K3s's server directory (k3s-io/k3s `pkg/daemons/config`: `DataDir` +
/// `/server`).
pub const K3S_SERVER: &str = "/var/lib/rancher/k3s/server";

/// The cluster token K3s writes at its first start (`server/token`):
/// without it a snapshot cannot be restored (its secrets are encrypted
/// with keys derived from it).
pub const K3S_TOKEN: &str = "/var/lib/rancher/k3s/server/token";

/// The embedded etcd's directory, present when K3s runs etcd
/// (`--cluster-init`); else the datastore is kine on SQLite in `db/`.
pub const K3S_ETCD: &str = "/var/lib/rancher/k3s/server/db/etcd";

/// The SQLite datastore and its write-ahead log (kine's default DSN,
/// `sqlite://.../server/db/state.db?_journal=WAL`).
pub const K3S_SQLITE: [&str; 3] = ["state.db", "state.db-wal", "state.db-shm"];

/// The largest file a backup reads (it holds the archive in memory).
const MAX_MEMBER: u64 = 4 * 1024 * 1024 * 1024;

/// How long a dump or a snapshot may take.
const DUMP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Why the backup key file (`[backup] key_file`) cannot be used; each
/// reads after "cannot be used: ".
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("it does not exist")]
    Missing,
    #[error("{0}")]
    Unusable(String),
}

/// Whether the backup key file at `path` may be used, without reading it
/// (a plan without root may look): a regular file, not a link, owned by
/// root, that no other account may read or write (mode 0600). `backup`
/// and the `backups` step's preflight both ask this, so a key the
/// scheduled backup would refuse is refused before the install too.
pub fn check_key_file(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing);
        }
        Err(error) => return Err(KeyFileError::Unusable(error.to_string())),
    };
    let mode = metadata.mode() & 0o7777;
    let why = if metadata.file_type().is_symlink() {
        "it is a symbolic link".to_string()
    } else if !metadata.is_file() {
        "it is not a regular file".to_string()
    } else if metadata.uid() != 0 {
        format!("it belongs to uid {}, not root", metadata.uid())
    } else if mode & 0o022 != 0 {
        format!("group or others may write it (mode {mode:04o})")
    } else if mode & 0o077 != 0 {
        "others may read it (it must be mode 0600)".to_string()
    } else {
        return Ok(());
    };
    Err(KeyFileError::Unusable(why))
}

/// The text of the backup key file at `path`, when `check_key_file`
/// passes, read as `fs::read_root_only` reads (never through a link, nor a
/// hard link, and root's).
pub fn read_key_file(path: &Path) -> Result<String, KeyFileError> {
    check_key_file(path)?;
    match super::fs::read_root_only(path) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(KeyFileError::Missing),
        Err(super::fs::RootOnlyError::Unsafe(why)) => Err(KeyFileError::Unusable(why)),
        Err(super::fs::RootOnlyError::File(error)) => {
            Err(KeyFileError::Unusable(error.to_string()))
        }
    }
}

/// The bytes of `path`, never through a link; `None` when it is missing;
/// an error for a file larger than a member may be (never a silently cut
/// copy, whose digest the manifest would then vouch for).
pub fn read_member(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    read_at_most(path, MAX_MEMBER)
}

fn read_at_most(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, FileError> {
    use std::io::Read;
    let file = match super::fs::open_own(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(FileError::new("read", path)(error)),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::new("read", path))?;
    if bytes.len() as u64 > limit {
        return Err(FileError::new("read", path)(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "it is larger than {} MiB, the most a backup holds of one file",
                limit / (1024 * 1024)
            ),
        )));
    }
    Ok(Some(bytes))
}

/// Left while a backup has K3s stopped: a backup killed before it started
/// K3s again leaves it, and the next backup starts K3s once its copy is
/// taken (a K3s the operator stopped has no marker and stays stopped).
pub const K3S_STOPPED_MARKER: &str = "/var/lib/stackinstall/backups/.work/k3s-stopped-by-backup";

/// Starts a K3s that a killed backup left stopped (its marker is there);
/// whether it did. K3s's unit is `Type=notify`: `systemctl start` returns
/// once its API answers.
pub fn recover_k3s(host: &Host) -> Result<bool, BackupError> {
    let marker = host.path(K3S_STOPPED_MARKER);
    if !super::fs::exists(&marker) {
        return Ok(false);
    }
    if !service::is_active("k3s")? {
        service::start("k3s").run()?;
    }
    super::fs::remove_file(&marker)?;
    Ok(true)
}

/// Where a server's datastore goes aside before it joins a restored
/// cluster again (`stamp`: the restore's).
pub fn datastore_aside(host: &Host, stamp: &str) -> PathBuf {
    host.path(K3S_SERVER)
        .join(format!("db.before-rejoin-{stamp}"))
}

/// Stops K3s and moves its datastore `server/db` aside (one rename: a run
/// killed before it finds `db` still there, one killed after finds the
/// aside directory): after another server's restore of the cluster
/// (`--cluster-reset`), a server's own etcd data is a cluster that no
/// longer exists, and K3s joins the restored one only with an empty
/// datastore (its log at the reset: "Backup and delete ${datadir}/
/// server/db on each peer etcd server and rejoin the nodes"). Nothing is
/// deleted.
pub fn set_datastore_aside(host: &Host, stamp: &str) -> Result<(), BackupError> {
    service::stop("k3s").run()?;
    let db = host.path(K3S_SERVER).join("db");
    if super::fs::exists(&db) {
        super::fs::rename(&db, &datastore_aside(host, stamp))?;
    }
    Ok(())
}

/// A copy of K3s's SQLite datastore taken with K3s stopped, so that the
/// database and its write-ahead log are one consistent state (K3s's
/// "Backup and Restore" for SQLite: copy `server/db`; the unit's
/// `KillMode=process` leaves the pods running meanwhile). K3s is started
/// again whatever happened; each file with its name in `server/db`.
pub fn k3s_sqlite_copy(host: &Host) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let marker = host.path(K3S_STOPPED_MARKER);
    let active = service::is_active("k3s")?;
    if active {
        if let Some(dir) = marker.parent() {
            ensure_private_dir(dir)?;
        }
        write_atomic(&marker, b"", 0o600)?;
        service::stop("k3s").run()?;
    }
    let ours_to_start = active || super::fs::exists(&marker);
    let copied = (K3S_SQLITE.iter())
        .map(|name| {
            let path = host.path(K3S_SERVER).join("db").join(name);
            read_member(&path).map(|bytes| bytes.map(|bytes| (name.to_string(), bytes)))
        })
        .collect::<Result<Vec<_>, _>>();
    if ours_to_start {
        service::start("k3s").run()?;
        super::fs::remove_file(&marker)?;
    }
    Ok(copied?.into_iter().flatten().collect())
}

/// An etcd snapshot taken by K3s (`k3s etcd-snapshot save`, which saves
/// `--dir/NAME-NODE-TIMESTAMP`), read and removed from `dir`.
pub fn k3s_etcd_snapshot(dir: &Path) -> Result<Vec<u8>, BackupError> {
    ensure_private_dir(dir)?;
    let name = "stackinstall-backup";
    let dir_text = dir.display().to_string();
    Command::new("k3s")
        .args(["etcd-snapshot", "save", "--name", name, "--dir", &dir_text])
        .timeout(DUMP_TIMEOUT)
        .run()?;
    let snapshot: Option<PathBuf> = super::fs::entries_of(dir)?
        .into_iter()
        .filter(|path| {
            (path.file_name().and_then(|name| name.to_str()))
                .is_some_and(|file| file.starts_with(name))
        })
        .max();
    let Some(snapshot) = snapshot else {
        return Err(BackupError::Missing(format!(
            "`k3s etcd-snapshot save` wrote no snapshot in `{dir_text}`"
        )));
    };
    let bytes = read_member(&snapshot)?.unwrap_or_default();
    super::fs::remove_file(&snapshot)?;
    Ok(bytes)
}

/// A consistent logical dump of `databases` (`--single-transaction`: one
/// snapshot of InnoDB tables, no lock), as root through `socket`, with
/// routines, triggers and events; binary columns in hex, so the dump is
/// text. `mariadb-dump` where it is installed, else `mysqldump`.
pub fn mysql_dump(socket: &str, databases: &[String]) -> Result<Vec<u8>, BackupError> {
    let dump = |program: &str| {
        Command::new(program)
            .args(dump_args(socket, databases))
            .timeout(DUMP_TIMEOUT)
            .unlogged_stdout()
            .run()
    };
    let output = match dump("mariadb-dump") {
        Err(CommandError::NotFound { .. }) => dump("mysqldump")?,
        other => other?,
    };
    Ok(output.stdout.into_bytes())
}

fn dump_args(socket: &str, databases: &[String]) -> Vec<String> {
    let mut args = vec![
        format!("--socket={socket}"),
        "--user=root".into(),
        "--single-transaction".into(),
        "--routines".into(),
        "--triggers".into(),
        "--events".into(),
        "--hex-blob".into(),
        "--databases".into(),
    ];
    args.extend(databases.iter().cloned());
    args
}

/// Keeps the newest `keep` of the archives in `dir` whose names `ours`
/// accepts (names that sort by time) and removes the older ones; returns
/// the names removed. The directory is held open, walked without
/// following a link and root's alone (`ensure_private_held_dir`); an entry
/// that is not a plain file (a link planted under one of our names, a
/// directory) is neither counted nor touched, and nothing else is.
pub fn prune(dir: &Path, keep: usize, ours: fn(&str) -> bool) -> Result<Vec<String>, FileError> {
    let (directory, _) = super::fs::ensure_private_held_dir(dir)?;
    let mut archives = Vec::new();
    for name in directory.names().map_err(FileError::new("list", dir))? {
        let Some(text) = name.to_str().filter(|text| ours(text)) else {
            continue;
        };
        let path = dir.join(text);
        let stat = (directory.entry(&name)).map_err(FileError::new("look at", &path))?;
        let plain_file = stat.is_some_and(|stat| {
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
        });
        if plain_file {
            archives.push(text.to_string());
        }
    }
    archives.sort();
    let old = archives.len().saturating_sub(keep);
    let removed: Vec<String> = archives.into_iter().take(old).collect();
    for name in &removed {
        let path = dir.join(name);
        (directory.remove_entry(std::ffi::OsStr::new(name)))
            .map_err(FileError::new("remove", &path))?;
    }
    directory.sync().map_err(FileError::new("sync", dir))?;
    Ok(removed)
}

/// Why a member could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Missing(String),
}

/// Writes `bytes` at `path` (mode `mode`, atomically), its directory made
/// root-only when `private`: an archive in the default directory, a file
/// the restore puts back in `/etc/stackinstall`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32, private: bool) -> Result<(), FileError> {
    if private && let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    write_atomic(path, bytes, mode)
}

/// Puts K3s's SQLite datastore back, with K3s stopped (K3s's "Backup and
/// Restore" for SQLite: replace `server/db`, with the token): a write-ahead
/// log the archive does not hold is removed (it belongs to the database
/// being replaced); K3s is started again.
pub fn k3s_sqlite_restore(host: &Host, files: &[(String, Vec<u8>)]) -> Result<(), BackupError> {
    service::stop("k3s").run()?;
    let db = host.path(K3S_SERVER).join("db");
    for name in K3S_SQLITE {
        if !files.iter().any(|(file, _)| file == name) {
            super::fs::remove_file(&db.join(name))?;
        }
    }
    for (name, bytes) in files {
        write_atomic(&db.join(name), bytes, 0o600)?;
    }
    service::start("k3s").run()?;
    Ok(())
}

/// Restores K3s's etcd from `snapshot` with K3s's own cluster reset
/// (`k3s server --cluster-reset --cluster-reset-restore-path=FILE`, the
/// token from its file, never in argv), K3s stopped meanwhile; the
/// snapshot is staged root-only in `work_dir` and removed.
pub fn k3s_etcd_restore(host: &Host, work_dir: &Path, snapshot: &[u8]) -> Result<(), BackupError> {
    ensure_private_dir(work_dir)?;
    let staged = work_dir.join("restore-snapshot");
    write_atomic(&staged, snapshot, 0o600)?;
    service::stop("k3s").run()?;
    let token = host.path(K3S_TOKEN).display().to_string();
    let reset = Command::new("k3s")
        .args([
            "server".to_string(),
            "--cluster-reset".into(),
            format!("--cluster-reset-restore-path={}", staged.display()),
            format!("--token-file={token}"),
        ])
        .timeout(DUMP_TIMEOUT)
        .run();
    super::fs::remove_file(&staged)?;
    reset?;
    service::start("k3s").run()?;
    Ok(())
}

/// Replays a dump of `mysql_dump` as root through `socket` (`mariadb`
/// where it is installed, else `mysql`); the dump goes on stdin.
pub fn mysql_import(socket: &str, dump: &str) -> Result<(), BackupError> {
    let import = |program: &str| {
        Command::new(program)
            .args([format!("--socket={socket}"), "--user=root".into()])
            .stdin_text(dump)
            .timeout(DUMP_TIMEOUT)
            .run()
    };
    match import("mariadb") {
        Err(CommandError::NotFound { .. }) => import("mysql")?,
        other => other?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member over the limit is an error, never a cut copy.
    #[test]
    fn a_file_over_the_limit_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member");
        std::fs::write(&path, vec![7u8; 3 * 1024 * 1024 + 1]).unwrap();
        let limit = 3 * 1024 * 1024;
        let error = read_at_most(&path, limit).unwrap_err().to_string();
        assert!(error.contains("larger than 3 MiB"), "{error}");
        std::fs::write(&path, vec![7u8; 3 * 1024 * 1024]).unwrap();
        assert_eq!(
            read_at_most(&path, limit).unwrap().unwrap().len() as u64,
            limit
        );
        assert_eq!(
            read_at_most(&dir.path().join("absent"), limit).unwrap(),
            None
        );
    }
}
