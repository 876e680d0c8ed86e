//! The engine: decides what each step is to do (checkpoints,
//! fingerprints, `--only`/`--from`/`--redo`, the skip switches) and runs
//! it. [`install`] runs the steps forward (plan, run, checkpoints after
//! verification, failures that say how to resume); [`uninstall`] walks the
//! installed ones back through their undo.

pub mod graph;
pub mod install;
pub mod uninstall;

use std::path::PathBuf;

use serde::Serialize;

use crate::context::Context;
use crate::state::StateError;
use crate::steps::{ActionKind, Group, Role, StepError, StepId};

/// Which steps the operator asked for, by id: parsed once from the flags.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub only: Vec<StepId>,
    pub from: Option<StepId>,
    pub redo: Vec<StepId>,
    pub skip_infra: bool,
    pub skip_db: bool,
    /// A run of K3s alone, for this reason of the others': a joined
    /// node's (`stackinstall join`: the node profile, K3s as agent or
    /// server with the credential provider and the NFS client; `join`
    /// checks its own inputs before it), or `ha enable`'s.
    pub k3s_alone: Option<&'static str>,
}

impl Selection {
    /// The selection the flags name; fails on a name that is no step.
    pub fn parse(
        only: &[String],
        from: Option<&str>,
        redo: &[String],
        skip_infra: bool,
        skip_db: bool,
    ) -> Result<Self, EngineError> {
        let ids = |names: &[String]| -> Result<Vec<StepId>, EngineError> {
            names.iter().map(|name| step_named(name)).collect()
        };
        Ok(Self {
            only: ids(only)?,
            from: from.map(step_named).transpose()?,
            redo: ids(redo)?,
            skip_infra,
            skip_db,
            k3s_alone: None,
        })
    }

    /// The node profile of `stackinstall join`.
    pub fn node() -> Self {
        Self {
            k3s_alone: Some("not on a joined node"),
            ..Self::default()
        }
    }

    /// The run of `stackinstall ha enable`: K3s alone.
    pub fn ha() -> Self {
        Self {
            k3s_alone: Some("not part of `ha enable`"),
            ..Self::default()
        }
    }

    /// Why each step is left out (`None`: it is part of the run), in
    /// install order: the selection resolved once.
    pub fn resolve(&self) -> Inclusion {
        let mut reasons: [Option<String>; StepId::ALL.len()] = Default::default();
        // The steps that serve others come before those they serve: from
        // the end, each one's dependents are decided before it.
        for id in StepId::ALL.into_iter().rev() {
            reasons[id.position()] = self.own_reason(id, &reasons);
        }
        Inclusion {
            reasons,
            selection: self.clone(),
        }
    }

    /// The selection resolved, once every step it names is checked to be
    /// part of the run: a named step that the run would leave out (`--only
    /// packages` alone, `--redo k3s --skip-infra`) is refused with the
    /// reason, never accepted to run nothing.
    pub fn resolve_checked(&self) -> Result<Inclusion, EngineError> {
        let inclusion = self.resolve();
        // Of --only's steps, those a skip switch leaves out may go (the
        // run says so) while others run; not all of them, nor a step that
        // serves others and would have none to serve.
        let left_out = |id: &StepId| !inclusion.includes(*id);
        let only_runs_some = !self.only.iter().all(left_out);
        let only = (self.only.iter())
            .filter(|id| !only_runs_some || id.info().role == crate::steps::Role::ServesDependents)
            .map(|id| ("--only", *id));
        let named = only
            .chain(self.from.map(|id| ("--from", id)))
            .chain(self.redo.iter().map(|id| ("--redo", *id)));
        for (flag, step) in named {
            if let Some(reason) = inclusion.skip_reason(step) {
                return Err(EngineError::LeftOut {
                    flag,
                    step,
                    reason: reason.to_string(),
                });
            }
        }
        Ok(inclusion)
    }

    fn own_reason(&self, id: StepId, decided: &[Option<String>]) -> Option<String> {
        let info = id.info();
        if let Some(reason) = self.k3s_alone {
            return (id != StepId::K3s).then(|| reason.into());
        }
        if info.group == Group::Infra && self.skip_infra {
            return Some("--skip-infra".into());
        }
        if info.group == Group::Database && self.skip_db {
            return Some("--skip-db".into());
        }
        match info.role {
            Role::ChecksInputs => return None,
            Role::ServesDependents => return served_reason(id, decided),
            Role::Ordinary | Role::EveryRun => {}
        }
        if !self.only.is_empty() && !self.only.contains(&id) {
            return Some("not in --only".into());
        }
        match self.from {
            Some(from) if id < from => Some(format!("before --from {from}")),
            _ => None,
        }
    }
}

/// Why a step that serves the steps needing it is left out: the reason of
/// the first of them when none of them is part of the run.
fn served_reason(id: StepId, decided: &[Option<String>]) -> Option<String> {
    let mut reasons = graph::dependents(id).map(|served| decided[served.position()].clone());
    let first = reasons.next()??;
    reasons.all(|reason| reason.is_some()).then_some(first)
}

fn step_named(name: &str) -> Result<StepId, EngineError> {
    StepId::parse(name).ok_or_else(|| EngineError::UnknownStep {
        name: name.to_string(),
        known: StepId::ALL.map(StepId::name).join(", "),
    })
}

/// The selection resolved: per step, why it is left out of the run.
#[derive(Debug, Clone)]
pub struct Inclusion {
    reasons: [Option<String>; StepId::ALL.len()],
    /// What was asked for.
    pub selection: Selection,
}

impl Inclusion {
    /// Why `id` is left out; `None` when it is part of the run.
    pub fn skip_reason(&self, id: StepId) -> Option<&str> {
        self.reasons[id.position()].as_deref()
    }

    /// Whether `id` is part of the run.
    pub fn includes(&self, id: StepId) -> bool {
        self.skip_reason(id).is_none()
    }

    /// The steps that are part of the run, in install order.
    pub fn included(&self) -> Vec<StepId> {
        (StepId::ALL.into_iter())
            .filter(|id| self.includes(*id))
            .collect()
    }

    /// The steps left out for `reason`, in install order.
    pub fn skipped_for(&self, reason: &str) -> Vec<StepId> {
        (StepId::ALL.into_iter())
            .filter(|id| self.skip_reason(*id) == Some(reason))
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
    #[error("step `{step}` ({}) failed", step.info().title)]
    StepFailed {
        step: StepId,
        #[source]
        error: Box<StepError>,
        log: Option<PathBuf>,
    },
    #[error("step `{step}` was interrupted")]
    Interrupted { step: StepId, log: Option<PathBuf> },
    #[error("step `{step}` needs {} to have run first, and {} no checkpoint on this host", quoted(missing), if missing.len() == 1 { "it has" } else { "they have" })]
    MissingPrerequisite {
        step: StepId,
        missing: Vec<StepId>,
        log: Option<PathBuf>,
    },
    #[error("the plan is shown, but step `{step}` ({}) would stop the install", step.info().title)]
    PlanStops {
        step: StepId,
        #[source]
        error: Box<StepError>,
    },
    #[error("{}", left_out_message(flag, *step, reason))]
    LeftOut {
        flag: &'static str,
        step: StepId,
        reason: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why `flag step` names a step the run leaves out for `reason`.
fn left_out_message(flag: &str, step: StepId, reason: &str) -> String {
    match step.info().role {
        crate::steps::Role::ServesDependents => format!(
            "`{flag} {step}` would run nothing: `{step}` works for the steps that need it ({}), and none of them is part of this run ({reason})",
            quoted(&graph::dependents(step).collect::<Vec<_>>())
        ),
        _ => format!("`{flag} {step}` names a step this run leaves out ({reason})"),
    }
}

/// `a`, `b` and `c`, each in backticks.
pub(crate) fn quoted(ids: &[StepId]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

impl EngineError {
    /// What the operator can try next: the step's own hint, the log, how
    /// to resume.
    pub fn hints(&self) -> Vec<String> {
        self.hints_resuming(None)
    }

    /// The hints, the way to resume being `command_line` when the inputs
    /// were answered on a terminal (else "the same command").
    pub fn hints_resuming(&self, command_line: Option<&str>) -> Vec<String> {
        let again = match command_line {
            Some(line) => format!("run `{line}`"),
            None => "run the same command again".to_string(),
        };
        let log_hint = |log: &Option<PathBuf>, note: &str| {
            log.as_ref()
                .map(|log| format!("the full log is `{}`{note}", log.display()))
        };
        let mut hints = Vec::new();
        match self {
            Self::StepFailed { step, error, log } => {
                hints.extend(error.hint());
                hints.extend(log_hint(log, ""));
                if error.is_resumable() {
                    hints.push(format!(
                        "{again} to resume at `{step}`: finished steps are skipped"
                    ));
                }
            }
            Self::Interrupted { step, log } => {
                hints.extend(log_hint(log, ""));
                hints.push(format!("{again} to resume at `{step}`"));
            }
            Self::MissingPrerequisite { step, missing, log } => {
                hints.push(Self::prerequisite_hint(*step, missing));
                hints.extend(log_hint(log, " (with the error the step ran into)"));
            }
            Self::State(error) => hints.extend(error.hint()),
            Self::LeftOut { step, reason, .. } => hints.push(Self::left_out_hint(*step, reason)),
            Self::PlanStops { error, .. } => hints.extend(error.hint()),
            Self::UnknownStep { .. } => {}
        }
        hints
    }

    /// How the process exits (see [`crate::error::exit`]).
    pub fn exit_code(&self) -> u8 {
        use crate::error::exit;
        use crate::host::lock::LockError;
        match self {
            Self::UnknownStep { .. } | Self::MissingPrerequisite { .. } | Self::LeftOut { .. } => {
                exit::USAGE
            }
            Self::Interrupted { .. } => exit::INTERRUPTED,
            Self::StepFailed { error, .. } | Self::PlanStops { error, .. } if error.is_input() => {
                exit::USAGE
            }
            Self::State(StateError::Lock(LockError::Held { .. })) => exit::LOCKED,
            _ => exit::FAILED,
        }
    }

    /// What the operator can do when the run leaves `step` out.
    fn left_out_hint(step: StepId, reason: &str) -> String {
        if step.info().role == crate::steps::Role::ServesDependents {
            let first = graph::dependents(step).next().map_or("", StepId::name);
            return format!(
                "name a step it works for: `--only {step},{first}` (or `--only {first}`, which runs `{step}` for it)"
            );
        }
        match reason {
            "--skip-infra" | "--skip-db" => {
                format!("drop {reason}, or leave `{step}` out of --only, --from and --redo")
            }
            _ => format!("add `{step}` to --only, or start --from at it or before it"),
        }
    }

    /// What the operator can do when `step` misses the steps `missing`.
    pub fn prerequisite_hint(step: StepId, missing: &[StepId]) -> String {
        format!(
            "run the install without --only and --from (steps already done are only checked), or with `--only {},{step}`",
            missing
                .iter()
                .map(|id| id.name())
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    pub(crate) fn step(step: StepId, error: StepError, context: &Context) -> Self {
        if error.is_interrupted() {
            return Self::Interrupted {
                step,
                log: context.log_path.clone(),
            };
        }
        Self::StepFailed {
            step,
            error: Box::new(error),
            log: context.log_path.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_macros)]
mod tests {
    use super::*;

    /// `packages` is part of a run exactly when a step it installs for is.
    #[test]
    fn a_step_that_serves_others_goes_with_them() {
        let reason = |selection: Selection| {
            (selection.resolve().skip_reason(StepId::Packages)).map(str::to_string)
        };
        let only = |ids: &[StepId]| Selection {
            only: ids.to_vec(),
            ..Selection::default()
        };
        let from = |id: StepId| Selection {
            from: Some(id),
            ..Selection::default()
        };
        assert_eq!(reason(Selection::default()), None);
        assert_eq!(reason(only(&[StepId::Mysql])), None);
        assert_eq!(reason(only(&[StepId::Nfs, StepId::Tls])), None);
        assert_eq!(reason(only(&[StepId::K3s])), Some("not in --only".into()));
        assert_eq!(reason(from(StepId::Rabbitmq)), None);
        assert_eq!(
            reason(from(StepId::Storage)),
            Some("before --from storage".into())
        );
        let skip_db = Selection {
            skip_db: true,
            ..Selection::default()
        };
        assert_eq!(reason(skip_db), Some("--skip-db".into()));
        println!("packages: 7 selections, included exactly with a step it serves");
    }

    #[test]
    fn names_that_are_no_step_are_refused() {
        let error =
            Selection::parse(&["k3s".into(), "mysq".into()], None, &[], false, false).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unknown step `mysq`; the steps are: preflight, credentials, k3s")
        );
        let selection =
            Selection::parse(&[], Some("tls"), &["mysql".into()], false, false).unwrap();
        assert_eq!(
            (selection.from, selection.redo),
            (Some(StepId::Tls), vec![StepId::Mysql])
        );
    }
}
