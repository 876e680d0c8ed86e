//! Runs the steps in order: decides for each whether it is done, to do or
//! skipped (checkpoints, fingerprints, `--only`/`--from`/`--redo`, the skip
//! switches), shows progress, writes a checkpoint only after verification,
//! and turns a failure into a report that says how to resume.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::context::Context;
use crate::host::CommandError;
use crate::host::command::INTERRUPTED;
use crate::state::{Fingerprint, StateError, Status};
use crate::steps::{ActionKind, Group, Step, StepError};
use crate::ui::Mark;

/// Which steps the operator asked for.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub only: Vec<String>,
    pub from: Option<String>,
    pub redo: Vec<String>,
    pub skip_infra: bool,
    pub skip_db: bool,
}

impl Selection {
    /// Fails on a step name that is not one of `steps`.
    pub fn check(&self, steps: &[Box<dyn Step>]) -> Result<(), PipelineError> {
        let known: Vec<&str> = steps.iter().map(|s| s.id()).collect();
        let named = self.only.iter().chain(&self.redo).chain(&self.from);
        match named
            .into_iter()
            .find(|name| !known.contains(&name.as_str()))
        {
            Some(name) => Err(PipelineError::UnknownStep {
                name: name.clone(),
                known: known.join(", "),
            }),
            None => Ok(()),
        }
    }

    /// Why `step` (at `position` among `steps`) is left out, if it is.
    pub fn skip_reason(
        &self,
        step: &dyn Step,
        position: usize,
        steps: &[Box<dyn Step>],
    ) -> Option<String> {
        if step.group() == Group::Infra && self.skip_infra {
            return Some("--skip-infra".into());
        }
        if step.group() == Group::Database && self.skip_db {
            return Some("--skip-db".into());
        }
        if step.id() == "preflight" {
            return None;
        }
        if !self.only.is_empty() && !self.only.iter().any(|id| id == step.id()) {
            return Some("not in --only".into());
        }
        if let Some(from) = &self.from {
            let start = steps.iter().position(|s| s.id() == from).unwrap_or(0);
            if position < start {
                return Some(format!("before --from {from}"));
            }
        }
        None
    }
}

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
) -> Result<Vec<(Decision, String)>, PipelineError> {
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
) -> Result<(Decision, String), PipelineError> {
    let step = steps[position].as_ref();
    let fingerprint = fingerprint(context, step, fingerprints)
        .map_err(|error| PipelineError::step(step, error, context))?;
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

/// One action of a plan.
#[derive(Debug, Serialize)]
pub struct PlannedAction {
    pub kind: ActionKind,
    pub detail: String,
}

/// What an install would do.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub profile: String,
    pub domain: String,
    pub steps: Vec<PlannedStep>,
}

/// Looks at every step that is to do, changing nothing.
pub fn plan(
    context: &Context,
    steps: &[Box<dyn Step>],
    selection: &Selection,
) -> Result<Plan, PipelineError> {
    let decisions = decide(context, steps, selection)?;
    let mut planned = Vec::new();
    for (step, (decision, _)) in steps.iter().zip(decisions) {
        let (actions, note) = match &decision {
            Decision::ToDo(_) => match step.look(context) {
                Ok(actions) => (actions, None),
                Err(error) if error.is_input() || step.id() == "preflight" => {
                    return Err(PipelineError::step(step.as_ref(), error, context));
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
            actions: actions
                .into_iter()
                .map(|action| PlannedAction {
                    kind: action.kind,
                    detail: crate::secret::redact(&action.detail),
                })
                .collect(),
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

/// How one step of a run ended.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub id: &'static str,
    pub result: StepResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub seconds: f64,
}

/// Runs every selected step that is to do.
pub fn run(
    context: &mut Context,
    steps: &[Box<dyn Step>],
    selection: &Selection,
) -> Result<Vec<Outcome>, PipelineError> {
    let total = steps.len();
    let mut outcomes = Vec::new();
    let mut fingerprints = BTreeMap::new();
    let mut skips_shown = Vec::new();
    for (position, step) in steps.iter().enumerate() {
        let (decision, fingerprint) =
            decide_step(context, steps, position, selection, &mut fingerprints)?;
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(PipelineError::Interrupted {
                step: step.id().into(),
                log: context.log_path.clone(),
            });
        }
        if let Decision::Skipped(reason) = decision {
            show_skipped(context, steps, selection, &reason, &mut skips_shown);
            outcomes.push(Outcome {
                id: step.id(),
                result: StepResult::Skipped,
                reason: Some(reason),
                seconds: 0.0,
            });
            continue;
        }
        let done_before = context
            .state
            .steps
            .get(step.id())
            .is_some_and(|checkpoint| checkpoint.status == Status::Done);
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
                    run_step(context, step.as_ref(), &fingerprint)
                        .map(|result| (result, Some("drifted".into())))
                }
            },
            Decision::ToDo(reason) => {
                run_step(context, step.as_ref(), &fingerprint).map(|result| (result, Some(reason)))
            }
            Decision::Skipped(_) => unreachable!("skipped steps are shown above"),
        };
        let (result, reason) = match attempt {
            Ok(outcome) => outcome,
            Err(error) => {
                let interrupted = matches!(error, PipelineError::Interrupted { .. });
                let shown = if interrupted { "interrupted" } else { "failed" };
                line.finish(&context.ui, Mark::Failed, shown);
                return Err(explain_failure(
                    context,
                    steps,
                    step.as_ref(),
                    selection,
                    error,
                ));
            }
        };
        let shown = result_text(result, done_before, step.always_runs());
        let elapsed = line.finish(&context.ui, Mark::Success, shown);
        outcomes.push(Outcome {
            id: step.id(),
            result,
            reason,
            seconds: round(elapsed),
        });
    }
    Ok(outcomes)
}

/// The words a finished step's line ends with (README, "What a run prints").
fn result_text(result: StepResult, done_before: bool, always_runs: bool) -> &'static str {
    match result {
        StepResult::Changed if done_before => "updated",
        StepResult::Changed => "done",
        StepResult::Unchanged if always_runs => "ok",
        StepResult::Unchanged => "already in place",
        StepResult::AlreadyDone => "already done",
        StepResult::Skipped => "skipped",
    }
}

/// Shows the steps skipped for `reason`, all on one line, the first time
/// that reason comes up.
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
    error: PipelineError,
) -> PipelineError {
    let PipelineError::StepFailed { error: cause, .. } = &error else {
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
    PipelineError::MissingPrerequisite {
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
) -> Result<StepResult, PipelineError> {
    let attempt = |context: &mut Context| -> Result<bool, StepError> {
        let actions = step.look(context)?;
        let changed = if actions.iter().any(|a| a.changes_host()) {
            step.apply(context, actions)?
        } else {
            false
        };
        step.verify(context)?;
        Ok(changed)
    };
    match attempt(context) {
        Ok(changed) => {
            context.state.record(step.id(), Status::Done, fingerprint);
            context.state_file().save(&context.state)?;
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
                context.state.record(step.id(), status, fingerprint);
                context.state_file().save(&context.state)?;
            }
            Err(PipelineError::step(step, error, context))
        }
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("unknown step `{name}`; the steps are: {known}")]
    UnknownStep { name: String, known: String },
    #[error("step `{step}` ({title}) failed")]
    StepFailed {
        step: String,
        title: String,
        #[source]
        error: Box<StepError>,
        log: Option<PathBuf>,
    },
    #[error("step `{step}` was interrupted")]
    Interrupted { step: String, log: Option<PathBuf> },
    #[error("step `{step}` needs {} to have run first, and {} no checkpoint on this host", quoted(missing), if missing.len() == 1 { "it has" } else { "they have" })]
    MissingPrerequisite {
        step: String,
        missing: Vec<String>,
        log: Option<PathBuf>,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// `a`, `b` and `c`, each in backticks.
fn quoted(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

impl PipelineError {
    /// What the operator can do when `step` misses the steps `missing`.
    pub fn prerequisite_hint(step: &str, missing: &[String]) -> String {
        format!(
            "run the install without --only and --from (steps already done are only checked), or with `--only {},{step}`",
            missing.join(",")
        )
    }

    fn step(step: &dyn Step, error: StepError, context: &Context) -> Self {
        if error.is_interrupted() {
            return Self::Interrupted {
                step: step.id().into(),
                log: context.log_path.clone(),
            };
        }
        Self::StepFailed {
            step: step.id().into(),
            title: step.title().into(),
            error: Box::new(error),
            log: context.log_path.clone(),
        }
    }
}

/// One step an uninstall visits: its removal actions, and whether its
/// checkpoint goes too (its work is inside the scope).
#[derive(Debug)]
pub struct UndoStep {
    pub position: usize,
    pub id: &'static str,
    pub title: &'static str,
    /// Whether the scope takes the step's work, and its checkpoint, away.
    pub removed: bool,
    pub actions: Vec<crate::steps::Action>,
    /// Why the step could not look at what to remove (an API that is
    /// down, a server that does not answer): the step's failure, reported
    /// with the others; its checkpoint stays.
    pub look_failed: Option<String>,
}

/// What is kept on purpose, and which switch would remove it.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub id: &'static str,
    pub what: String,
}

/// What an uninstall would remove and keep.
#[derive(Debug)]
pub struct UndoPlan {
    pub steps: Vec<UndoStep>,
    pub kept: Vec<Kept>,
}

impl UndoPlan {
    /// Whether the uninstall would change nothing at all.
    pub fn is_empty(&self) -> bool {
        self.steps.iter().all(|step| {
            !step.removed
                && step.look_failed.is_none()
                && step.actions.iter().all(|a| !a.changes_host())
        })
    }

    /// The plan as JSON: per step, the removals; then what is kept.
    pub fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|step| {
                let actions: Vec<PlannedAction> = step
                    .actions
                    .iter()
                    .filter(|action| action.changes_host())
                    .map(|action| PlannedAction {
                        kind: action.kind,
                        detail: crate::secret::redact(&action.detail),
                    })
                    .collect();
                serde_json::json!({
                    "id": step.id,
                    "title": step.title,
                    "checkpoint_removed": step.removed,
                    "actions": actions,
                    "look_failed": step.look_failed,
                })
            })
            .collect();
        serde_json::json!({ "steps": steps, "kept": self.kept })
    }
}

/// Looks, read-only, at what uninstalling with `context.uninstall` would
/// remove: the steps with a checkpoint, in reverse install order. A step
/// that cannot look is planned as failed and the others go on; only an
/// interruption stops the plan.
pub fn plan_undo(context: &Context, steps: &[Box<dyn Step>]) -> Result<UndoPlan, PipelineError> {
    let scope = context.uninstall.unwrap_or_default();
    let mut plan = UndoPlan {
        steps: Vec::new(),
        kept: Vec::new(),
    };
    for (position, step) in steps.iter().enumerate().rev() {
        if !context.state.steps.contains_key(step.id()) {
            continue;
        }
        let removal = step.removal();
        let removed = scope.covers(removal);
        let looked = match removed {
            true => step.undo(context),
            false => step.undo_kept(context),
        };
        let (actions, look_failed) = match looked {
            Ok(actions) => (actions, None),
            Err(error) if error.is_interrupted() => {
                return Err(PipelineError::step(step.as_ref(), error, context));
            }
            Err(error) => {
                let mut text = crate::secret::redact(&error.to_string());
                if let Some(hint) = error.hint() {
                    text.push_str(&format!("\nhint: {hint}"));
                }
                (Vec::new(), Some(text))
            }
        };
        let (notes, actions): (Vec<_>, Vec<_>) = actions
            .into_iter()
            .partition(|action| !action.changes_host());
        plan.kept.extend(notes.into_iter().map(|note| Kept {
            id: step.id(),
            what: note.detail,
        }));
        if !removed && removal != crate::context::Removal::Never {
            plan.kept.push(Kept {
                id: step.id(),
                what: format!("{} (`{}` removes it)", step.title(), removal.flag()),
            });
        }
        if removed || !actions.is_empty() || look_failed.is_some() {
            plan.steps.push(UndoStep {
                position,
                id: step.id(),
                title: step.title(),
                removed,
                actions,
                look_failed,
            });
        }
    }
    plan.kept.reverse();
    Ok(plan)
}

/// What an uninstall did.
#[derive(Debug, Default, Serialize)]
pub struct UndoReport {
    pub removed: Vec<Removed>,
    pub failed: Vec<FailedRemoval>,
    pub kept: Vec<Kept>,
    /// Steps whose checkpoints were removed: a later install redoes them.
    pub forgotten: Vec<&'static str>,
}

/// One removal that worked.
#[derive(Debug, Serialize)]
pub struct Removed {
    pub step: &'static str,
    pub detail: String,
}

/// One removal that failed: the action and the error (command, status and
/// the tail of its stderr).
#[derive(Debug, Serialize)]
pub struct FailedRemoval {
    pub step: &'static str,
    pub detail: String,
    pub error: String,
}

/// Carries out `plan`. A failed removal does not stop the others; a step
/// loses its checkpoint (saved at once) when all its removals worked, so
/// that a re-run picks up exactly what is left. Stops only when
/// interrupted.
pub fn undo(
    context: &mut Context,
    steps: &[Box<dyn Step>],
    plan: UndoPlan,
) -> Result<UndoReport, PipelineError> {
    let mut report = UndoReport {
        kept: plan.kept,
        ..UndoReport::default()
    };
    let total = plan.steps.len();
    for (index, planned) in plan.steps.into_iter().enumerate() {
        let step = steps[planned.position].as_ref();
        let line = context
            .ui
            .start_step(index + 1, total, step.id(), step.title());
        let mut failures = 0;
        if let Some(error) = planned.look_failed {
            failures += 1;
            tracing::warn!("uninstall {}: could not look: {error}", step.id());
            report.failed.push(FailedRemoval {
                step: step.id(),
                detail: "look at what to remove".into(),
                error,
            });
        }
        for action in &planned.actions {
            if INTERRUPTED.load(Ordering::SeqCst) {
                line.finish(&context.ui, Mark::Failed, "interrupted");
                return Err(PipelineError::Interrupted {
                    step: step.id().into(),
                    log: context.log_path.clone(),
                });
            }
            let detail = crate::secret::redact(&action.detail);
            tracing::info!("uninstall {}: {detail}", step.id());
            match step.apply_undo(context, action) {
                Ok(_) => report.removed.push(Removed {
                    step: step.id(),
                    detail,
                }),
                Err(error) if error.is_interrupted() => {
                    line.finish(&context.ui, Mark::Failed, "interrupted");
                    return Err(PipelineError::step(step, error, context));
                }
                Err(error) => {
                    failures += 1;
                    let error = crate::secret::redact(&error.to_string());
                    tracing::warn!("uninstall {}: `{detail}` failed: {error}", step.id());
                    report.failed.push(FailedRemoval {
                        step: step.id(),
                        detail,
                        error,
                    });
                }
            }
        }
        let (mark, shown) = match (failures, planned.removed) {
            (0, true) => {
                context.state.steps.remove(step.id());
                context.state_file().save(&context.state)?;
                context
                    .forget_created(step.id())
                    .map_err(|error| PipelineError::step(step, error, context))?;
                report.forgotten.push(step.id());
                (Mark::Success, "removed")
            }
            (0, false) => (Mark::Success, "done"),
            _ => (Mark::Failed, "failed"),
        };
        line.finish(&context.ui, mark, shown);
    }
    Ok(report)
}
