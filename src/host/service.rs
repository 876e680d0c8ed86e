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

/// Whether `unit` is enabled: started at boot. Only systemctl's word
/// `enabled` counts: `is-enabled` also exits 0 for `alias` (a name such as
/// `nfs-kernel-server.service` says nothing of its target), `static`,
/// `indirect`, `generated` and `enabled-runtime` (gone after a reboot),
/// systemctl(1) "is-enabled".
pub fn is_enabled(unit: &str) -> Result<bool, CommandError> {
    let output = systemctl(["is-enabled", unit]).run_unchecked()?;
    Ok(output.stdout.trim() == "enabled")
}

/// Whether `unit`'s file is known to systemd (installed by a package).
pub fn exists(unit: &str) -> Result<bool, CommandError> {
    let output =
        systemctl(["list-unit-files", "--no-legend", "--no-pager", unit]).run_unchecked()?;
    Ok(output.stdout.lines().any(|line| !line.trim().is_empty()))
}

/// The unit files that are `enabled`, sorted.
pub fn enabled_units() -> Result<Vec<String>, CommandError> {
    let output = systemctl([
        "list-unit-files",
        "--state=enabled",
        "--no-legend",
        "--no-pager",
    ])
    .run()?;
    let mut units: Vec<String> = (output.stdout.lines())
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    units.sort();
    Ok(units)
}

/// The services that systemd starts for a socket unit listening on TCP
/// `port` (`systemctl list-sockets`: LISTEN, UNIT, ACTIVATES).
pub fn activated_by_port(port: u16) -> Result<Vec<String>, CommandError> {
    let output =
        systemctl(["list-sockets", "--all", "--no-legend", "--no-pager"]).run_unchecked()?;
    let suffix = format!(":{port}");
    Ok(output
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| {
            fields
                .first()
                .is_some_and(|listen| listen.ends_with(&suffix))
        })
        .flat_map(|fields| fields.into_iter().skip(2).map(str::to_string))
        .collect())
}

/// The command that enables `unit` (it starts at every boot from now on).
pub fn enable(unit: &str) -> Command {
    systemctl(["enable", unit])
}

/// The command that starts `unit` now.
pub fn start(unit: &str) -> Command {
    systemctl(["start", unit])
}

/// The command that enables `unit` and starts it now.
pub fn enable_now(unit: &str) -> Command {
    systemctl(["enable", "--now", unit])
}

/// The command that stops `unit` now.
pub fn stop(unit: &str) -> Command {
    systemctl(["stop", unit])
}

/// The command that restarts `unit`.
pub fn restart(unit: &str) -> Command {
    systemctl(["restart", unit])
}

/// The command that stops and disables `unit`.
pub fn disable_now(unit: &str) -> Command {
    systemctl(["disable", "--now", unit])
}

/// The command that disables `units` (no longer started at boot).
pub fn disable(units: &[String]) -> Command {
    systemctl(["disable"]).args(units.iter().cloned())
}

/// The command that makes systemd read changed unit files.
pub fn daemon_reload() -> Command {
    systemctl(["daemon-reload"])
}
