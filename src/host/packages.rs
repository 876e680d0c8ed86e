//! Debian packages: what is installed (`dpkg-query`), and installing what is
//! missing with `apt-get`, non-interactively, waiting for the dpkg lock
//! while another apt runs instead of failing at once.

use std::time::Duration;

use super::command::{Command, CommandError, Output};

/// How long apt waits for another apt or unattended-upgrades to let go.
const LOCK_TIMEOUT_SECONDS: u32 = 300;

/// An install may download a lot on a slow link.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

/// How many lines of apt's output a failure keeps.
const OUTPUT_TAIL_LINES: usize = 25;

/// Whether `package` is installed (dpkg status `install ok installed`).
pub fn is_installed(package: &str) -> Result<bool, CommandError> {
    Ok(missing(&[package])?.is_empty())
}

/// The packages of `packages` that are not installed, in the same order;
/// one `dpkg-query` for them all (it names each package it knows, and
/// exits 1 when one is unknown).
pub fn missing(packages: &[&str]) -> Result<Vec<String>, CommandError> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Package}\t${Status}\n"])
        .args(packages.iter().copied())
        .timeout(Duration::from_secs(30))
        .run_unchecked()?;
    let installed: Vec<&str> = (output.stdout.lines())
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(package, _)| package)
        .collect();
    Ok(packages
        .iter()
        .filter(|package| !installed.contains(package))
        .map(|package| package.to_string())
        .collect())
}

/// Every installed package (`dpkg-query --show` of all), sorted.
pub fn installed_list() -> Result<Vec<String>, CommandError> {
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Package}\t${Status}\n"])
        .timeout(Duration::from_secs(30))
        .run_unchecked()?;
    let mut installed: Vec<String> = (output.stdout.lines())
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(package, _)| package.to_string())
        .collect();
    installed.sort();
    installed.dedup();
    Ok(installed)
}

/// The installed packages whose names start with one of `prefixes`
/// (`mysql-server` gives `mysql-server-8.0` and `mysql-server-core-8.0`).
pub fn installed_matching(prefixes: &[&str]) -> Result<Vec<String>, CommandError> {
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Package}\t${Status}\n"])
        .args(prefixes.iter().map(|prefix| format!("{prefix}*")))
        .timeout(Duration::from_secs(30))
        .run_unchecked()?;
    Ok(output
        .stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(package, _)| package.to_string())
        .collect())
}

fn apt_get<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "-o".to_string(),
            format!("DPkg::Lock::Timeout={LOCK_TIMEOUT_SECONDS}"),
        ])
        .args(args)
        .timeout(INSTALL_TIMEOUT)
}

/// The command that refreshes the package lists.
pub fn update_command() -> Command {
    apt_get(["-q", "update"])
}

/// The command that installs `packages` without questions, keeping the
/// configuration files already on the host.
pub fn install_command(packages: &[String]) -> Command {
    apt_get([
        "-q",
        "-y",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "install",
    ])
    .args(packages.iter().cloned())
}

/// The command that purges `packages` (their files and configuration)
/// without questions; their data directories are the packages' own business.
pub fn purge_command(packages: &[String]) -> Command {
    apt_get(["-q", "-y", "purge"]).args(packages.iter().cloned())
}

/// Runs an apt command; a failure shows the tail of apt's output (stdout
/// and stderr, since apt reports on both).
pub fn run_apt(command: &Command) -> Result<Output, CommandError> {
    let output = command.run_unchecked()?;
    if output.success() {
        return Ok(output);
    }
    let combined = format!("{}{}", output.stdout, output.stderr);
    let lines: Vec<&str> = combined.lines().collect();
    let tail = lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].join("\n");
    Err(CommandError::Failed {
        command: command.to_string(),
        status: output
            .code
            .map_or("a signal".into(), |code| format!("exit status {code}")),
        stderr_tail: crate::secret::redact(&tail),
    })
}

/// Whether dpkg was interrupted (a power cut during an install): `dpkg
/// --audit` (read-only) names half-installed or unconfigured packages, and
/// apt refuses to install until `dpkg --configure -a` has finished the job.
pub fn interrupted() -> Result<bool, CommandError> {
    let audit = Command::new("dpkg")
        .args(["--audit"])
        .timeout(Duration::from_secs(60))
        .run_unchecked();
    match audit {
        Ok(output) => Ok(!output.stdout.trim().is_empty()),
        // No dpkg: no Debian package database to repair.
        Err(CommandError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The command that finishes what an interrupted dpkg left half done.
pub fn configure_pending_command() -> Command {
    Command::new("dpkg")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["--force-confdef", "--force-confold", "--configure", "-a"])
        .timeout(INSTALL_TIMEOUT)
}

/// Runs `dpkg --configure -a` while dpkg says it was interrupted. While
/// another dpkg holds the lock (an apt of a killed run still working), it
/// waits for it as apt would (`DPkg::Lock::Timeout`): that one may finish
/// the job itself.
pub fn finish_interrupted() -> Result<(), CommandError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(LOCK_TIMEOUT_SECONDS.into());
    while interrupted()? {
        let command = configure_pending_command();
        let output = command.run_unchecked()?;
        if output.success() {
            return Ok(());
        }
        let locked = output.stderr.contains("lock");
        if locked && std::time::Instant::now() < deadline {
            super::command::pause(Duration::from_secs(2))?;
            continue;
        }
        return Err(CommandError::Failed {
            command: command.to_string(),
            status: output
                .code
                .map_or("a signal".into(), |code| format!("exit status {code}")),
            stderr_tail: crate::secret::redact(&output.stderr),
        });
    }
    Ok(())
}

/// Refreshes the package lists, then installs `packages`; first finishes
/// what an interrupted dpkg left (a dpkg still running holds its lock: the
/// install then waits for it, `DPkg::Lock::Timeout`).
pub fn install(packages: &[String]) -> Result<(), CommandError> {
    finish_interrupted()?;
    run_apt(&update_command())?;
    run_apt(&install_command(packages))?;
    Ok(())
}
