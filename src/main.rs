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
        Some(Command::Backup(args)) => commands::backup::run(&root, args),
        Some(Command::Restore(args)) => commands::restore::run(&root, args),
        Some(Command::EcrCredentialProvider(args)) => commands::ecr_credential_provider::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::from(error.exit_code())
        }
    }
}

/// Prints `error: ...`, its causes and its hints (the log, how to resume).
fn report(error: &Error) {
    eprintln!("error: {}", redact(&error.to_string()));
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        eprintln!("  caused by: {}", redact(&error.to_string()));
        cause = error.source();
    }
    for hint in error.hints() {
        eprintln!("hint: {}", redact(&hint));
    }
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
