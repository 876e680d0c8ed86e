//! What runs a program: the machine, or a test's programs in-process. A
//! [`Host`](super::Host) carries one ([`Processes`]); the steps run their
//! commands through [`super::Command`], which asks the programs of the host
//! the running thread has entered (`Host::enter`), else starts a child. The
//! binary never enters a test host: only tests build one (rustup's
//! `process.rs`, `Process::TestProcess`), so that a step's look, run and
//! verification take milliseconds instead of a process per fake program.

use std::cell::RefCell;
use std::sync::Arc;

/// What a command printed, and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Output {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A program run, as a test's programs receive it.
#[derive(Debug)]
pub struct Invocation<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// The child's whole environment (what a real child would get).
    pub env: &'a [(String, String)],
    pub stdin: Option<&'a [u8]>,
}

/// A test's programs, run in-process.
pub trait Programs: Send + Sync {
    /// Runs `invocation`; `None` when there is no such program (the
    /// command then fails as one not found on `PATH`).
    fn run(&self, invocation: &Invocation) -> Option<Output>;
}

/// Who runs the programs of a host.
#[derive(Clone, Default)]
pub enum Processes {
    /// The machine: a child process per command.
    #[default]
    Os,
    /// A test's programs, in-process.
    Test(Arc<dyn Programs>),
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Os => f.write_str("Os"),
            Self::Test(_) => f.write_str("Test"),
        }
    }
}

thread_local! {
    static ENTERED: RefCell<Option<Arc<dyn Programs>>> = const { RefCell::new(None) };
}

/// While held, this thread's commands run through a test's programs; the
/// thread's earlier programs come back when it is dropped.
#[must_use = "the programs stay entered only while the guard lives"]
pub struct Entered {
    previous: Option<Arc<dyn Programs>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ENTERED.with(|entered| *entered.borrow_mut() = previous);
    }
}

impl Processes {
    /// Makes this thread's commands run through these processes until the
    /// guard is dropped.
    pub fn enter(&self) -> Entered {
        let programs = match self {
            Self::Os => None,
            Self::Test(programs) => Some(Arc::clone(programs)),
        };
        let previous = ENTERED.with(|entered| entered.replace(programs));
        Entered { previous }
    }
}

/// The test's programs this thread has entered, if any.
pub(super) fn entered() -> Option<Arc<dyn Programs>> {
    ENTERED.with(|entered| entered.borrow().clone())
}
