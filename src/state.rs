//! The checkpoint file `/var/lib/stackinstall/state.toml` and the run lock.
//!
//! A checkpoint says a step finished and verified, when, by which version of
//! the tool, and with which inputs (a fingerprint). Facts are what the first
//! install found on the host (a server that was already there, say), kept
//! for uninstall and never overwritten ([`facts`]).

pub mod facts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::facts::{Fact, Facts, HostPackages, Object, Origin, Preexisting, Reload, Server};
use crate::host::lock::{LockError, RunLock};
use crate::host::{self, FileError, Host};
use crate::step_id::StepId;

/// Where the state lives on the host.
pub const STATE_DIR: &str = "/var/lib/stackinstall";
/// The format this stackinstall writes; it reads 1 too (facts as strings).
const STATE_VERSION: u32 = 2;

/// All checkpoints and facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub steps: BTreeMap<StepId, Checkpoint>,
    #[serde(default)]
    pub facts: Facts,
}

/// A state file of format 1: the same checkpoints, facts as strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateVersion1 {
    #[serde(default)]
    steps: BTreeMap<StepId, Checkpoint>,
    #[serde(default)]
    facts: BTreeMap<String, String>,
    #[allow(dead_code)]
    version: u32,
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            steps: BTreeMap::new(),
            facts: Facts::default(),
        }
    }
}

/// How a step last ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Applied and verified.
    Done,
    /// Stopped by Ctrl-C or a signal while it ran.
    Interrupted,
    /// Failed; the run log says why.
    Failed,
}

/// One step's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub status: Status,
    /// RFC 3339 time the step ended.
    pub finished_at: String,
    pub tool_version: String,
    /// SHA-256 of the inputs the step depends on.
    pub fingerprint: String,
    /// Why it failed or was interrupted (the error and its causes,
    /// redacted): what `status` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl State {
    /// Whether `step` is done with exactly `fingerprint`.
    pub fn is_done(&self, step: StepId, fingerprint: &str) -> bool {
        self.steps
            .get(&step)
            .is_some_and(|c| c.status == Status::Done && c.fingerprint == fingerprint)
    }

    /// Whether `step` has a done checkpoint, whatever its inputs.
    pub fn was_done(&self, step: StepId) -> bool {
        self.steps
            .get(&step)
            .is_some_and(|checkpoint| checkpoint.status == Status::Done)
    }

    /// Records how `step` ended now.
    pub fn record(&mut self, step: StepId, status: Status, fingerprint: &str) {
        self.record_ending(step, status, fingerprint, None);
    }

    /// Records how `step` ended, with why when it failed.
    pub fn record_ending(
        &mut self,
        step: StepId,
        status: Status,
        fingerprint: &str,
        reason: Option<String>,
    ) {
        self.steps.insert(
            step,
            Checkpoint {
                status,
                finished_at: now_rfc3339(),
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                fingerprint: fingerprint.to_string(),
                reason,
            },
        );
    }
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A state file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state file `{}` is damaged: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("the state file `{}` has format version {found}; this stackinstall reads versions 1 and {STATE_VERSION}", path.display())]
    WrongVersion { path: PathBuf, found: i64 },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl StateError {
    /// What the operator can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Corrupt { path, .. } | Self::WrongVersion { path, .. } => Some(format!(
                "every step is safe to run again: move the file aside (`mv {0} {0}.bad`) and run again; the steps then check the host afresh (copy its `[facts]` lines over if they can still be read: without them the servers the install added count as there before, and `uninstall --delete-db` keeps their packages)",
                path.display()
            )),
            Self::Lock(error) => error.hint(),
            Self::File(error) => error.hint(),
        }
    }
}

/// Why a state file's text is not a state.
#[derive(Debug)]
pub enum Unparsed {
    Corrupt(String),
    WrongVersion(i64),
}

/// The state in the text of a state file (its version checked): a pure
/// function, fuzzed (`fuzz/fuzz_targets/state.rs`).
pub fn parse(text: &str) -> Result<State, Unparsed> {
    let corrupt = |error: toml::de::Error| Unparsed::Corrupt(error.message().into());
    let table: toml::Table = toml::from_str(text).map_err(corrupt)?;
    match table.get("version").and_then(toml::Value::as_integer) {
        Some(1) => {
            let old: StateVersion1 = toml::from_str(text).map_err(corrupt)?;
            let (facts, unknown) = Facts::from_version_1(&old.facts);
            for key in unknown {
                tracing::warn!("state file: fact `{key}` of format 1 is not known: left out");
            }
            Ok(State {
                version: STATE_VERSION,
                steps: old.steps,
                facts,
            })
        }
        Some(version) if version == i64::from(STATE_VERSION) => {
            toml::from_str(text).map_err(corrupt)
        }
        Some(found) => Err(Unparsed::WrongVersion(found)),
        None => Err(Unparsed::Corrupt("it has no `version`".into())),
    }
}

/// The state file on a host.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    lock_path: PathBuf,
}

impl StateFile {
    /// The state file of `host`.
    pub fn new(host: &Host) -> Self {
        let dir = host.path(STATE_DIR);
        Self {
            path: dir.join("state.toml"),
            lock_path: dir.join("lock"),
        }
    }

    /// The file's path on this machine.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state; an empty state when there is no file yet.
    pub fn load(&self) -> Result<State, StateError> {
        let corrupt = |detail: String| StateError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        let text = match host::fs::read_own_optional(&self.path) {
            Ok(text) => text,
            Err(error) if error.source.kind() == std::io::ErrorKind::InvalidData => {
                return Err(corrupt(error.source.to_string()));
            }
            Err(error) => return Err(error.into()),
        };
        let Some(text) = text else {
            return Ok(State::default());
        };
        parse(&text).map_err(|problem| match problem {
            Unparsed::Corrupt(detail) => corrupt(detail),
            Unparsed::WrongVersion(found) => StateError::WrongVersion {
                path: self.path.clone(),
                found,
            },
        })
    }

    /// Writes the state atomically.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let body = toml::to_string(state).expect("state serializes to TOML");
        let text = format!(
            "# stackinstall checkpoints, and what the install found on the host ([facts]):\n# uninstall reads the facts to keep what was there before; keep this file.\n{body}"
        );
        host::fs::write_atomic(&self.path, text.as_bytes(), 0o644)?;
        Ok(())
    }

    /// Takes the run lock (one install or uninstall at a time).
    pub fn lock(&self) -> Result<RunLock, StateError> {
        Ok(RunLock::acquire(&self.lock_path)?)
    }
}

/// Builds a step's input fingerprint from named values.
#[derive(Debug, Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// Adds one named input.
    pub fn add(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_done_check() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&Host::new(dir.path()));
        let mut state = file.load().unwrap();
        state.record(StepId::Preflight, Status::Done, "abc");
        state
            .facts
            .record(&Fact::Preexisting(Preexisting::Server(Server::Mysql), true));
        file.save(&state).unwrap();
        let loaded = file.load().unwrap();
        assert_eq!(loaded, state);
        assert!(loaded.is_done(StepId::Preflight, "abc"));
        assert!(!loaded.is_done(StepId::Preflight, "abd"));
    }

    /// A state file of format 1 loads, its facts typed.
    #[test]
    fn format_1_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&Host::new(dir.path()));
        let old = include_str!("../tests/fixtures/state-before-origins.toml");
        host::fs::write_atomic(file.path(), old.as_bytes(), 0o644).unwrap();
        let state = file.load().unwrap();
        assert_eq!(state.version, STATE_VERSION);
        assert!(state.was_done(StepId::Mysql));
        assert_eq!(state.facts.mysql.preexisting, Some(true));
        assert_eq!(state.facts.rabbitmq.preexisting, Some(true));
    }

    #[test]
    fn damaged_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&Host::new(dir.path()));
        host::fs::write_atomic(file.path(), b"version = 1\n[steps.k3s\n", 0o644).unwrap();
        let error = file.load().unwrap_err();
        assert!(error.to_string().contains("is damaged"), "{error}");
        assert!(error.hint().unwrap().contains("mv "));
        host::fs::write_atomic(file.path(), b"version = 1\n\xff\xfe", 0o644).unwrap();
        let error = file.load().unwrap_err();
        assert!(
            error.to_string().contains("is damaged: not UTF-8 text"),
            "{error}"
        );
        host::fs::write_atomic(file.path(), b"version = 7\n", 0o644).unwrap();
        assert!(file.load().unwrap_err().to_string().contains("version 7"));
    }
}
