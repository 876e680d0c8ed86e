//! Backups: with `[backup] schedule` set (a systemd calendar event,
//! checked where the configuration is loaded, which also refuses a
//! schedule without `[backup] key_file`), installs a systemd service and
//! timer that run `stackinstall backup --scheduled` with the effective
//! configuration in `/etc/stackinstall/backup.toml`: an archive encrypted
//! to the key file in `[backup] directory`, the newest `[backup] keep`
//! scheduled ones kept (the backup command prunes; only its own archive
//! names). The timer runs `/usr/local/bin/stackinstall`, the root-owned
//! copy of the running binary (as the ECR renewal's does).
//!
//! Done when the unit and configuration files are as rendered and the
//! timer is enabled and active; a timer whose files changed is restarted
//! after systemd reloads them (pending in the state until it is). Without a schedule the step removes a
//! timer an earlier install set up. Uninstall stops and disables the timer
//! and removes its files; the archives are kept.

use std::path::PathBuf;

use super::{Action, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::Context;
use crate::host::installed::{self, INSTALLED_BINARY};
use crate::host::{self, service};
use crate::render::{self, RenderError};
use crate::state::{Fact, Fingerprint, Reload};
use crate::steps::services::Reread;

/// The backups step.
pub struct Backups;

/// The timer that runs the scheduled backup.
pub const TIMER: &str = "stackinstall-backup.timer";
/// The service the timer starts.
const SERVICE: &str = "stackinstall-backup.service";
/// The configuration the scheduled backup runs with.
pub const CONFIG_FILE: &str = "/etc/stackinstall/backup.toml";

const SYSTEMD_DIR: &str = "/etc/systemd/system";

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    rendered: Some(rendered),
    preflight: Some(preflight),
    needs: &[StepId::Wait],
    ..StepInfo::new(StepId::Backups, "Schedule backups")
};

/// The scheduled backup's files, as (absolute host path, contents): the
/// service, the timer and the configuration; none without a schedule.
pub fn schedule_files(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    let backup = &config.backup;
    let Some(schedule) = &backup.schedule else {
        return Ok(Vec::new());
    };
    let values = minijinja::context! {
        schedule => schedule,
        directory => backup.directory,
        key_file => backup.key_file,
        keep => backup.keep,
        binary => INSTALLED_BINARY,
        config_file => CONFIG_FILE,
    };
    let effective = toml::to_string(config).expect("the configuration serializes");
    let mut files = Vec::new();
    for name in [SERVICE, TIMER] {
        files.push((
            format!("{SYSTEMD_DIR}/{name}"),
            render::template(name, &values)?,
        ));
    }
    files.push((
        CONFIG_FILE.to_string(),
        format!("# Written by stackinstall: the configuration `stackinstall backup --scheduled` runs with.\n{effective}"),
    ));
    Ok(files)
}

/// Every file the step may have written, whatever the schedule now says.
fn all_paths() -> [String; 3] {
    [
        format!("{SYSTEMD_DIR}/{SERVICE}"),
        format!("{SYSTEMD_DIR}/{TIMER}"),
        CONFIG_FILE.to_string(),
    ]
}

impl Step for Backups {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        for (path, contents) in schedule_files(&context.config).map_err(super::template_bug)? {
            fingerprint.add(&path, contents);
        }
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        if context.config.backup.schedule.is_none() {
            let removals = removals(context)?;
            if removals.is_empty() {
                return Ok(vec![Action::check(
                    "no scheduled backups (`[backup] schedule` is unset)",
                )]);
            }
            return Ok(removals);
        }
        let mut actions = Vec::new();
        let binary = context.host.path(INSTALLED_BINARY);
        let binary_changed = !installed::is_current(&binary)?;
        if binary_changed {
            actions.push(Action::install_running_binary(context.host.reached(binary)));
        }
        let files = schedule_files(&context.config).map_err(super::template_bug)?;
        for (path, contents) in files {
            let file = context.host.locate(&path);
            if host::fs::read_optional(file.reached())?.as_deref() != Some(contents.as_str()) {
                let mode = if path == CONFIG_FILE { 0o600 } else { 0o644 };
                actions.push(Action::write(file, contents.into_bytes(), mode));
            }
        }
        let written = actions.len() > usize::from(binary_changed);
        // A timer systemd read before its file changed keeps the old
        // schedule until reloaded and restarted: recorded as pending before
        // the writes, so that a run killed in between does it next time.
        let reload = Reload::Restart(TIMER.into());
        let pending = context.facts().pending.contains(&reload);
        if written && !pending {
            actions.insert(0, Action::record(Fact::ReloadPending(reload.clone())));
        }
        if written || pending {
            actions.push(Action::run(service::daemon_reload()));
            actions.push(Action::run(service::enable_now(TIMER)));
            actions.extend(Action::change(Reread {
                command: service::restart(TIMER),
                reload,
            }));
        } else if !service::is_enabled(TIMER)? || !service::is_active(TIMER)? {
            actions.push(Action::run(service::enable_now(TIMER)));
        }
        if actions.is_empty() {
            actions.push(Action::check(format!(
                "`{TIMER}` backs the host up at `{}`, keeping the newest {}",
                context
                    .config
                    .backup
                    .schedule
                    .as_deref()
                    .unwrap_or_default(),
                context.config.backup.keep
            )));
        }
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        if context.config.backup.schedule.is_none() {
            return match removals(context)?.is_empty() {
                true => Ok(()),
                false => Err(StepError::failed(
                    format!("`{TIMER}` or its files are still there"),
                    "run `stackinstall install --redo backups`",
                )),
            };
        }
        if !service::is_enabled(TIMER)? || !service::is_active(TIMER)? {
            return Err(StepError::failed(
                format!("the backup timer `{TIMER}` is not enabled and running"),
                format!("run `sudo systemctl enable --now {TIMER}`"),
            ));
        }
        Ok(())
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = removals(context)?;
        let directory = &context.config.backup.directory;
        if host::fs::exists(&context.host.path(directory)) {
            actions.push(Action::check(format!(
                "the backups in `{directory}` are kept: remove them by hand when you no longer need them"
            )));
        }
        Ok(actions)
    }
}

/// Stops and disables the timer, removes the files that are there, and
/// makes systemd forget the units; nothing when none is there.
fn removals(context: &Context) -> Result<Vec<Action>, StepError> {
    let present: Vec<(PathBuf, String)> = all_paths()
        .into_iter()
        .map(|path| (context.host.path(&path), path))
        .filter(|(host_path, _)| host::fs::exists(host_path))
        .collect();
    if present.is_empty() {
        return Ok(Vec::new());
    }
    let mut actions = Vec::new();
    if present.iter().any(|(_, path)| path.ends_with(TIMER)) {
        actions.push(Action::run(service::disable_now(TIMER)));
    }
    for (host_path, _) in present {
        actions.push(Action::remove(context.host.reached(host_path)));
    }
    actions.push(Action::run(service::daemon_reload()));
    Ok(actions)
}

/// Before anything changes, with a schedule: the key file the timer's
/// backups are encrypted to is there and root's alone (a scheduled backup
/// that cannot run would fail every night, unseen).
fn preflight(context: &Context) -> Result<Option<Action>, StepError> {
    let backup = &context.config.backup;
    let (Some(schedule), Some(key_file)) = (&backup.schedule, &backup.key_file) else {
        return Ok(None);
    };
    if !context.included.contains(&StepId::Backups) {
        return Ok(None);
    }
    let hint = format!(
        "make it with `age-keygen -o {key_file}` and `chmod 600 {key_file}` (root's), or unset `[backup] schedule`"
    );
    match host::fs::mode_of(&context.host.path(key_file)) {
        None => Err(StepError::input(
            format!(
                "`[backup] key_file` `{key_file}` does not exist: the scheduled backups (`{schedule}`) could not be encrypted"
            ),
            hint,
        )),
        Some(mode) if mode & 0o077 != 0 => Err(StepError::input(
            format!(
                "`[backup] key_file` `{key_file}` is mode {mode:04o}: others may read the key of every backup (it must be 0600)"
            ),
            hint,
        )),
        Some(_) => Ok(Some(Action::check(format!(
            "scheduled backups at `{schedule}` are encrypted to `{key_file}` (root's, mode 0600)"
        )))),
    }
}

/// The service and the timer, for review (`stackinstall render`).
fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    let units = schedule_files(config)?
        .into_iter()
        .filter(|(path, _)| path.starts_with(SYSTEMD_DIR))
        .map(|(path, contents)| {
            let name = path.rsplit('/').next().unwrap_or(&path).to_string();
            (name, contents)
        });
    Ok(units.collect())
}
