//! The uninstall engine: the installed steps (those with a checkpoint) in
//! reverse order, each through its undo within the scope asked for. A
//! failed removal does not stop the others; a step loses its checkpoint
//! once all its removals worked.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{EngineError, PlannedAction};
use crate::action::ActionKind;
use crate::context::Context;
use crate::host::command::INTERRUPTED;
use crate::step_id::StepId;
use crate::ui::Ending;

/// One step an uninstall visits: its removal actions, and whether its
/// checkpoint goes too (its work is inside the scope).
#[derive(Debug)]
pub struct UndoStep {
    pub id: StepId,
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
    pub id: StepId,
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
                    .flat_map(PlannedAction::of)
                    .collect();
                serde_json::json!({
                    "id": step.id,
                    "title": step.id.info().title,
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
pub fn plan_undo(context: &Context) -> Result<UndoPlan, EngineError> {
    let scope = context.uninstall.unwrap_or_default();
    let mut plan = UndoPlan {
        steps: Vec::new(),
        kept: Vec::new(),
    };
    for id in StepId::ALL.into_iter().rev() {
        if !context.state.steps.contains_key(&id) {
            continue;
        }
        let info = id.info();
        let removed = scope.covers(info.removal);
        let looked = match (removed, info.undo_kept) {
            (true, _) => id.step().undo(context),
            (false, Some(undo_kept)) => undo_kept(context),
            (false, None) => Ok(Vec::new()),
        };
        let (actions, look_failed) = match looked {
            Ok(actions) => (actions, None),
            Err(error) if error.is_interrupted() => {
                return Err(EngineError::step(id, error, context));
            }
            Err(error) => {
                let mut text = crate::secret::redact(&error.to_string());
                if let Some(hint) = error.hint() {
                    text.push_str(&format!("\nhint: {hint}"));
                }
                (Vec::new(), Some(text))
            }
        };
        let (notes, actions): (Vec<_>, Vec<_>) = (actions.into_iter())
            .filter(|action| !action.removes_nothing())
            .partition(|action| !action.changes_host());
        plan.kept.extend(notes.into_iter().map(|note| Kept {
            id,
            what: note.detail(),
        }));
        if !removed && info.removal != crate::context::Removal::Never {
            plan.kept.push(Kept {
                id,
                what: format!("{} (`{}` removes it)", info.title, info.removal.flag()),
            });
        }
        if removed || !actions.is_empty() || look_failed.is_some() {
            plan.steps.push(UndoStep {
                id,
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
    pub forgotten: Vec<StepId>,
    /// What the removed steps' undo left on the host (their `leftovers`).
    #[serde(skip)]
    pub leftovers: Vec<String>,
}

/// One removal that worked.
#[derive(Debug, Serialize)]
pub struct Removed {
    pub step: StepId,
    pub detail: String,
}

/// One removal that failed: the action and the error (command, status and
/// the tail of its stderr).
#[derive(Debug, Serialize)]
pub struct FailedRemoval {
    pub step: StepId,
    pub detail: String,
    pub error: String,
}

/// Carries out `plan`. A failed removal does not stop the others; a step
/// loses its checkpoint (saved at once) when all its removals worked, so
/// that a re-run picks up exactly what is left. Stops only when
/// interrupted.
pub fn undo(context: &mut Context, plan: UndoPlan) -> Result<UndoReport, EngineError> {
    let mut report = UndoReport {
        kept: plan.kept,
        ..UndoReport::default()
    };
    let total = plan.steps.len();
    for (index, planned) in plan.steps.into_iter().enumerate() {
        let id = planned.id;
        let line = (context.ui).start_step(index + 1, total, id.name(), id.info().title);
        let mut failures = 0;
        let runs_program = (planned.actions.iter()).any(|a| a.kind() == ActionKind::Command);
        if let Some(error) = planned.look_failed {
            failures += 1;
            tracing::warn!("uninstall {id}: could not look: {error}");
            report.failed.push(FailedRemoval {
                step: id,
                detail: "look at what to remove".into(),
                error,
            });
        }
        for action in planned.actions {
            if INTERRUPTED.load(Ordering::SeqCst) {
                line.finish(&context.ui, Ending::Interrupted);
                return Err(EngineError::Interrupted {
                    step: id,
                    log: context.log_path.clone(),
                });
            }
            let detail = crate::secret::redact(&action.detail());
            tracing::info!("uninstall {id}: {detail}");
            match action.perform(context) {
                Ok(_) => report.removed.push(Removed { step: id, detail }),
                Err(error) if error.is_interrupted() => {
                    line.finish(&context.ui, Ending::Interrupted);
                    return Err(EngineError::step(id, error, context));
                }
                Err(error) => {
                    failures += 1;
                    let error = crate::secret::redact(&error.to_string());
                    tracing::warn!("uninstall {id}: `{detail}` failed: {error}");
                    report.failed.push(FailedRemoval {
                        step: id,
                        detail,
                        error,
                    });
                }
            }
        }
        let ending = match (failures, planned.removed) {
            (0, true) => {
                context.change_state(|state| {
                    state.steps.remove(&id);
                })?;
                context
                    .forget_created(id)
                    .map_err(|error| EngineError::step(id, error, context))?;
                report.forgotten.push(id);
                if let Some(leftovers) = id.info().leftovers.filter(|_| runs_program) {
                    report.leftovers.extend(leftovers(context));
                }
                Ending::Removed
            }
            (0, false) => Ending::Done,
            _ => Ending::Failed,
        };
        line.finish(&context.ui, ending);
    }
    Ok(report)
}
