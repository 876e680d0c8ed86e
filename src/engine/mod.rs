//! The engine: decides what each step is to do (checkpoints,
//! fingerprints, `--only`/`--from`/`--redo`, the skip switches) and runs
//! it. [`install`] runs the steps forward (plan, run, checkpoints after
//! verification, failures that say how to resume); [`uninstall`] walks the
//! installed ones back through their undo.

pub mod install;
pub mod uninstall;

use std::path::PathBuf;

use serde::Serialize;

use crate::context::Context;
use crate::state::StateError;
use crate::steps::{ActionKind, Group, Step, StepError};

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
    pub fn check(&self, steps: &[Box<dyn Step>]) -> Result<(), EngineError> {
        let known: Vec<&str> = steps.iter().map(|s| s.id()).collect();
        let named = self.only.iter().chain(&self.redo).chain(&self.from);
        match named
            .into_iter()
            .find(|name| !known.contains(&name.as_str()))
        {
            Some(name) => Err(EngineError::UnknownStep {
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
        if step.checks_inputs() {
            return None;
        }
        if step.serves_dependents() {
            return self.served_reason(step, steps);
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

impl Selection {
    /// Why a step that serves the steps needing it is left out: the reason
    /// of the first of them when none of them is part of the run.
    fn served_reason(&self, step: &dyn Step, steps: &[Box<dyn Step>]) -> Option<String> {
        let mut reasons = (steps.iter().enumerate())
            .filter(|(_, served)| served.needs().contains(&step.id()))
            .map(|(position, served)| self.skip_reason(served.as_ref(), position, steps));
        let first = reasons.next()?;
        match first.is_some() && reasons.all(|reason| reason.is_some()) {
            true => first,
            false => None,
        }
    }

    /// The ids of the steps that are part of the run (not left out).
    pub fn included(&self, steps: &[Box<dyn Step>]) -> Vec<String> {
        (steps.iter().enumerate())
            .filter(|(position, step)| self.skip_reason(step.as_ref(), *position, steps).is_none())
            .map(|(_, step)| step.id().to_string())
            .collect()
    }
}

/// One line of a plan: what an action shows (an action may show several).
#[derive(Debug, Serialize)]
pub struct PlannedAction {
    pub kind: ActionKind,
    pub detail: String,
}

impl PlannedAction {
    /// The lines `action` shows, redacted.
    pub fn of(action: &crate::steps::Action) -> impl Iterator<Item = PlannedAction> + '_ {
        action.lines().iter().map(|line| PlannedAction {
            kind: action.kind(),
            detail: crate::secret::redact(line),
        })
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
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
pub(crate) fn quoted(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

impl EngineError {
    /// What the operator can do when `step` misses the steps `missing`.
    pub fn prerequisite_hint(step: &str, missing: &[String]) -> String {
        format!(
            "run the install without --only and --from (steps already done are only checked), or with `--only {},{step}`",
            missing.join(",")
        )
    }

    pub(crate) fn step(step: &dyn Step, error: StepError, context: &Context) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `packages` is part of a run exactly when a step it installs for is.
    #[test]
    fn a_step_that_serves_others_goes_with_them() {
        let steps = crate::steps::all();
        let packages = steps.iter().position(|s| s.id() == "packages").unwrap();
        let reason = |selection: Selection| {
            selection.skip_reason(steps[packages].as_ref(), packages, &steps)
        };
        let only = |ids: &[&str]| Selection {
            only: ids.iter().map(|id| id.to_string()).collect(),
            ..Selection::default()
        };
        let from = |id: &str| Selection {
            from: Some(id.into()),
            ..Selection::default()
        };
        assert_eq!(reason(Selection::default()), None);
        assert_eq!(reason(only(&["mysql"])), None);
        assert_eq!(reason(only(&["nfs", "tls"])), None);
        assert_eq!(reason(only(&["k3s"])), Some("not in --only".into()));
        assert_eq!(reason(from("rabbitmq")), None);
        assert_eq!(
            reason(from("storage")),
            Some("before --from storage".into())
        );
        let skip_db = Selection {
            skip_db: true,
            ..Selection::default()
        };
        assert_eq!(reason(skip_db), Some("--skip-db".into()));
        println!("packages: 7 selections, included exactly with a step it serves");
    }
}
