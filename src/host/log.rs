//! The run log: everything the run did, one file per run, secrets redacted.

use std::fs::File;
use std::io::{self, Write};

use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use super::fs::{FileError, ensure_private_held_dir};
use crate::secret::redact;

/// Starts logging to a new file `<dir>/<command>-<timestamp>.log` (mode 0600).
/// Returns the file's path. Only the first call in a process installs the log.
pub fn start(dir: &Path, command: &str) -> Result<PathBuf, FileError> {
    // A directory another account owns is refused (`/var/log` is
    // `root:syslog 0775` on Ubuntu: that group could make it first); the
    // file is made in the directory held by handle, never through a link.
    let (directory, _) = ensure_private_held_dir(dir)?;
    let stamp = file_stamp();
    let mut name = format!("{command}-{stamp}.log");
    let mut suffix = 1;
    let file = loop {
        let flags = OFlags::WRONLY
            | OFlags::APPEND
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC;
        match rustix::fs::openat(
            directory.fd(),
            name.as_str(),
            flags,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => break File::from(fd),
            Err(rustix::io::Errno::EXIST) => {
                suffix += 1;
                name = format!("{command}-{stamp}-{suffix}.log");
            }
            Err(error) => {
                return Err(FileError {
                    action: "create",
                    path: dir.join(&name),
                    source: error.into(),
                });
            }
        }
    };
    let path = dir.join(name);
    let writer = RedactingWriter(Arc::new(Mutex::new(file)));
    // Everything of ours; only INFO and above from the libraries (the AWS
    // SDK and HTTP stacks are chatty at DEBUG).
    let filter = Targets::new()
        .with_default(Level::INFO)
        .with_target("stackinstall", Level::DEBUG)
        .with_target("command", Level::DEBUG)
        .with_target("file", Level::DEBUG);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_filter(filter);
    let subscriber = tracing_subscriber::registry().with(layer);
    // Debug builds: the kill points know their step (see `killpoint`).
    #[cfg(debug_assertions)]
    let subscriber = subscriber.with(super::killpoint::StepNames::layer());
    let _ = subscriber.try_init();
    Ok(path)
}

/// Writes to the log file with every known secret masked.
#[derive(Clone)]
struct RedactingWriter(Arc<Mutex<File>>);

impl Write for RedactingWriter {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let text = redact(&String::from_utf8_lossy(buffer));
        let mut file = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(text.as_bytes())?;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .flush()
    }
}

/// The time now in UTC as it goes into a file name: `20260101T120000Z`.
pub fn file_stamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default()
}
