//! The uninstall engine: the installed steps (those with a checkpoint) in
//! reverse order, each through its undo within the scope asked for. A
//! failed removal does not stop the others; a step loses its checkpoint
//! once all its removals worked.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{EngineError, PlannedAction};
use crate::context::Context;
use crate::host::command::INTERRUPTED;
use crate::steps::Step;
use crate::ui::Ending;

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
                    .flat_map(PlannedAction::of)
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
pub fn plan_undo(context: &Context, steps: &[Box<dyn Step>]) -> Result<UndoPlan, EngineError> {
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
                return Err(EngineError::step(step.as_ref(), error, context));
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
            what: note.detail(),
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
    /// What the removed steps' undo left on the host (their `leftovers`).
    #[serde(skip)]
    pub leftovers: Vec<String>,
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
) -> Result<UndoReport, EngineError> {
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
        for action in planned.actions {
            if INTERRUPTED.load(Ordering::SeqCst) {
                line.finish(&context.ui, Ending::Interrupted);
                return Err(EngineError::Interrupted {
                    step: step.id().into(),
                    log: context.log_path.clone(),
                });
            }
            let detail = crate::secret::redact(&action.detail());
            tracing::info!("uninstall {}: {detail}", step.id());
            match action.perform(context) {
                Ok(_) => report.removed.push(Removed {
                    step: step.id(),
                    detail,
                }),
                Err(error) if error.is_interrupted() => {
                    line.finish(&context.ui, Ending::Interrupted);
                    return Err(EngineError::step(step, error, context));
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
        let ending = match (failures, planned.removed) {
            (0, true) => {
                context.change_state(|state| {
                    state.steps.remove(step.id());
                })?;
                context
                    .forget_created(step.id())
                    .map_err(|error| EngineError::step(step, error, context))?;
                report.forgotten.push(step.id());
                report.leftovers.extend(step.leftovers(context));
                Ending::Removed
            }
            (0, false) => Ending::Done,
            _ => Ending::Failed,
        };
        line.finish(&context.ui, ending);
    }
    Ok(report)
}
