//! Runs checks side by side, each in a thread of its own, and waits for
//! each at most the time limit: a check still running then is reported as
//! timed out and left behind, so one hung command never holds the report.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::{CheckResult, Checked, Outcome};

/// A named check.
pub struct Check {
    pub name: &'static str,
    pub run: Box<dyn FnOnce() -> Checked + Send>,
}

impl Check {
    /// The check `name` running `run` on shared `inputs`.
    pub fn on<T: Send + Sync + 'static>(
        name: &'static str,
        inputs: &Arc<T>,
        run: fn(&T) -> Checked,
    ) -> Self {
        let inputs = Arc::clone(inputs);
        Self {
            name,
            run: Box::new(move || run(&inputs)),
        }
    }
}

/// Runs `checks` in parallel, each for at most `limit`; a check still
/// running then is reported as timed out (its thread is left behind).
pub fn run_all(checks: Vec<Check>, limit: Duration) -> Vec<CheckResult> {
    let started = Instant::now();
    let running: Vec<_> = checks
        .into_iter()
        .map(|check| {
            let (sender, receiver) = mpsc::channel();
            let run = check.run;
            std::thread::spawn(move || {
                let result = run();
                let _ = sender.send((result, started.elapsed()));
            });
            (check.name, receiver)
        })
        .collect();
    running
        .into_iter()
        .map(|(name, receiver)| {
            let left = limit.saturating_sub(started.elapsed());
            let received = receiver.recv_timeout(left);
            result(name, received, limit)
        })
        .collect()
}

fn result(
    check: &'static str,
    received: Result<(Checked, Duration), mpsc::RecvTimeoutError>,
    limit: Duration,
) -> CheckResult {
    let (outcome, notes, findings, took) = match received {
        Ok((Ok(found), took)) => {
            let outcome = if found.findings.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Findings
            };
            (outcome, found.notes, found.findings, took)
        }
        Ok((Err(why), took)) => (Outcome::Skipped, vec![why], Vec::new(), took),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let why = format!("did not finish within {}s", limit.as_secs());
            (Outcome::TimedOut, vec![why], Vec::new(), limit)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let why = "stopped without an answer (a bug: please report it)".to_string();
            (Outcome::Skipped, vec![why], Vec::new(), Duration::ZERO)
        }
    };
    CheckResult {
        check,
        outcome,
        notes,
        milliseconds: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        findings,
    }
}
