//! Printing that a closed pipe does not end (`stackinstall status | head
//! -1`): `println!` panics when its write fails, and Rust ignores SIGPIPE,
//! so a reader that went away made a crash (exit 101) of a read-only
//! command, and killed an install in the middle of a step. Everything the
//! binary prints goes through [`outln!`](crate::outln) and
//! [`errln!`](crate::errln) (`clippy.toml` forbids the `std` macros): a
//! write that fails is dropped, noted once in the run's log, and the
//! command goes on to its end and exits as it would have.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once anything was written (or tried) to standard output.
static STDOUT_USED: AtomicBool = AtomicBool::new(false);
/// Set once a write to standard output failed: later ones are not tried.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// The same for standard error.
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output; a failure is noted, never a panic.
pub fn stdout(text: Arguments<'_>) {
    STDOUT_USED.store(true, Ordering::Relaxed);
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut handle = std::io::stdout().lock();
    if let Err(error) = handle.write_fmt(text).and_then(|()| handle.flush()) {
        gone(&STDOUT_GONE, "standard output", &error);
    }
}

/// Writes `text` to standard error; a failure is noted, never a panic.
pub fn stderr(text: Arguments<'_>) {
    if STDERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(error) = std::io::stderr().lock().write_fmt(text) {
        gone(&STDERR_GONE, "standard error", &error);
    }
}

/// Whether anything was printed on standard output (a command's JSON
/// result, say): a failure's JSON document is printed only when not.
pub fn stdout_used() -> bool {
    STDOUT_USED.load(Ordering::Relaxed)
}

/// Whether a write to standard output failed (its reader went away).
pub fn stdout_closed() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

fn gone(flag: &AtomicBool, stream: &str, error: &std::io::Error) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "{stream} is closed ({error}): what follows is not shown there; the command goes on"
        );
    }
}

/// `println!` that survives a closed standard output.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::print::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::print::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that survives a closed standard output.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print::stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that survives a closed standard error.
#[macro_export]
macro_rules! errln {
    () => {
        $crate::print::stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::print::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that survives a closed standard error.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::print::stderr(format_args!($($arg)*))
    };
}
