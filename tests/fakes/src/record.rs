//! The call log: every call of a fake, one JSON line each, appended whole
//! under a file lock (steps run side by side, and so do their programs).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The log, in the record directory.
pub const FILE: &str = "calls.jsonl";
const LOCK: &str = "calls.lock";

/// One call of a fake program.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The program's name (`kubectl`).
    pub program: String,
    pub args: Vec<String>,
    /// What the program got on its standard input (lossy UTF-8).
    pub stdin: String,
    /// The whole environment the program started with.
    pub env: BTreeMap<String, String>,
    /// When the call started, in nanoseconds since the Unix epoch.
    #[serde(default)]
    pub at: u64,
}

impl Call {
    /// `program arg arg ...`.
    pub fn line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The value of the environment variable `name` the program saw.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// Whether the first argument is `verb`.
    pub fn is(&self, program: &str, verb: &str) -> bool {
        self.program == program && self.args.first().is_some_and(|first| first == verb)
    }
}

/// Appends `call` to the log of the record directory `record`.
pub fn append(record: &Path, call: &Call) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(call).expect("a call serializes");
    line.push(b'\n');
    let lock = File::create(record.join(LOCK))?;
    lock.lock()?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(record.join(FILE))?;
    log.write_all(&line)
}

/// Every call in the log of `record`, in order.
pub fn read(record: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(record.join(FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Forgets the calls of `record`.
pub fn clear(record: &Path) {
    let _ = std::fs::remove_file(record.join(FILE));
}
