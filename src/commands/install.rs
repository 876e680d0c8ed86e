//! `stackinstall install`: the plan, or the run.

use std::path::Path;

use anyhow::Result;

use crate::cli::{InstallArgs, Output};
use crate::context::Context;
use crate::host::{self, Host};
use crate::pipeline::{self, Decision, Plan, Selection};
use crate::steps::{self, Step, StepError};
use crate::ui::Ui;

/// Where run logs go.
pub const LOG_DIR: &str = "/var/log/stackinstall";

/// Runs `install`.
pub fn run(root: &Path, args: InstallArgs) -> Result<()> {
    let config = super::load_config(&args.config, flags(&args))?;
    let steps = steps::all();
    let selection = Selection {
        only: args.only.clone(),
        from: args.from.clone(),
        redo: args.redo.clone(),
        skip_infra: config.install.skip_infra,
        skip_db: config.install.skip_db,
    };
    selection.check(&steps)?;
    let json = args.output == Output::Json;
    let host = Host::new(root);
    let mut context = Context::new(
        config,
        host,
        Ui::detect(json),
        args.plan,
        &super::home_dir(),
    )?;
    context.redo = selection.redo.clone();
    if args.plan {
        let plan = pipeline::plan(&context, &steps, &selection)?;
        print_plan(&plan, json);
        return Ok(());
    }
    check_inputs(&context, &steps)?;
    let _lock = context.state_file().lock()?;
    context.state = context.state_file().load()?;
    // Loaded now so that every password is redacted from the log from the
    // first line on; a damaged file is the credentials step's to report.
    let _ = context.credentials();
    context.log_path = Some(host::log::start(&context.host.path(LOG_DIR), "install")?);
    tracing::info!(
        "stackinstall {} install: profile {}, domain {}",
        env!("CARGO_PKG_VERSION"),
        context.config.name,
        context.config.install.domain
    );
    let outcomes = pipeline::run(&mut context, &steps, &selection)?;
    if json {
        let report = serde_json::json!({ "steps": outcomes, "log": context.log_path });
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// The flags as a configuration layer.
fn flags(args: &InstallArgs) -> toml::Table {
    let mut install = toml::Table::new();
    if let Some(domain) = &args.domain {
        install.insert("domain".into(), domain.to_ascii_lowercase().into());
    }
    for (key, path) in [("ssl_cert", &args.ssl_cert), ("ssl_key", &args.ssl_key)] {
        if let Some(path) = path {
            install.insert(key.into(), path.display().to_string().into());
        }
    }
    if let Some(profile) = &args.aws_profile {
        install.insert("aws_profile".into(), profile.clone().into());
    }
    for (key, set) in [
        ("self_signed", args.self_signed),
        ("skip_infra", args.skip_infra),
        ("skip_db", args.skip_db),
    ] {
        if set {
            install.insert(key.into(), true.into());
        }
    }
    toml::Table::from_iter([("install".to_string(), toml::Value::Table(install))])
}

/// Checks the operator's input before the run touches anything (lock, log,
/// state): a bad input leaves the host exactly as it was.
fn check_inputs(context: &Context, steps: &[Box<dyn Step>]) -> Result<(), pipeline::PipelineError> {
    let preflight = steps
        .iter()
        .find(|s| s.id() == "preflight")
        .expect("preflight is a step");
    context.ui.set_quiet(true);
    let result = preflight.look(context).map(drop);
    context.ui.set_quiet(false);
    result.map_err(|error: StepError| pipeline::PipelineError::StepFailed {
        step: preflight.id().into(),
        title: preflight.title().into(),
        error: Box::new(error),
        log: None,
    })
}

fn print_plan(plan: &Plan, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(plan).expect("plans serialize")
        );
        return;
    }
    println!(
        "Plan for {} (profile {}); nothing has been changed.\n",
        if plan.domain.is_empty() {
            "(no domain)"
        } else {
            &plan.domain
        },
        plan.profile
    );
    for (index, step) in plan.steps.iter().enumerate() {
        let state = match &step.decision {
            Decision::Done => "done".to_string(),
            Decision::ToDo(reason) => format!("to do: {reason}"),
            Decision::Skipped(reason) => format!("skipped: {reason}"),
        };
        println!(
            "{:>2}. {:<12} {:<42} {state}",
            index + 1,
            step.id,
            step.title
        );
        for action in &step.actions {
            println!(
                "      {:<10} {}",
                format!("{:?}", action.kind).to_ascii_lowercase(),
                action.detail
            );
        }
        if let Some(note) = &step.note {
            println!("      (cannot look until the steps before it have run: {note})");
        }
    }
}
