//! The install engine: decides about every step, plans (each step's look,
//! changing nothing), and runs the steps, writing each checkpoint only after
//! verification and turning a failure into a report that says how to resume.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::{EngineError, Inclusion, PlannedAction, Selection, graph, quoted};
use crate::context::Context;
use crate::host::command::INTERRUPTED;
use crate::state::{Fingerprint, Status};
use crate::steps::{Group, Role, StepError, StepId};
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

impl std::fmt::Display for Decision {
    /// `done`, `to do: REASON` or `skipped (REASON)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Done => f.write_str("done"),
            Self::ToDo(reason) => write!(f, "to do: {reason}"),
            Self::Skipped(reason) => write!(f, "skipped ({reason})"),
        }
    }
}

/// Decides about every step; returns the decisions and the fingerprints,
/// in install order.
pub fn decide(
    context: &Context,
    inclusion: &Inclusion,
) -> Result<Vec<(Decision, String)>, EngineError> {
    let mut fingerprints = BTreeMap::new();
    (StepId::ALL.into_iter())
        .map(|id| decide_step(context, id, inclusion, &mut fingerprints))
        .collect()
}

/// Decides about the step `id`, with the fingerprints of the steps before
/// it in `fingerprints` (its own is added). A run calls this just before
/// the step, so inputs that earlier steps made (a self-signed certificate)
/// are seen as they are then.
fn decide_step(
    context: &Context,
    id: StepId,
    inclusion: &Inclusion,
    fingerprints: &mut BTreeMap<StepId, String>,
) -> Result<(Decision, String), EngineError> {
    // Every step's look at a unit reads the stack's units together.
    crate::steps::expect_stack_units(context);
    let fingerprint = fingerprint(context, id, fingerprints)
        .map_err(|error| EngineError::step(id, error, context))?;
    fingerprints.insert(id, fingerprint.clone());
    let decision = match inclusion.skip_reason(id) {
        Some(reason) => Decision::Skipped(reason.to_string()),
        None => todo_reason(context, id, &fingerprint).map_or(Decision::Done, Decision::ToDo),
    };
    Ok((decision, fingerprint))
}

fn fingerprint(
    context: &Context,
    id: StepId,
    earlier: &BTreeMap<StepId, String>,
) -> Result<String, StepError> {
    let mut fingerprint = Fingerprint::default();
    fingerprint.add("step", id.name());
    id.step().inputs(context, &mut fingerprint)?;
    for dependency in id.info().inputs_from {
        fingerprint.add(
            dependency.name(),
            earlier.get(dependency).map_or("", String::as_str),
        );
    }
    Ok(fingerprint.finish())
}

fn todo_reason(context: &Context, id: StepId, fingerprint: &str) -> Option<String> {
    if context.redo.contains(&id) {
        return Some("forced by --redo".into());
    }
    if id.info().always_runs() {
        return Some("runs every time".into());
    }
    let Some(checkpoint) = context.state.steps.get(&id) else {
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
    /// What the application answers at, when the run includes `gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<ServedRoutes>,
    pub steps: Vec<PlannedStep>,
}

/// The routes the gateway serves: `/` redirected to the home route, then
/// each prefix to its Service's port; and who set them.
#[derive(Debug, Serialize)]
pub struct ServedRoutes {
    /// `https://DOMAIN:PORT`.
    pub base: String,
    pub home: String,
    pub routes: Vec<crate::config::Route>,
    /// What replaced the profile's routes (a `--config` file), if anything.
    pub replaced_by: Option<String>,
}

impl ServedRoutes {
    /// The routes of `config`.
    pub fn of(config: &crate::config::Config) -> Self {
        let domain = (config.install.domain.as_ref()).map_or("DOMAIN".into(), |d| d.to_string());
        Self {
            base: format!("https://{domain}:{}", config.istio.https_port_for_clients()),
            home: config.istio.home.clone(),
            routes: config.routes.clone(),
            replaced_by: config.routes_replaced_by.clone(),
        }
    }
}

/// Looks at every step that is to do, changing nothing.
pub fn plan(context: &Context, inclusion: &Inclusion) -> Result<Plan, EngineError> {
    let decisions = decide(context, inclusion)?;
    let mut planned = Vec::new();
    for (id, (decision, _)) in StepId::ALL.into_iter().zip(decisions) {
        let decision = verified(context, id, decision);
        let (actions, note) = match &decision {
            Decision::ToDo(_) => match id.step().look(context) {
                Ok(actions) => (actions, None),
                Err(error) if error.is_input() || id.info().role == Role::ChecksInputs => {
                    return Err(EngineError::step(id, error, context));
                }
                // Usually an earlier step must run first (no cluster yet):
                // the first line says which; the log is not the place.
                Err(error) => (
                    Vec::new(),
                    Some(cannot_look(context, id, inclusion, &error)),
                ),
            },
            _ => (Vec::new(), None),
        };
        planned.push(PlannedStep {
            id: id.name(),
            title: id.info().title,
            decision,
            actions: actions.iter().flat_map(PlannedAction::of).collect(),
            note,
        });
    }
    Ok(Plan {
        profile: context.config.name.clone(),
        domain: context.config.install.domain.clone(),
        routes: (inclusion.includes(StepId::Gateway)).then(|| ServedRoutes::of(&context.config)),
        steps: planned,
    })
}

/// A step done before stays done in the plan only when its verification
/// passes, as in a run (and in `status`): one that drifted is to do, with
/// the reason the run gives.
fn verified(context: &Context, id: StepId, decision: Decision) -> Decision {
    let Decision::Done = decision else {
        return decision;
    };
    match id.step().verify(context) {
        Ok(()) => Decision::Done,
        Err(drift) => {
            let text = crate::secret::redact(&drift.to_string());
            let first = text.lines().next().unwrap_or_default().to_string();
            Decision::ToDo(format!("done earlier, but {first}"))
        }
    }
}

/// Why a step to do could not look at the host: the steps it needs that
/// have not run, or else the first line of its error.
fn cannot_look(context: &Context, id: StepId, inclusion: &Inclusion, error: &StepError) -> String {
    let missing = missing_prerequisites(context, id, &inclusion.selection);
    if !missing.is_empty() && error.prerequisite_absent() {
        return format!("it needs {} first", quoted(&missing));
    }
    let text = crate::secret::redact(&error.to_string());
    let first = text.lines().next().unwrap_or_default();
    first
        .trim_end_matches("; its stderr ends with:")
        .to_string()
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
/// any more; the running ones finish (or stop, interrupted). Every failure
/// is logged and shown with its causes; the one of the step listed first
/// is returned (a re-run resumes there).
pub fn run(
    context: &mut Context,
    inclusion: &Inclusion,
    jobs: usize,
) -> Result<Vec<Outcome>, EngineError> {
    let mut board = Board {
        outcomes: StepId::ALL.map(|_| None),
        started: [false; STEPS],
        sequential: jobs <= 1,
        fingerprints: BTreeMap::new(),
        skips_shown: Vec::new(),
        failures: Vec::new(),
    };
    // The left-out steps are known before any step starts: shown first,
    // one line per reason, so that no running step's line races them.
    for id in StepId::ALL {
        if let Some(reason) = inclusion.skip_reason(id) {
            show_skipped(context, inclusion, reason, &mut board.skips_shown);
        }
    }
    std::thread::scope(|scope| -> Result<(), EngineError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let mut running = 0;
        loop {
            while board.failures.is_empty() && running < jobs.max(1) {
                let Some(id) = board.next_ready() else {
                    break;
                };
                let Some((decision, fingerprint)) = board.decide(context, id, inclusion)? else {
                    continue;
                };
                if jobs <= 1 {
                    let result = execute(context, id, decision, &fingerprint);
                    board.settle(context, inclusion, id, result);
                    continue;
                }
                let mut fork = context.fork();
                let sender = sender.clone();
                scope.spawn(move || {
                    // A step that panics (a bug) still reports: the loop
                    // below waits for every running step's report, and
                    // would wait for ever for one that never came.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        execute(&mut fork, id, decision, &fingerprint)
                    }))
                    .unwrap_or_else(|panic| Err(panicked(id, panic.as_ref())));
                    let _ = sender.send((id, fork, result));
                });
                running += 1;
            }
            if running == 0 {
                return Ok(());
            }
            let (id, fork, result) = receiver.recv().expect("a running step reports");
            running -= 1;
            context.absorb(fork);
            board.settle(context, inclusion, id, result);
        }
    })?;
    let mut failures = board.failures;
    failures.sort_by_key(|(id, _)| *id);
    let mut failures = failures.into_iter().map(|(_, error)| error);
    let Some(first) = failures.next() else {
        return Ok(board.outcomes.into_iter().flatten().collect());
    };
    for other in failures {
        context.ui.warn(&format!("also: {}", causes(&other)));
    }
    Err(first)
}

const STEPS: usize = StepId::ALL.len();

/// Where a run stands: each step's outcome once finished, which started,
/// the fingerprints so far, and the failures.
struct Board {
    outcomes: [Option<Outcome>; STEPS],
    started: [bool; STEPS],
    /// One step at a time, in the listed order (`--jobs 1`).
    sequential: bool,
    fingerprints: BTreeMap<StepId, String>,
    skips_shown: Vec<String>,
    /// Every step that failed, as it failed.
    failures: Vec<(StepId, EngineError)>,
}

impl Board {
    /// Of the steps that have not started and whose needs have all
    /// finished, the one with the longest chain of steps waiting on it
    /// (K3s before the databases: a free slot never holds up the path the
    /// run's end waits on); the first listed among equals, and always the
    /// first listed when one step runs at a time.
    fn next_ready(&self) -> Option<StepId> {
        let finished = |id: &StepId| self.outcomes[id.position()].is_some();
        let chain = |id: StepId| if self.sequential { 0 } else { graph::chain(id) };
        (StepId::ALL.into_iter())
            .filter(|id| !self.started[id.position()] && id.info().needs.iter().all(finished))
            .min_by_key(|id| (std::cmp::Reverse(chain(*id)), *id))
    }

    /// Decides about the step `id` as it starts; a skipped step is
    /// finished at once (`None`).
    fn decide(
        &mut self,
        context: &Context,
        id: StepId,
        inclusion: &Inclusion,
    ) -> Result<Option<(Decision, String)>, EngineError> {
        self.started[id.position()] = true;
        let (decision, fingerprint) = decide_step(context, id, inclusion, &mut self.fingerprints)?;
        if INTERRUPTED.load(Ordering::SeqCst) {
            let interrupted = EngineError::Interrupted {
                step: id,
                log: context.log_path.clone(),
            };
            self.failures.push((id, interrupted));
            return Ok(None);
        }
        let Decision::Skipped(reason) = decision else {
            return Ok(Some((decision, fingerprint)));
        };
        show_skipped(context, inclusion, &reason, &mut self.skips_shown);
        self.outcomes[id.position()] = Some(Outcome {
            id: id.name(),
            result: StepResult::Skipped,
            reason: Some(reason),
            seconds: 0.0,
        });
        Ok(None)
    }

    /// Records how the step `id` ended; a failure is logged with its causes.
    fn settle(&mut self, context: &Context, inclusion: &Inclusion, id: StepId, result: StepRun) {
        match result {
            Ok((result, reason, seconds)) => {
                self.outcomes[id.position()] = Some(Outcome {
                    id: id.name(),
                    result,
                    reason,
                    seconds,
                });
            }
            Err(error) => {
                let error = explain_failure(context, inclusion, id, error);
                tracing::error!("step {id} ended: {}", causes(&error));
                self.failures.push((id, error));
            }
        }
    }
}

/// The failure of step `id` that panicked with `panic`.
fn panicked(id: StepId, panic: &(dyn std::any::Any + Send)) -> EngineError {
    let message = (panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    EngineError::StepFailed {
        step: id,
        error: Box::new(StepError::failed(
            format!("the step stopped on a bug in stackinstall (a panic: {message})"),
            "run the same command again (finished steps are skipped); if it happens again, report it with the run's log",
        )),
        log: None,
    }
}

/// Runs one step that is to do (or verifies one done before) on its own
/// line, its log lines under its id.
fn execute(context: &mut Context, id: StepId, decision: Decision, fingerprint: &str) -> StepRun {
    let _span = tracing::info_span!("step", id = id.name()).entered();
    // A lane of its own runs the step: its commands go where the host's do.
    let _programs = context.host.enter();
    let done_before = context.was_done(id);
    let info = id.info();
    let line = (context.ui).start_step(id.position() + 1, STEPS, id.name(), info.title);
    let attempt = match decision {
        Decision::Done => match id.step().verify(context) {
            Ok(()) => Ok((StepResult::AlreadyDone, None)),
            Err(drift) => {
                context
                    .ui
                    .note(&format!("done earlier, but {drift}: running it again"));
                run_step(context, id, fingerprint).map(|result| (result, Some("drifted".into())))
            }
        },
        Decision::ToDo(reason) => {
            run_step(context, id, fingerprint).map(|result| (result, Some(reason)))
        }
        Decision::Skipped(_) => unreachable!("skipped steps do not run"),
    };
    match attempt {
        Ok((result, reason)) => {
            let ending = ending(result, done_before, info.always_runs());
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
fn show_skipped(context: &Context, inclusion: &Inclusion, reason: &str, shown: &mut Vec<String>) {
    if shown.iter().any(|seen| seen == reason) {
        return;
    }
    shown.push(reason.to_string());
    let ids: Vec<&str> = (inclusion.skipped_for(reason).into_iter())
        .map(StepId::name)
        .collect();
    context.ui.skipped(reason, &ids);
}

/// A step that failed because what its prerequisites make is not there
/// (`--only tls` on a host with no cluster), and whose prerequisites have no
/// checkpoint, is reported as missing those, not as the error it ran into
/// (which the log keeps).
fn explain_failure(
    context: &Context,
    inclusion: &Inclusion,
    id: StepId,
    error: EngineError,
) -> EngineError {
    let EngineError::StepFailed { error: cause, .. } = &error else {
        return error;
    };
    let missing = missing_prerequisites(context, id, &inclusion.selection);
    if missing.is_empty() || !cause.prerequisite_absent() {
        return error;
    }
    tracing::warn!(
        "step {id} failed: {}",
        crate::secret::redact(&cause.to_string())
    );
    EngineError::MissingPrerequisite {
        step: id,
        missing,
        log: context.log_path.clone(),
    }
}

/// The steps whose outputs `id` takes (its `inputs_from`, and theirs) that
/// have no done checkpoint on this host, in install order. Steps left out
/// by `--skip-infra` or `--skip-db` count as there: the operator says so.
pub fn missing_prerequisites(context: &Context, id: StepId, selection: &Selection) -> Vec<StepId> {
    let mut missing = Vec::new();
    let mut pending: Vec<StepId> = id.info().inputs_from.to_vec();
    while let Some(dependency) = pending.pop() {
        let taken_as_there = match dependency.info().group {
            Group::Infra => selection.skip_infra,
            Group::Database => selection.skip_db,
            Group::Core => false,
        };
        if taken_as_there || context.was_done(dependency) || missing.contains(&dependency) {
            continue;
        }
        missing.push(dependency);
        pending.extend(dependency.info().inputs_from);
    }
    missing.sort();
    missing
}

/// `error`, then each of its causes, on one line, redacted.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(&format!(": {error}"));
        cause = error.source();
    }
    crate::secret::redact(&text)
}

fn round(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Looks, applies, verifies and checkpoints one step.
fn run_step(
    context: &mut Context,
    id: StepId,
    fingerprint: &str,
) -> Result<StepResult, EngineError> {
    let step = id.step();
    let attempt = |context: &mut Context| -> Result<bool, StepError> {
        let actions = step.look(context)?;
        let changed = crate::action::perform_all(context, actions)?;
        step.verify(context)?;
        Ok(changed)
    };
    match attempt(context) {
        Ok(changed) => {
            context.change_state(|state| state.record(id, Status::Done, fingerprint))?;
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
                let reason = Some(causes(&error));
                context.change_state(|state| {
                    state.record_ending(id, status, fingerprint, reason.clone())
                })?;
            }
            Err(EngineError::step(id, error, context))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything up to istio and the host's servers done: `storage`
    /// (listed first) and `namespace` are ready; the namespace has the
    /// longer chain after it (registry, tls, release, gateway, ...).
    #[test]
    fn of_the_ready_steps_the_longest_chain_starts_first() {
        let mut board = Board {
            outcomes: StepId::ALL.map(|_| None),
            started: [false; STEPS],
            sequential: false,
            fingerprints: BTreeMap::new(),
            skips_shown: Vec::new(),
            failures: Vec::new(),
        };
        let finished = [
            StepId::Preflight,
            StepId::Credentials,
            StepId::K3s,
            StepId::Helm,
            StepId::Istio,
            StepId::Packages,
            StepId::Mysql,
            StepId::Mongodb,
            StepId::Rabbitmq,
            StepId::Nfs,
        ];
        for id in finished {
            board.started[id.position()] = true;
            board.outcomes[id.position()] = Some(Outcome {
                id: id.name(),
                result: StepResult::Changed,
                reason: None,
                seconds: 0.0,
            });
        }
        assert_eq!(board.next_ready(), Some(StepId::Namespace));
        board.sequential = true;
        assert_eq!(board.next_ready(), Some(StepId::Storage));
    }
}
