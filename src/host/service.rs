//! systemd services and timers, through `systemctl` found on PATH.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use super::command::{Command, CommandError, unit_changes};

const TIMEOUT: Duration = Duration::from_secs(180);

fn systemctl<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("systemctl").args(args).timeout(TIMEOUT)
}

/// What systemd says of a unit: whether it starts at boot and whether it
/// runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UnitState {
    enabled: bool,
    active: bool,
}

/// The units' states as one `systemctl show` read them, shared by every
/// step of the run: a no-op re-run asks systemd once, not twice a unit.
/// Stale once a program that may change a unit has run since
/// (`command::unit_changes`).
struct Snapshot {
    /// Every unit asked about so far: the next read asks for them all.
    asked: BTreeSet<String>,
    /// What was read, and `command::unit_changes()` when it was.
    known: Option<(BTreeMap<String, UnitState>, u64)>,
}

static SNAPSHOT: Mutex<Snapshot> = Mutex::new(Snapshot {
    asked: BTreeSet::new(),
    known: None,
});

fn snapshot() -> std::sync::MutexGuard<'static, Snapshot> {
    SNAPSHOT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Adds `units` to those the next read asks systemd about: the units a
/// run will look at, read together by the first look at any of them.
pub fn expect(units: impl IntoIterator<Item = String>) {
    let mut snapshot = snapshot();
    let before = snapshot.asked.len();
    snapshot.asked.extend(units);
    if snapshot.asked.len() != before {
        snapshot.known = None;
    }
}

/// The state of `unit`, from the run's snapshot (read when it has none or
/// does not know the unit). The snapshot stays locked while it is read:
/// steps side by side wait for one read rather than make their own, and a
/// change that ends meanwhile forgets it only once it is stored.
fn state(unit: &str) -> Result<UnitState, CommandError> {
    // A test's host in this process (one of many): no snapshot to share.
    if super::process::entered().is_some() {
        let name = [unit.to_string()];
        let read = read_states(&name)?.unwrap_or_default();
        return Ok(read.get(unit).copied().unwrap_or_default());
    }
    let mut snapshot = snapshot();
    if let Some((known, changes)) = &snapshot.known
        && *changes == unit_changes()
        && let Some(state) = known.get(unit)
    {
        return Ok(*state);
    }
    snapshot.asked.insert(unit.to_string());
    let names: Vec<String> = snapshot.asked.iter().cloned().collect();
    // Counted before the read: a change that ends during it forgets it.
    let changes = unit_changes();
    let Some(read) = read_states(&names)? else {
        return Ok(UnitState::default());
    };
    let state = read.get(unit).copied().unwrap_or_default();
    snapshot.known = Some((read, changes));
    Ok(state)
}

/// One `systemctl show` of `names`: systemctl(1) "show" prints one block
/// of `KEY=VALUE` lines per unit, in the order named, blocks separated by
/// an empty line; a unit that is not there is `LoadState=not-found`,
/// `ActiveState=inactive` and an empty `UnitFileState`.
/// `None` when systemctl failed (no systemd running: as `is-active` and
/// `is-enabled` would, that says no unit is active or enabled).
fn read_states(names: &[String]) -> Result<Option<BTreeMap<String, UnitState>>, CommandError> {
    let output = systemctl(["show", "--property=UnitFileState,ActiveState", "--"])
        .args(names.iter().cloned())
        .run_unchecked()?;
    if !output.success() {
        return Ok(None);
    }
    let blocks = output.stdout.split("\n\n");
    Ok(Some(
        names.iter().cloned().zip(blocks.map(parse_state)).collect(),
    ))
}

fn parse_state(block: &str) -> UnitState {
    let value = |key: &str| {
        (block.lines())
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_default()
    };
    UnitState {
        // Only `enabled` starts it at boot: `alias` (a name such as
        // `nfs-kernel-server.service` says nothing of its target), `static`,
        // `indirect`, `generated` and `enabled-runtime` (gone after a
        // reboot) do not, systemctl(1) "is-enabled".
        enabled: value("UnitFileState") == "enabled",
        // What `is-active` counts as active (systemd's systemctl-is-active.c:
        // `active`, `reloading`, `refreshing`).
        active: matches!(value("ActiveState"), "active" | "reloading" | "refreshing"),
    }
}

/// Whether `unit` is active (running).
pub fn is_active(unit: &str) -> Result<bool, CommandError> {
    Ok(state(unit)?.active)
}

/// Whether `unit` is enabled: started at boot.
pub fn is_enabled(unit: &str) -> Result<bool, CommandError> {
    Ok(state(unit)?.enabled)
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

/// The name of the mount unit of the directory `path`, as
/// `systemd-escape --path --suffix=mount` gives it (systemd.unit(5),
/// "String Escaping for Inclusion in Unit Names"): the path without its
/// outer and doubled `/`, each `/` then `-`, every character but ASCII
/// letters, digits, `:`, `_` and a `.` that does not lead the name written
/// `\xNN`.
pub fn mount_unit(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    if parts.is_empty() {
        return "-.mount".into();
    }
    let mut name = String::new();
    for (index, byte) in parts.join("/").bytes().enumerate() {
        match byte {
            b'/' => name.push('-'),
            b'.' if index > 0 => name.push('.'),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' => name.push(b as char),
            b => name.push_str(&format!("\\x{b:02x}")),
        }
    }
    name + ".mount"
}

/// The command that makes systemd read changed unit files.
pub fn daemon_reload() -> Command {
    systemctl(["daemon-reload"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_unit_names_are_escaped_as_systemd_escape_does() {
        // `systemd-escape --path --suffix=mount PATH` on Debian 12.
        for (path, name) in [
            ("/data/stackbill", "data-stackbill.mount"),
            ("/srv//nfs-data/", "srv-nfs\\x2ddata.mount"),
            ("/var/lib/.hidden/x.y", "var-lib-.hidden-x.y.mount"),
            ("/.dot/a", "\\x2edot-a.mount"),
            ("/a b", "a\\x20b.mount"),
            ("/", "-.mount"),
        ] {
            assert_eq!(mount_unit(path), name, "{path}");
        }
    }
}
