//! `stackinstall install`: the plan, or the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{Error, Result};

use crate::ask::{self, CertificateChoice};
use crate::cli::{InstallArgs, Output};
use crate::config::{Flags, Install, Layers};
use crate::context::Context;
use crate::engine::install::{self as engine, Plan};
use crate::engine::{EngineError, Inclusion, Selection};
use crate::host::command::INTERRUPTED;
use crate::host::{self, Host};
use crate::resume;
use crate::state::StateFile;
use crate::steps::{self, StepError, StepId};
use crate::ui::Ui;

/// Where run logs go.
pub const LOG_DIR: &str = "/var/log/stackinstall";

/// Runs `install`.
pub fn run(root: &Path, args: InstallArgs) -> Result<()> {
    if !args.plan {
        // Before anything is read: a state file only root can read would
        // otherwise be the first thing to fail.
        steps::preflight::check_root()?;
    }
    let json = args.output == Output::Json;
    let asking = !args.yes && !json && ask::can_ask();
    let mut flags = flags(&args);
    let layers = Layers::read(&super::sources(&args.config, flags.clone()))?;
    let install = layers.install(&flags)?;
    let selection = Selection::parse(
        &args.only,
        args.from.as_deref(),
        &args.redo,
        install.skip_infra,
        install.skip_db,
    )?;
    let inclusion = selection.resolve_checked()?;
    let host = Host::new(root);
    // On a terminal the lock is taken before the first question: another
    // install or an uninstall must not run while this one waits for an
    // answer (without one it comes after the checks of the inputs, so that
    // a bad input leaves the host as it was).
    let early_lock = match asking && !args.plan {
        true => Some(StateFile::new(&host).lock()?),
        false => None,
    };
    if asking {
        ask_missing(&install, &mut flags, &host)?;
    }
    let command_line = resume::command_line(&args, &flags);
    let config = layers.into_config(&flags)?;
    let mut context = Context::new(
        config,
        host,
        Ui::detect(json),
        args.plan,
        &super::home_dir(),
    )?;
    context.redo = selection.redo.clone();
    context.included = inclusion.included();
    context.explain_timeout = Some(crate::doctor::explain_timeout);
    context.back_up = Some(crate::backup::before_upgrade);
    let kubeconfig = choose_kubeconfig(&args, &context)?;
    if args.plan {
        let plan = engine::plan(&context, &inclusion)?;
        let stops = context.take_plan_stops();
        print_plan(&plan, &stops, json);
        return match stops.into_iter().next() {
            // A plan of an install that would stop fails as the install would.
            Some(error) => Err(EngineError::PlanStops {
                step: StepId::Preflight,
                error: Box::new(error),
            }
            .into()),
            None => Ok(()),
        };
    }
    check_inputs(&context)?;
    check_pins(&context, &inclusion)?;
    check_aws_source(&context, &inclusion, asking)?;
    if asking {
        confirm(&context, &inclusion, &command_line)?;
    }
    let _lock = match early_lock {
        Some(lock) => lock,
        None => context.state_file().lock()?,
    };
    context.reload_state()?;
    if context.facts().kubeconfig != kubeconfig {
        context.record(&crate::state::Fact::Kubeconfig(kubeconfig))?;
    }
    let inputs = resume::Inputs::of(&flags);
    if asking && !inputs.is_empty() {
        inputs.save(&context.host)?;
    }
    // Loaded now so that every password is redacted from the log from the
    // first line on; a damaged file is the credentials step's to report.
    let _ = context.credentials();
    context.log_path = Some(host::log::start(&context.host.path(LOG_DIR), "install")?);
    tracing::info!(
        "stackinstall {} install: profile {}, domain {}",
        env!("CARGO_PKG_VERSION"),
        context.config.name,
        context.config.install.domain.as_deref().unwrap_or("(none)")
    );
    let outcomes = match engine::run(&mut context, &inclusion, args.jobs.into()) {
        Ok(outcomes) => outcomes,
        Err(error) if asking => {
            return Err(Error::Asked(super::Asked {
                error,
                command_line,
            }));
        }
        Err(error) => return Err(error.into()),
    };
    if context.ui.is_live() {
        let rows: Vec<(&str, &str, f64)> = (outcomes.iter())
            .filter(|outcome| outcome.result != engine::StepResult::Skipped)
            .map(|outcome| (outcome.id, outcome.result.words(), outcome.seconds))
            .collect();
        context.ui.table(&rows);
    }
    if json {
        let report = serde_json::json!({ "steps": outcomes, "log": context.log_path });
        crate::outln!("{report:#}");
    }
    Ok(())
}

/// Before anything changes: AWS credentials found only in this shell's
/// environment would be gone for the kubelet's provider and the renewal
/// timer. On a terminal the operator may have them written as root's
/// profile; otherwise the install stops (exit 2) with the explanation,
/// unless the profile wants no renewal (`registry.refresh_hours = 0`).
fn check_aws_source(context: &Context, inclusion: &Inclusion, asking: bool) -> Result<()> {
    if !inclusion.includes(StepId::Registry) || context.config.registry.refresh_hours == 0 {
        return Ok(());
    }
    let source = crate::ecr::credential_source(&context.config, &context.host)?;
    if source != crate::ecr::CredentialSource::EnvironmentOnly {
        return Ok(());
    }
    let profile = crate::ecr::profile_name(&context.config);
    if asking {
        crate::errln!(
            "The AWS key is in this shell's environment only: the kubelet (pulling images) and the renewal timer will not see it."
        );
        if ask::aws_profile(profile).map_err(no_answer)? {
            let path = crate::ecr::write_environment_profile(&context.host, profile)?;
            context.ui.note(&format!(
                "AWS key written to `{}` (0600) as profile `{profile}`",
                context.shown(&path).display()
            ));
            return Ok(());
        }
    }
    Err(crate::ecr::environment_only_error(profile).into())
}

/// The kubeconfig of this install's cluster, said and put in use:
/// `--kubeconfig`, else `KUBECONFIG`, else the one an earlier install
/// recorded, else K3s's (`None`). Only `--skip-infra` installs into a
/// cluster of the operator's; without it the cluster is the K3s this
/// installs.
fn choose_kubeconfig(args: &InstallArgs, context: &Context) -> Result<Option<PathBuf>, StepError> {
    let skip_infra = context.config.install.skip_infra;
    if !skip_infra {
        if args.kubeconfig.is_some() {
            return Err(StepError::input(
                "--kubeconfig is for --skip-infra: without it the cluster is the K3s this installs, reached with its own kubeconfig",
                "add --skip-infra to install into the cluster of that kubeconfig, or leave --kubeconfig out",
            ));
        }
        host::kube::use_kubeconfig(None);
        return Ok(None);
    }
    let environment = std::env::var_os("KUBECONFIG").filter(|value| !value.is_empty());
    let (chosen, source) = match (&args.kubeconfig, environment) {
        (Some(path), _) => (Some(path.clone()), "--kubeconfig"),
        (None, Some(value)) => (Some(PathBuf::from(value)), "KUBECONFIG"),
        (None, None) => match &context.facts().kubeconfig {
            Some(recorded) => (Some(recorded.clone()), "recorded by an earlier install"),
            None => (
                None,
                "K3s's: no --kubeconfig, and KUBECONFIG is not set (sudo drops it unless kept: `sudo --preserve-env=KUBECONFIG`, or pass --kubeconfig FILE)",
            ),
        },
    };
    let chosen = chosen.map(|path| match path.is_absolute() {
        true => path,
        false => std::env::current_dir().unwrap_or_default().join(path),
    });
    if let Some(path) = &chosen
        && !path.to_string_lossy().contains(':')
        && !path.is_file()
    {
        return Err(StepError::input(
            format!(
                "the kubeconfig `{}` ({source}) is not a file",
                path.display()
            ),
            "pass the kubeconfig of the cluster to install into with --kubeconfig FILE",
        ));
    }
    host::kube::use_kubeconfig(chosen.as_deref());
    context.ui.note(&format!(
        "--skip-infra: the cluster is reached with the kubeconfig `{}` ({source})",
        host::kube::kubeconfig().display()
    ));
    Ok(chosen)
}

/// Asks on the terminal for the domain and the certificate when neither
/// the flags nor the layers give them; the answers go into `flags`, the
/// last layer, before the configuration is checked.
fn ask_missing(install: &Install, flags: &mut Flags, host: &Host) -> Result<()> {
    let nothing_given = install.domain.is_none()
        && !install.self_signed
        && install.ssl_cert.is_none()
        && install.ssl_key.is_none();
    let last = resume::Inputs::load(host).filter(|last| !last.is_empty());
    if let Some(last) = last.filter(|_| nothing_given)
        && ask::same_inputs(&last.flags()).map_err(no_answer)?
    {
        last.fill(flags);
        return Ok(());
    }
    let domain = match &install.domain {
        Some(domain) => domain.clone(),
        None => {
            let domain = ask::domain().map_err(no_answer)?;
            flags.domain = Some(domain.to_string());
            domain
        }
    };
    let no_certificate =
        !install.self_signed && install.ssl_cert.is_none() && install.ssl_key.is_none();
    if no_certificate {
        match ask::certificate(&domain).map_err(no_answer)? {
            CertificateChoice::Files { certificate, key } => {
                flags.ssl_cert = Some(certificate);
                flags.ssl_key = Some(key);
            }
            CertificateChoice::SelfSigned => flags.self_signed = true,
        }
    }
    Ok(())
}

/// Shows one line per step and asks `Proceed?`; a no changes nothing.
fn confirm(context: &Context, inclusion: &Inclusion, command_line: &str) -> Result<()> {
    let decisions = engine::decide(context, inclusion)?;
    crate::errln!(
        "Install for {} (profile {}):",
        context
            .config
            .install
            .domain
            .as_deref()
            .unwrap_or("(no domain)"),
        context.config.name
    );
    let rows = (StepId::ALL.iter().zip(&decisions))
        .map(|(id, (decision, _))| (id.name(), id.info().title, decision.to_string()));
    crate::err!("{}", crate::ui::step_table(rows, 3));
    crate::errln!("The same install without these questions: `{command_line} --yes`");
    if ask::proceed().map_err(no_answer)? {
        return Ok(());
    }
    Err(StepError::input(
        "not confirmed: nothing was changed",
        "`stackinstall install --plan` shows every action; --yes answers the question",
    )
    .into())
}

/// A question that got no answer: Ctrl-C (exit 130) or a closed terminal.
fn no_answer(error: dialoguer::Error) -> anyhow::Error {
    let dialoguer::Error::IO(error) = error;
    if error.kind() == std::io::ErrorKind::Interrupted {
        INTERRUPTED.store(true, Ordering::SeqCst);
        return anyhow::anyhow!("interrupted while asking: nothing was changed");
    }
    StepError::input(
        format!("no answer: {error}"),
        "pass the inputs as flags (`stackinstall --help`)",
    )
    .into()
}

/// What the flags set: the last layer of the configuration.
fn flags(args: &InstallArgs) -> Flags {
    Flags {
        domain: args.domain.clone(),
        ssl_cert: args.ssl_cert.clone(),
        ssl_key: args.ssl_key.clone(),
        self_signed: args.self_signed,
        skip_infra: args.skip_infra,
        skip_db: args.skip_db,
        aws_profile: args.aws_profile.clone(),
    }
}

/// Checks the operator's input before the run touches anything (lock, log,
/// state): a bad input leaves the host exactly as it was.
fn check_inputs(context: &Context) -> Result<(), EngineError> {
    let preflight = StepId::Preflight;
    context.ui.set_quiet(true);
    let result = preflight.step().look(context).map(drop);
    context.ui.set_quiet(false);
    result.map_err(|error: StepError| EngineError::StepFailed {
        step: preflight,
        error: Box::new(error),
        log: None,
    })
}

/// With `[downloads] require_pins`, refuses a run whose steps would
/// download a file that has no pin, before anything changes.
fn check_pins(context: &Context, inclusion: &Inclusion) -> Result<(), EngineError> {
    if !context.config.downloads.require_pins {
        return Ok(());
    }
    for id in inclusion.included() {
        let Some(downloads) = id.info().downloads else {
            continue;
        };
        let unpinned: Vec<String> = (downloads(context).iter())
            .filter(|release| release.pin.is_none())
            .map(|release| format!("`{}` ({})", release.key, release.url))
            .collect();
        if unpinned.is_empty() {
            continue;
        }
        let error = StepError::input(
            format!(
                "`[downloads] require_pins` is set, but step `{id}` would download {} with no pinned SHA-256: {}",
                if unpinned.len() == 1 {
                    "a file"
                } else {
                    "files"
                },
                unpinned.join(", ")
            ),
            "add each to [downloads.pins] (`sha256` and the `source` that publishes it) in a --config file, or set `[downloads] require_pins = false` to check them against their origin's own sums",
        );
        return Err(EngineError::StepFailed {
            step: id,
            error: Box::new(error),
            log: None,
        });
    }
    Ok(())
}

/// The routes the gateway will serve, and who set them.
fn print_routes(served: &engine::ServedRoutes) {
    let from = match &served.replaced_by {
        Some(setter) => format!("{setter}, which replaces the profile's routes"),
        None => "the profile".to_string(),
    };
    crate::outln!("Routes served at {} (from {from}):", served.base);
    crate::outln!("  {:<12} redirects to {}", "/", served.home);
    for route in &served.routes {
        crate::outln!(
            "  {:<12} Service {}, port {}",
            route.prefix,
            route.service,
            route.port
        );
    }
    crate::outln!();
}

/// Prints the plan; `stops` is what would stop the install (the JSON's
/// `stops`, each with its error and hint; the text's error follows it).
pub(crate) fn print_plan(plan: &Plan, stops: &[StepError], json: bool) {
    if json && stops.is_empty() {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(plan).expect("plans serialize")
        );
        return;
    }
    if json {
        let stops: Vec<serde_json::Value> = (stops.iter())
            .map(|error| {
                serde_json::json!({
                    "step": StepId::Preflight,
                    "error": crate::secret::redact(&error.to_string()),
                    "hint": error.hint(),
                })
            })
            .collect();
        let mut document = serde_json::to_value(plan).expect("plans serialize");
        document["stops"] = stops.into();
        document["exit_code"] = crate::error::exit::USAGE.into();
        crate::outln!("{document:#}");
        return;
    }
    crate::outln!(
        "Plan for {} (profile {}); nothing has been changed.\n",
        plan.domain.as_deref().unwrap_or("(no domain)"),
        plan.profile
    );
    if let Some(served) = &plan.routes {
        print_routes(served);
    }
    let rows = (plan.steps.iter()).map(|step| (step.id, step.title, step.decision.to_string()));
    let table = crate::ui::step_table(rows, 2);
    for (step, row) in plan.steps.iter().zip(table.lines()) {
        crate::outln!("{row}");
        let actions = step.actions.iter();
        crate::out!(
            "{}",
            crate::ui::action_lines(actions.map(|a| (a.kind.word(), a.detail.as_str())))
        );
        if let Some(note) = &step.note {
            crate::outln!("      (cannot look until the steps before it have run: {note})");
        }
    }
}
