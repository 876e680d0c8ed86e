//! Parses the command line, runs the command, prints the error chain with
//! its hints, and exits with a documented code.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::CommandFactory;

use stackinstall::cli::{Cli, Command};
use stackinstall::commands;
use stackinstall::config::ConfigError;
use stackinstall::credentials::CredentialsError;
use stackinstall::engine::EngineError;
use stackinstall::host::FileError;
use stackinstall::host::command::INTERRUPTED;
use stackinstall::host::lock::LockError;
use stackinstall::secret::redact;
use stackinstall::state::StateError;
use stackinstall::steps::StepError;

/// Exit codes, as documented in the README.
mod exit {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LOCKED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    // Every command may hold passwords (the credentials file, a token, a
    // key on stdin): none may end up in a core file.
    if let Err(error) = stackinstall::host::system::forbid_core_dumps() {
        eprintln!("error: cannot turn core dumps off: {error}");
        return ExitCode::from(exit::FAILED);
    }
    if std::env::args_os().len() == 1 && !stackinstall::ask::can_ask() {
        // Nothing asked and nobody to ask: the usage, on stderr, exit 2.
        eprint!("{}", Cli::command().render_help());
        return ExitCode::from(exit::USAGE);
    }
    let cli = Cli::parse_checked();
    install_signal_handlers();
    let root = cli.root.clone();
    let result = match cli.command {
        None => commands::install::run(&root, cli.install),
        Some(Command::Install(args)) => commands::install::run(&root, args),
        Some(Command::Uninstall(args)) => commands::uninstall::run(&root, args),
        Some(Command::Status(args)) => commands::status::run(&root, args),
        Some(Command::Render(args)) => commands::render::run(&root, args),
        Some(Command::Credentials(args)) => commands::credentials::run(&root, args),
        Some(Command::EcrRefresh(args)) => commands::ecr_refresh::run(&root, args),
        Some(Command::Doctor(args)) => commands::doctor::run(&root, args),
        Some(Command::EcrCredentialProvider(args)) => commands::ecr_credential_provider::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::from(exit_code(&error))
        }
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(error) = error.downcast_ref::<EngineError>() {
        return match error {
            EngineError::UnknownStep { .. } | EngineError::MissingPrerequisite { .. } => {
                exit::USAGE
            }
            EngineError::Interrupted { .. } => exit::INTERRUPTED,
            EngineError::StepFailed { error, .. } if error.is_input() => exit::USAGE,
            EngineError::State(StateError::Lock(LockError::Held { .. })) => exit::LOCKED,
            _ => exit::FAILED,
        };
    }
    if let Some(StateError::Lock(LockError::Held { .. })) = error.downcast_ref::<StateError>() {
        return exit::LOCKED;
    }
    if error.downcast_ref::<ConfigError>().is_some() {
        return exit::USAGE;
    }
    if let Some(error) = error.downcast_ref::<StepError>() {
        return if error.is_input() {
            exit::USAGE
        } else {
            exit::FAILED
        };
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return exit::INTERRUPTED;
    }
    exit::FAILED
}

/// Prints `error: ...`, its causes, hints, the log and how to resume.
fn report(error: &anyhow::Error) {
    eprintln!("error: {}", redact(&error.to_string()));
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {}", redact(&cause.to_string()));
    }
    for hint in hints(error) {
        eprintln!("hint: {}", redact(&hint));
    }
}

fn hints(error: &anyhow::Error) -> Vec<String> {
    let mut hints = Vec::new();
    if let Some(error) = error.downcast_ref::<EngineError>() {
        match error {
            EngineError::StepFailed {
                step, error, log, ..
            } => {
                hints.extend(error.hint());
                if let Some(log) = log {
                    hints.push(format!("the full log is `{}`", log.display()));
                }
                if error.is_resumable() {
                    hints.push(format!(
                        "run the same command again to resume at `{step}`: finished steps are skipped"
                    ));
                }
            }
            EngineError::Interrupted { step, log } => {
                if let Some(log) = log {
                    hints.push(format!("the full log is `{}`", log.display()));
                }
                hints.push(format!("run the same command again to resume at `{step}`"));
            }
            EngineError::MissingPrerequisite { step, missing, log } => {
                hints.push(EngineError::prerequisite_hint(step, missing));
                if let Some(log) = log {
                    hints.push(format!(
                        "the full log is `{}` (with the error the step ran into)",
                        log.display()
                    ));
                }
            }
            EngineError::State(error) => hints.extend(error.hint()),
            EngineError::UnknownStep { .. } => {}
        }
    }
    if let Some(error) = error.downcast_ref::<StateError>() {
        hints.extend(error.hint());
    }
    if let Some(error) = error.downcast_ref::<CredentialsError>() {
        hints.push(error.hint());
    }
    if let Some(error) = error.downcast_ref::<StepError>() {
        hints.extend(error.hint());
    }
    if let Some(error) = error.downcast_ref::<FileError>() {
        hints.extend(error.hint());
    }
    if let Some(ConfigError::Invalid { .. } | ConfigError::Missing { .. }) =
        error.downcast_ref::<ConfigError>()
    {
        hints.push("`stackinstall render --domain D --out DIR` writes the effective configuration as a starting point".into());
    }
    hints
}

extern "C" fn on_signal(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM stop the running child and end the run cleanly.
fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}
