//! Parses the command line, runs the command, prints the error chain with
//! its hints, and exits with a documented code.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::CommandFactory;

use stackinstall::cli::{Cli, Command};
use stackinstall::commands;
use stackinstall::commands::Error;
use stackinstall::error::exit;
use stackinstall::host::command::INTERRUPTED;
use stackinstall::secret::redact;

fn main() -> ExitCode {
    // Every command may hold passwords (the credentials file, a token, a
    // key on stdin): none may end up in a core file.
    if let Err(error) = stackinstall::host::system::forbid_core_dumps() {
        stackinstall::errln!("error: cannot turn core dumps off: {error}");
        return ExitCode::from(exit::FAILED);
    }
    if std::env::args_os().len() == 1 && !stackinstall::ask::can_ask() {
        // Nothing asked and nobody to ask: the usage, on stderr, exit 2.
        stackinstall::err!("{}", Cli::command().render_help());
        return ExitCode::from(exit::USAGE);
    }
    let cli = Cli::parse_checked();
    let json = cli.wants_json();
    // The kubelet logs its credential provider's stderr line by line.
    let one_line = matches!(cli.command, Some(Command::EcrCredentialProvider(_)));
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
        Some(Command::Backup(args)) => commands::backup::run(&root, args),
        Some(Command::Restore(args)) => commands::restore::run(&root, args),
        Some(Command::EcrCredentialProvider(args)) => commands::ecr_credential_provider::run(args),
        Some(Command::JoinCommand(args)) => commands::join::run_command(&root, args),
        Some(Command::Join(args)) => commands::join::run(&root, args),
        Some(Command::Nodes(args)) => commands::nodes::run(&root, args),
        Some(Command::Leave(args)) => commands::nodes::leave(&root, args),
        Some(Command::Ha(args)) => commands::ha::run(&root, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if one_line => {
            stackinstall::errln!("{}", one_line_report(&error));
            ExitCode::from(error.exit_code())
        }
        Err(error) => {
            report(&error);
            if json && !stackinstall::print::stdout_used() {
                stackinstall::outln!("{:#}", error_document(&error));
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// Prints `error: ...`, its causes and its hints (the log, how to resume).
fn report(error: &Error) {
    stackinstall::errln!("error: {}", redact(&error.to_string()));
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        stackinstall::errln!("  caused by: {}", redact(&error.to_string()));
        cause = error.source();
    }
    for hint in error.hints() {
        stackinstall::errln!("hint: {}", redact(&hint));
    }
}

/// The error, its causes and its hints on one line (for the kubelet's log).
fn one_line_report(error: &Error) -> String {
    let mut line = format!("error: {}", error);
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        line.push_str(&format!(": {error}"));
        cause = error.source();
    }
    for hint in error.hints() {
        line.push_str(&format!(" (hint: {hint})"));
    }
    redact(&line.replace('\n', " "))
}

/// The failure of a command whose result is JSON, as the one JSON
/// document on standard output: the error, its causes, its hints and the
/// exit code (the same words as on standard error).
fn error_document(error: &Error) -> serde_json::Value {
    let mut causes = Vec::new();
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        causes.push(redact(&error.to_string()));
        cause = error.source();
    }
    let hints: Vec<String> = error.hints().iter().map(|hint| redact(hint)).collect();
    serde_json::json!({
        "error": redact(&error.to_string()),
        "causes": causes,
        "hints": hints,
        "exit_code": error.exit_code(),
    })
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
