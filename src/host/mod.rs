//! The only code that touches the machine: running programs, writing files,
//! taking the run lock and keeping the run log.
//!
//! Every host path goes through [`Host::path`], so that `--root DIR` puts the
//! whole world of the tool under `DIR` (for tests and image builds). Programs
//! are found on `PATH`, so tests put fake ones first on it.
#![allow(clippy::disallowed_methods)]

pub mod archive;
pub mod backup;
pub mod cluster;
pub mod command;
pub mod directory;
pub mod download;
pub mod fs;
pub mod installed;
pub mod killpoint;
pub mod kube;
pub mod lock;
pub mod log;
pub mod packages;
pub mod process;
pub mod service;
pub mod system;

use std::path::{Path, PathBuf};

pub use command::{Command, CommandError, Output};
pub use fs::FileError;

/// The machine the tool works on, seen through its root directory, and
/// what runs its programs (the machine's, or a test's in-process).
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    processes: process::Processes,
}

impl Host {
    /// A host whose paths all live under `root` (`/` for the real machine),
    /// its programs the machine's.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            processes: process::Processes::Os,
        }
    }

    /// A test's host: paths under `root`, programs run in-process by
    /// `programs` on the threads that enter it.
    pub fn with_programs(
        root: impl Into<PathBuf>,
        programs: std::sync::Arc<dyn process::Programs>,
    ) -> Self {
        Self {
            root: root.into(),
            processes: process::Processes::Test(programs),
        }
    }

    /// Makes this thread's commands run through this host's programs until
    /// the guard is dropped (for a test's host; the machine's changes
    /// nothing).
    pub fn enter(&self) -> process::Entered {
        self.processes.enter()
    }

    /// The root every host path is taken under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the absolute host path `path` is on this machine: under the root.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        let relative = path.strip_prefix("/").unwrap_or(path);
        self.root.join(relative)
    }

    /// The absolute host path `path` as both: where this process reaches
    /// it (under the root) and how the operator knows it.
    pub fn locate(&self, path: impl AsRef<Path>) -> HostPath {
        HostPath {
            reached: self.path(&path),
            shown: path.as_ref().to_path_buf(),
        }
    }

    /// A path this process reached (under the root), with the path the
    /// operator knows (without the root); one outside the root is shown as
    /// it is.
    pub fn reached(&self, reached: impl Into<PathBuf>) -> HostPath {
        let reached = reached.into();
        let shown = match reached.strip_prefix(&self.root) {
            Ok(relative) if !self.is_real_root() => Path::new("/").join(relative),
            _ => reached.clone(),
        };
        HostPath { reached, shown }
    }

    /// Whether the tool is working on the real machine (root `/`).
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// A path of the host as both this process reaches it (under `--root`) and
/// the operator knows it (rustup's `InstallPrefix`): an action works on the
/// first and shows the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPath {
    reached: PathBuf,
    shown: PathBuf,
}

impl HostPath {
    /// Where this process reaches it.
    pub fn reached(&self) -> &Path {
        &self.reached
    }

    /// The path as the operator knows it.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Where this process reaches it, owned.
    pub fn into_reached(self) -> PathBuf {
        self.reached
    }
}
