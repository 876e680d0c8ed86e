//! The install engine: decides about every step, plans (each step's look,
//! changing nothing), and runs the steps, writing each checkpoint only after
//! verification and turning a failure into a report that says how to resume.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::{EngineError, PlannedAction, Selection, quoted};
use crate::context::Context;
use crate::host::CommandError;
use crate::host::command::INTERRUPTED;
use crate::state::{Fingerprint, Status};
use crate::steps::{Group, Step, StepError};
use crate::ui::Ending;

/// What a step's checkpoint and the selection say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum Decision {
    /// Done earlier with the same inputs.
    Done,
    /// To run, and why.
    ToDo(String),
    /// Left out, and why.
    Skipped(String),
}

/// Decides about every step; returns the decisions and the fingerprints.
pub fn decide(
    context: &Context,
    steps: &[Box<dyn Step>],
    selection: &Selection,
) -> Result<Vec<(Decision, String)>, EngineError> {
    let mut fingerprints = BTreeMap::new();
    (0..steps.len())
        .map(|position| decide_step(context, steps, position, selection, &mut fingerprints))
        .collect()
}

/// Decides about the step at `position`, with the fingerprints of the
/// steps before it in `fingerprints` (its own is added). A run calls this
/// just before the step, so inputs that earlier steps made (a self-signed
/// certificate) are seen as they are then.
fn decide_step(
    context: &Context,
    steps: &[Box<dyn Step>],
    position: usize,
    selection: &Selection,
    fingerprints: &mut BTreeMap<&'static str, String>,
) -> Result<(Decision, String), EngineError> {
    let step = steps[position].as_ref();
    let fingerprint = fingerprint(context, step, fingerprints)
        .map_err(|error| EngineError::step(step, error, context))?;
    fingerprints.insert(step.id(), fingerprint.clone());
    let decision = match selection.skip_reason(step, position, steps) {
        Some(reason) => Decision::Skipped(reason),
        None => todo_reason(context, step, selection, &fingerprint)
            .map_or(Decision::Done, Decision::ToDo),
    };
    Ok((decision, fingerprint))
}

fn fingerprint(
    context: &Context,
    step: &dyn Step,
    earlier: &BTreeMap<&str, String>,
) -> Result<String, StepError> {
    let mut fingerprint = Fingerprint::default();
    fingerprint.add("step", step.id());
    step.inputs(context, &mut fingerprint)?;
    for dependency in step.depends_on() {
        fingerprint.add(
            dependency,
            earlier.get(dependency).map_or("", String::as_str),
        );
    }
    Ok(fingerprint.finish())
}

fn todo_reason(
    context: &Context,
    step: &dyn Step,
    selection: &Selection,
    fingerprint: &str,
) -> Option<String> {
    if selection.redo.iter().any(|id| id == step.id()) {
        return Some("forced by --redo".into());
    }
    if step.always_runs() {
        return Some("runs every time".into());
    }
    let Some(checkpoint) = context.state.steps.get(step.id()) else {
        return Some("not done yet".into());
    };
    match checkpoint.status {
        Status::Interrupted => Some("interrupted last time".into()),
        Status::Failed => Some("failed last time".into()),
        Status::Done if checkpoint.fingerprint != fingerprint => Some("its inputs changed".into()),
        Status::Done => None,
    }
}

/// One step of a plan, as printed and as JSON.
#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub id: &'static str,
    pub title: &'static str,
    #[serde(flatten)]
    pub decision: Decision,
    pub actions: Vec<PlannedAction>,
    /// Why the step could not look at the host yet (an earlier step must run first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What an install would do.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub profile: String,
    pub domain: Option<crate::config::Domain>,
    pub steps: Vec<PlannedStep>,
}

/// Looks at every step that is to do, changing nothing.
pub fn plan(
    context: &Context,
    steps: &[Box<dyn Step>],
    selection: &Selection,
) -> Result<Plan, EngineError> {
    let decisions = decide(context, steps, selection)?;
    let mut planned = Vec::new();
    for (step, (decision, _)) in steps.iter().zip(decisions) {
        let (actions, note) = match &decision {
            Decision::ToDo(_) => match step.look(context) {
                Ok(actions) => (actions, None),
                Err(error) if error.is_input() || step.checks_inputs() => {
                    return Err(EngineError::step(step.as_ref(), error, context));
                }
                // Usually an earlier step must run first (no cluster yet):
                // the first line says which; the log is not the place.
                Err(error) => {
                    let missing = match prerequisite_absent(&error) {
                        true => missing_prerequisites(context, steps, step.as_ref(), selection),
                        false => Vec::new(),
                    };
                    let text = match missing.is_empty() {
                        true => crate::secret::redact(&error.to_string()),
                        false => format!("it needs {} first", quoted(&missing)),
                    };
                    let first = text.lines().next().unwrap_or_default();
                    (
                        Vec::new(),
                        Some(
                            first
                                .trim_end_matches("; its stderr ends with:")
                                .to_string(),
                        ),
                    )
                }
            },
            _ => (Vec::new(), None),
        };
        planned.push(PlannedStep {
            id: step.id(),
            title: step.title(),
            decision,
            actions: actions.iter().flat_map(PlannedAction::of).collect(),
            note,
        });
    }
    Ok(Plan {
        profile: context.config.name.clone(),
        domain: context.config.install.domain.clone(),
        steps: planned,
    })
}

/// What a step of a run did (the `result` of `install --output json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepResult {
    /// It ran and changed the host.
    Changed,
    /// It ran and found everything in place.
    Unchanged,
    /// Its checkpoint was done and its result verified.
    AlreadyDone,
    /// Left out (`--only`, `--from`, `--skip-*`).
    Skipped,
}

impl StepResult {
    /// Its `result` word in `install --output json`.
    pub fn words(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
            Self::AlreadyDone => "already-done",
            Self::Skipped => "skipped",
        }
    }
}

/// How one step of a run ended.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub id: &'static str,
    pub result: StepResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub seconds: f64,
}

/// What one step's run came to: its result and why it ran, and its time.
type StepRun = Result<(StepResult, Option<String>, f64), EngineError>;

/// Runs every selected step that is to do, each once the steps it needs
/// have finished; up to `jobs` at once (1: one by one in the listed
/// order). When a step fails or the run is interrupted, no step starts
/// any more; the running ones finish (or stop, interrupted) and the first
/// failure is returned.
pub fn run(
    context: &mut Context,
    steps: &[Box<dyn Step>],
    selection: &Selection,
    jobs: usize,
) -> Result<Vec<Outcome>, EngineError> {
    let mut board = Board {
        outcomes: steps.iter().map(|_| None).collect(),
        started: vec![false; steps.len()],
        // Side by side, the step with the longest chain of steps waiting on
        // it starts first (K3s before the databases): a free slot never
        // holds up the path the run's end waits on.
        chain: match jobs {
            0 | 1 => vec![0; steps.len()],
            _ => chains(steps),
        },
        fingerprints: BTreeMap::new(),
        skips_shown: Vec::new(),
        failure: None,
    };
    // The left-out steps are known before any step starts: shown first,
    // one line per reason, so that no running step's line races them.
    for (position, step) in steps.iter().enumerate() {
        if let Some(reason) = selection.skip_reason(step.as_ref(), position, steps) {
            show_skipped(context, steps, selection, &reason, &mut board.skips_shown);
        }
    }
    std::thread::scope(|scope| -> Result<(), EngineError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let mut running = 0;
        loop {
            while board.failure.is_none() && running < jobs.max(1) {
                let Some(position) = board.next_ready(steps) else {
                    break;
                };
                let Some((decision, fingerprint)) =
                    board.decide(context, steps, position, selection)?
                else {
                    continue;
                };
                let step = steps[position].as_ref();
                let total = steps.len();
                if jobs <= 1 {
                    let result = execute(context, step, position, total, decision, &fingerprint);
                    board.settle(context, steps, selection, position, result);
                    continue;
                }
                let mut fork = context.fork();
                let sender = sender.clone();
                scope.spawn(move || {
                    let result = execute(&mut fork, step, position, total, decision, &fingerprint);
                    let _ = sender.send((position, fork, result));
                });
                running += 1;
            }
            if running == 0 {
                return Ok(());
            }
            let (position, fork, result) = receiver.recv().expect("a running step reports");
            running -= 1;
            context.absorb(fork);
            board.settle(context, steps, selection, position, result);
        }
    })?;
    match board.failure {
        Some(error) => Err(error),
        None => Ok(board.outcomes.into_iter().flatten().collect()),
    }
}

/// Per step, the length of the longest chain of steps that need it, one
/// after the other (`wait` needs `gateway`, which needs `release`, ...).
fn chains(steps: &[Box<dyn Step>]) -> Vec<usize> {
    let mut chain = vec![0; steps.len()];
    // A step comes after every step it needs: from the end, each step's
    // chain is known before those of the steps it needs.
    for at in (0..steps.len()).rev() {
        for need in steps[at].needs() {
            if let Some(needed) = steps.iter().position(|s| s.id() == *need) {
                chain[needed] = chain[needed].max(chain[at] + 1);
            }
        }
    }
    chain
}

/// Where a run stands: each step's outcome once finished, which started,
/// the fingerprints so far, and the first failure.
struct Board {
    outcomes: Vec<Option<Outcome>>,
    started: Vec<bool>,
    /// Per step, the longest chain of steps that need it, one after the
    /// other (all 0 with `--jobs 1`: the listed order).
    chain: Vec<usize>,
    fingerprints: BTreeMap<&'static str, String>,
    skips_shown: Vec<String>,
    failure: Option<EngineError>,
}

impl Board {
    /// Of the steps that have not started and whose needs have all
    /// finished, the one with the longest chain after it; the first listed
    /// among equals.
    fn next_ready(&self, steps: &[Box<dyn Step>]) -> Option<usize> {
        let finished = |id: &str| {
            let position = steps.iter().position(|s| s.id() == id);
            position.is_none_or(|at| self.outcomes[at].is_some())
        };
        (0..steps.len())
            .filter(|&at| !self.started[at] && steps[at].needs().iter().all(|id| finished(id)))
            .min_by_key(|&at| (std::cmp::Reverse(self.chain[at]), at))
    }

    /// Decides about the step at `position` as it starts; a skipped step
    /// is finished at once (`None`).
    fn decide(
        &mut self,
        context: &Context,
        steps: &[Box<dyn Step>],
        position: usize,
        selection: &Selection,
    ) -> Result<Option<(Decision, String)>, EngineError> {
        self.started[position] = true;
        let step = steps[position].as_ref();
        let (decision, fingerprint) =
            decide_step(context, steps, position, selection, &mut self.fingerprints)?;
        if INTERRUPTED.load(Ordering::SeqCst) {
            self.failure = Some(EngineError::Interrupted {
                step: step.id().into(),
                log: context.log_path.clone(),
            });
            return Ok(None);
        }
        let Decision::Skipped(reason) = decision else {
            return Ok(Some((decision, fingerprint)));
        };
        show_skipped(context, steps, selection, &reason, &mut self.skips_shown);
        self.outcomes[position] = Some(Outcome {
            id: step.id(),
            result: StepResult::Skipped,
            reason: Some(reason),
            seconds: 0.0,
        });
        Ok(None)
    }

    /// Records how the step at `position` ended; keeps the first failure.
    fn settle(
        &mut self,
        context: &Context,
        steps: &[Box<dyn Step>],
        selection: &Selection,
        position: usize,
        result: StepRun,
    ) {
        let step = steps[position].as_ref();
        match result {
            Ok((result, reason, seconds)) => {
                self.outcomes[position] = Some(Outcome {
                    id: step.id(),
                    result,
                    reason,
                    seconds,
                });
            }
            Err(error) if self.failure.is_none() => {
                self.failure = Some(explain_failure(context, steps, step, selection, error));
            }
            Err(error) => tracing::warn!("step {} also ended: {error}", step.id()),
        }
    }
}

/// Runs one step that is to do (or verifies one done before) on its own
/// line, its log lines under its id.
fn execute(
    context: &mut Context,
    step: &dyn Step,
    position: usize,
    total: usize,
    decision: Decision,
    fingerprint: &str,
) -> StepRun {
    let _span = tracing::info_span!("step", id = step.id()).entered();
    let done_before = context.was_done(step.id());
    let line = context
        .ui
        .start_step(position + 1, total, step.id(), step.title());
    let attempt = match decision {
        Decision::Done => match step.verify(context) {
            Ok(()) => Ok((StepResult::AlreadyDone, None)),
            Err(drift) => {
                context
                    .ui
                    .note(&format!("done earlier, but {drift}: running it again"));
                run_step(context, step, fingerprint).map(|result| (result, Some("drifted".into())))
            }
        },
        Decision::ToDo(reason) => {
            run_step(context, step, fingerprint).map(|result| (result, Some(reason)))
        }
        Decision::Skipped(_) => unreachable!("skipped steps do not run"),
    };
    match attempt {
        Ok((result, reason)) => {
            let ending = ending(result, done_before, step.always_runs());
            let elapsed = line.finish(&context.ui, ending);
            Ok((result, reason, round(elapsed)))
        }
        Err(error) => {
            let ending = match error {
                EngineError::Interrupted { .. } => Ending::Interrupted,
                _ => Ending::Failed,
            };
            line.finish(&context.ui, ending);
            Err(error)
        }
    }
}

/// How a finished step's line ends (README, "What a run prints"); skipped
/// steps have no line of their own.
fn ending(result: StepResult, done_before: bool, always_runs: bool) -> Ending {
    match result {
        StepResult::Changed if done_before => Ending::Updated,
        StepResult::Changed => Ending::Done,
        StepResult::Unchanged if always_runs => Ending::Ok,
        StepResult::Unchanged => Ending::AlreadyInPlace,
        StepResult::AlreadyDone | StepResult::Skipped => Ending::AlreadyDone,
    }
}

/// Shows the steps skipped for `reason`, all on one line, once.
fn show_skipped(
    context: &Context,
    steps: &[Box<dyn Step>],
    selection: &Selection,
    reason: &str,
    shown: &mut Vec<String>,
) {
    if shown.iter().any(|seen| seen == reason) {
        return;
    }
    shown.push(reason.to_string());
    let ids: Vec<&str> = steps
        .iter()
        .enumerate()
        .filter(|(position, step)| {
            selection
                .skip_reason(step.as_ref(), *position, steps)
                .as_deref()
                == Some(reason)
        })
        .map(|(_, step)| step.id())
        .collect();
    context.ui.skipped(reason, &ids);
}

/// What a program's stderr says when the cluster is not there to answer.
const CLUSTER_ABSENT: [&str; 4] = [
    "The connection to the server",
    "Unable to connect to the server",
    "Kubernetes cluster unreachable",
    "connection refused",
];

/// Whether `error` says that something an earlier step makes is not
/// there: a program not installed, a cluster that does not answer.
fn prerequisite_absent(error: &StepError) -> bool {
    match error {
        StepError::Command(CommandError::NotFound { .. }) => true,
        StepError::Command(CommandError::Failed { stderr_tail, .. }) => {
            CLUSTER_ABSENT.iter().any(|text| stderr_tail.contains(text))
        }
        _ => false,
    }
}

/// A step that failed because what its prerequisites make is not there
/// (`--only tls` on a host with no cluster), and that have no checkpoint,
/// is reported as that, not as the error it ran into (which the log keeps).
fn explain_failure(
    context: &Context,
    steps: &[Box<dyn Step>],
    step: &dyn Step,
    selection: &Selection,
    error: EngineError,
) -> EngineError {
    let EngineError::StepFailed { error: cause, .. } = &error else {
        return error;
    };
    if !prerequisite_absent(cause) {
        return error;
    }
    let missing = missing_prerequisites(context, steps, step, selection);
    if missing.is_empty() {
        return error;
    }
    tracing::warn!(
        "step {} failed: {}",
        step.id(),
        crate::secret::redact(&cause.to_string())
    );
    EngineError::MissingPrerequisite {
        step: step.id().into(),
        missing,
        log: context.log_path.clone(),
    }
}

/// The steps `step` needs (its `depends_on`, and theirs) that have no
/// done checkpoint on this host, in install order. Steps left out by
/// `--skip-infra` or `--skip-db` count as there: the operator says so.
pub fn missing_prerequisites(
    context: &Context,
    steps: &[Box<dyn Step>],
    step: &dyn Step,
    selection: &Selection,
) -> Vec<String> {
    let mut missing = Vec::new();
    let mut pending: Vec<&str> = step.depends_on().to_vec();
    while let Some(id) = pending.pop() {
        let Some(dependency) = steps.iter().find(|s| s.id() == id) else {
            continue;
        };
        let taken_as_there = match dependency.group() {
            Group::Infra => selection.skip_infra,
            Group::Database => selection.skip_db,
            Group::Core => false,
        };
        let done = context
            .state
            .steps
            .get(id)
            .is_some_and(|checkpoint| checkpoint.status == Status::Done);
        if taken_as_there || done || missing.iter().any(|seen| seen == id) {
            continue;
        }
        missing.push(id.to_string());
        pending.extend(dependency.depends_on());
    }
    missing.sort_by_key(|id| steps.iter().position(|s| s.id() == id));
    missing
}

fn round(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Looks, applies, verifies and checkpoints one step.
fn run_step(
    context: &mut Context,
    step: &dyn Step,
    fingerprint: &str,
) -> Result<StepResult, EngineError> {
    let attempt = |context: &mut Context| -> Result<bool, StepError> {
        let actions = step.look(context)?;
        let changed = if actions.iter().any(|a| a.changes_host()) {
            step.before_changes(context)?;
            crate::steps::perform_all(context, actions)?
        } else {
            false
        };
        step.verify(context)?;
        Ok(changed)
    };
    match attempt(context) {
        Ok(changed) => {
            context.change_state(|state| state.record(step.id(), Status::Done, fingerprint))?;
            Ok(if changed {
                StepResult::Changed
            } else {
                StepResult::Unchanged
            })
        }
        Err(error) => {
            let status = if error.is_interrupted() {
                Status::Interrupted
            } else {
                Status::Failed
            };
            if !error.is_input() {
                context.change_state(|state| state.record(step.id(), status, fingerprint))?;
            }
            Err(EngineError::step(step, error, context))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_with_the_longest_chain_after_it_starts_first() {
        let steps = crate::steps::all();
        let chain = chains(&steps);
        let of = |id: &str| chain[steps.iter().position(|s| s.id() == id).unwrap()];
        // k3s -> istio -> namespace -> registry|tls -> release -> gateway
        // -> wait -> summary
        assert_eq!((of("wait"), of("summary")), (1, 0));
        assert!(of("k3s") > of("istio") && of("istio") > of("mysql"));
        assert!(
            of("packages") > of("mysql"),
            "packages comes before its servers"
        );
        for database in ["mysql", "mongodb", "rabbitmq"] {
            assert!(of("istio") > of(database), "istio before {database}");
        }

        // Everything up to istio and the host's servers done: `storage`
        // (listed first) and `namespace` are ready; the namespace has the
        // longer chain after it (registry, tls, release, gateway, ...).
        let mut board = Board {
            outcomes: steps.iter().map(|_| None).collect(),
            started: vec![false; steps.len()],
            chain,
            fingerprints: BTreeMap::new(),
            skips_shown: Vec::new(),
            failure: None,
        };
        let finished = [
            "preflight",
            "credentials",
            "k3s",
            "helm",
            "istio",
            "packages",
            "mysql",
            "mongodb",
            "rabbitmq",
            "nfs",
        ];
        for id in finished {
            let at = steps.iter().position(|s| s.id() == id).unwrap();
            board.started[at] = true;
            board.outcomes[at] = Some(Outcome {
                id: steps[at].id(),
                result: StepResult::Changed,
                reason: None,
                seconds: 0.0,
            });
        }
        let next = board.next_ready(&steps).map(|at| steps[at].id());
        assert_eq!(next, Some("namespace"));
    }
}
