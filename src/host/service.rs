//! systemd services and timers, through `systemctl` found on PATH.

use std::time::Duration;

use super::command::{Command, CommandError};

const TIMEOUT: Duration = Duration::from_secs(180);

fn systemctl<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("systemctl").args(args).timeout(TIMEOUT)
}

/// Whether `unit` is active (running).
pub fn is_active(unit: &str) -> Result<bool, CommandError> {
    Ok(systemctl(["is-active", "--quiet", unit])
        .run_unchecked()?
        .success())
}

/// Whether `unit` is enabled.
pub fn is_enabled(unit: &str) -> Result<bool, CommandError> {
    Ok(systemctl(["is-enabled", "--quiet", unit])
        .run_unchecked()?
        .success())
}

/// The command that enables `unit` and starts it now.
pub fn enable_now(unit: &str) -> Command {
    systemctl(["enable", "--now", unit])
}

/// The command that restarts `unit`.
pub fn restart(unit: &str) -> Command {
    systemctl(["restart", unit])
}

/// The command that stops and disables `unit`.
pub fn disable_now(unit: &str) -> Command {
    systemctl(["disable", "--now", unit])
}

/// The command that makes systemd read changed unit files.
pub fn daemon_reload() -> Command {
    systemctl(["daemon-reload"])
}
