//! `stackinstall uninstall`: the installed steps in reverse, each through
//! its undo, within the scope the switches ask for. Prints what will go
//! before anything does, asks on a terminal (refuses without one unless
//! `--yes`), and ends with what was removed, what failed and what was kept.

use std::io::IsTerminal;
use std::path::Path;

use super::Result;

use crate::cli::{Output, UninstallArgs};
use crate::config::Flags;
use crate::context::{Context, Scope};
use crate::engine::uninstall::{self as engine, UndoPlan, UndoReport};
use crate::host::{self};
use crate::steps::{StepError, StepId};

/// Runs `uninstall`.
pub fn run(root: &Path, args: UninstallArgs) -> Result<()> {
    let json = args.output == Output::Json;
    let mut context =
        super::command_context(root, &args.config, Flags::default(), json, args.plan)?;
    context.uninstall = Some(scope(&args));
    if args.plan {
        let plan = engine::plan_undo(&context)?;
        print_plan(&plan, &context, json);
        return Ok(());
    }
    let _lock = context.state_file().lock()?;
    context.reload_state()?;
    let plan = engine::plan_undo(&context)?;
    if plan.is_empty() {
        print_nothing(&plan, json);
        return Ok(());
    }
    if !json {
        print_plan(&plan, &context, false);
    }
    confirm(&args)?;
    let _ = context.credentials();
    context.log_path = Some(host::log::start(
        &context.host.path(super::install::LOG_DIR),
        "uninstall",
    )?);
    tracing::info!(
        "stackinstall {} uninstall: scope {}",
        env!("CARGO_PKG_VERSION"),
        describe(&scope(&args))
    );
    let report = engine::undo(&mut context, plan)?;
    print_report(&report, &context, json);
    if report.failed.is_empty() {
        return Ok(());
    }
    Err(StepError::failed(
        format!("{} of the removals failed", report.failed.len()),
        "fix what the errors above say, then run the same `stackinstall uninstall` again: it redoes only what is left",
    )
    .into())
}

fn scope(args: &UninstallArgs) -> Scope {
    if args.all {
        return Scope::all();
    }
    Scope {
        pvc: args.delete_pvc,
        namespace: args.delete_namespace,
        databases: args.delete_db,
        infra: args.delete_infra,
    }
}

fn describe(scope: &Scope) -> String {
    let flags: Vec<&str> = [
        (scope.pvc, "--delete-pvc"),
        (scope.namespace, "--delete-namespace"),
        (scope.databases, "--delete-db"),
        (scope.infra, "--delete-infra"),
    ]
    .into_iter()
    .filter_map(|(set, flag)| set.then_some(flag))
    .collect();
    match flags.is_empty() {
        true => "default (keep data)".into(),
        false => flags.join(" "),
    }
}

/// Asks on a terminal; without one, only `--yes` goes on.
fn confirm(args: &UninstallArgs) -> Result<(), StepError> {
    if args.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(StepError::input(
            "uninstall needs a confirmation, and there is no terminal to ask on: nothing was removed",
            "run it again with --yes (or --force) once the list above is what you want removed",
        ));
    }
    let answer = dialoguer::Confirm::new()
        .with_prompt("Remove all of the above?")
        .default(false)
        .interact()
        .map_err(|error| {
            StepError::input(format!("no answer: {error}"), "run it again, or pass --yes")
        })?;
    match answer {
        true => Ok(()),
        false => Err(StepError::input(
            "not confirmed: nothing was removed",
            "`stackinstall uninstall --plan` shows the list again",
        )),
    }
}

fn print_nothing(plan: &UndoPlan, json: bool) {
    if json {
        crate::outln!(
            "{}",
            serde_json::json!({ "removed": [], "failed": [], "kept": plan.kept })
        );
        return;
    }
    crate::outln!("Nothing to remove: no installed step is within this uninstall's scope.");
    print_kept(plan.kept.iter().map(|kept| (kept.id, kept.what.as_str())));
}

fn print_plan(plan: &UndoPlan, context: &Context, json: bool) {
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&plan.to_json()).expect("plans serialize")
        );
        return;
    }
    let scope = describe(&context.uninstall.unwrap_or_default());
    if plan.is_empty() {
        crate::outln!("Uninstall ({scope}): nothing to remove.");
    } else {
        crate::outln!("Uninstall ({scope}) will remove, in this order:\n");
    }
    for step in plan
        .steps
        .iter()
        .filter(|s| s.look_failed.is_some() || s.actions.iter().any(|a| a.changes_host()))
    {
        let checkpoint = match step.removed {
            true => "checkpoint removed: a later install redoes it",
            false => "checkpoint kept",
        };
        crate::outln!(
            "  {:<12} {:<42} {checkpoint}",
            step.id.name(),
            step.id.info().title
        );
        if let Some(error) = &step.look_failed {
            crate::outln!(
                "      {:<10} could not look at what to remove (reported as failed, the other steps go on): {}",
                "failed",
                error.replace('\n', "\n        ")
            );
        }
        let changes = step.actions.iter().filter(|a| a.changes_host());
        let lines: Vec<_> = changes.flat_map(crate::engine::PlannedAction::of).collect();
        crate::out!(
            "{}",
            crate::ui::action_lines(lines.iter().map(|l| (l.kind.word(), l.detail.as_str())))
        );
    }
    print_kept(plan.kept.iter().map(|kept| (kept.id, kept.what.as_str())));
    crate::outln!();
}

fn print_kept<'a>(kept: impl Iterator<Item = (StepId, &'a str)>) {
    let mut first = true;
    for (id, what) in kept {
        if first {
            crate::outln!("\nKept on purpose:");
            first = false;
        }
        crate::outln!("  {:<12} {what}", id.name());
    }
}

fn print_report(report: &UndoReport, context: &Context, json: bool) {
    let leftovers = &report.leftovers;
    if json {
        let mut value = serde_json::to_value(report).expect("reports serialize");
        value["leftovers"] = serde_json::json!(leftovers);
        value["log"] = serde_json::json!(context.log_path);
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&value).expect("reports serialize")
        );
        return;
    }
    crate::outln!("\nRemoved ({}):", report.removed.len());
    for removed in &report.removed {
        crate::outln!("  {:<12} {}", removed.step.name(), removed.detail);
    }
    if !report.failed.is_empty() {
        crate::outln!("\nFailed ({}):", report.failed.len());
        for failed in &report.failed {
            crate::outln!(
                "  {:<12} {}\n      {}",
                failed.step.name(),
                failed.detail,
                failed.error.replace('\n', "\n      ")
            );
        }
    }
    print_kept(report.kept.iter().map(|kept| (kept.id, kept.what.as_str())));
    if !leftovers.is_empty() {
        crate::outln!("\nLeft behind by K3s (remove by hand or reboot):");
        for leftover in leftovers {
            crate::outln!("  {leftover}");
        }
    }
    if let Some(log) = &context.log_path {
        crate::outln!("\nThe full log is `{}`.", log.display());
    }
}
