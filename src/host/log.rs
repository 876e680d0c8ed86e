//! The run log: everything the run did, one file per run, secrets redacted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use super::fs::{FileError, ensure_private_dir};
use crate::secret::redact;

/// Starts logging to a new file `<dir>/<command>-<timestamp>.log` (mode 0600).
/// Returns the file's path. Only the first call in a process installs the log.
pub fn start(dir: &Path, command: &str) -> Result<PathBuf, FileError> {
    ensure_private_dir(dir)?;
    let stamp = file_stamp();
    let mut path = dir.join(format!("{command}-{stamp}.log"));
    let mut suffix = 1;
    while path.exists() {
        suffix += 1;
        path = dir.join(format!("{command}-{stamp}-{suffix}.log"));
    }
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| FileError {
            action: "create",
            path: path.clone(),
            source,
        })?;
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
