//! What runs a program: the machine, or a test's programs in-process. A
//! [`Host`](super::Host) carries one ([`Processes`]); the steps run their
//! commands through [`super::Command`], which asks the programs of the host
//! the running thread has entered (`Host::enter`), else starts a child. The
//! binary never enters a test host: only tests build one (rustup's
//! `process.rs`, `Process::TestProcess`), so that a step's look, run and
//! verification take milliseconds instead of a process per fake program.

use std::cell::RefCell;
use std::sync::Arc;

use super::command::Output;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Command;

    struct Echo;

    impl Programs for Echo {
        fn run(&self, invocation: &Invocation) -> Option<Output> {
            (invocation.program == "echo").then(|| Output {
                stdout: format!("{}\n", invocation.args.join(" ")),
                stderr: String::new(),
                code: Some(0),
            })
        }
    }

    #[test]
    fn an_entered_host_runs_its_programs_in_process() {
        let processes = Processes::Test(Arc::new(Echo));
        {
            let _entered = processes.enter();
            let output = Command::new("echo").args(["in", "process"]).run().unwrap();
            assert_eq!(output.stdout, "in process\n");
            let missing = Command::new("no-such-program").run().unwrap_err();
            assert!(
                missing.to_string().contains("was not found on PATH"),
                "{missing}"
            );
        }
        // Left: the machine's programs again.
        let output = Command::new("true").run().unwrap();
        assert_eq!(output.code, Some(0));
    }
}
