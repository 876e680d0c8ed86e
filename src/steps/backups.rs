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
//! after systemd reloads them (pending in the state until it is; the same
//! code as the ECR renewal's timer, `services::own_unit_actions`). Without
//! a schedule the step removes a timer an earlier install set up.
//! Uninstall stops and disables the timer and removes its files; the
//! archives are kept.

use super::{Action, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::Context;
use crate::host::backup::KeyFileError;
use crate::host::{self, service};
use crate::render::RenderError;
use crate::state::Fingerprint;
use crate::steps::services::{self, OwnTimer, UnitFile};

/// The backups step.
pub struct Backups;

/// The timer that runs the scheduled backup.
pub const TIMER: &str = "stackinstall-backup.timer";
/// The configuration the scheduled backup runs with.
pub const CONFIG_FILE: &str = "/etc/stackinstall/backup.toml";

/// The timer, its service and the configuration they run with (root's
/// alone: it names the key file and the databases).
const OWN_TIMER: OwnTimer = OwnTimer {
    unit: TIMER,
    runs: "stackinstall backup --scheduled",
    config_file: CONFIG_FILE,
    config_mode: 0o600,
};

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    rendered: Some(rendered),
    preflight: Some(preflight),
    needs: &[StepId::Wait],
    ..StepInfo::new(StepId::Backups, "Schedule backups")
};

/// The scheduled backup's files: the service, the timer and the
/// configuration; none without a schedule.
fn schedule_files(config: &Config) -> Result<Vec<UnitFile>, RenderError> {
    let backup = &config.backup;
    let Some(schedule) = &backup.schedule else {
        return Ok(Vec::new());
    };
    let values = minijinja::context! {
        schedule => schedule,
        directory => backup.directory,
        key_file => backup.key_file,
        keep => backup.keep,
    };
    OWN_TIMER.files(config, values)
}

impl Step for Backups {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        for file in schedule_files(&context.config).map_err(super::template_bug)? {
            fingerprint.add(&file.path, file.contents);
        }
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        if context.config.backup.schedule.is_none() {
            let removals = removals(context);
            if removals.is_empty() {
                return Ok(vec![Action::check(
                    "no scheduled backups (`[backup] schedule` is unset)",
                )]);
            }
            return Ok(removals);
        }
        let mut actions: Vec<Action> = services::installed_binary_action(context)?
            .into_iter()
            .collect();
        let files = schedule_files(&context.config).map_err(super::template_bug)?;
        actions.extend(services::own_unit_actions(context, TIMER, files)?);
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
            return match removals(context).is_empty() {
                true => Ok(()),
                false => Err(StepError::failed(
                    format!("`{TIMER}` or its files are still there"),
                    "run `stackinstall install --redo backups`",
                )),
            };
        }
        services::check_restarted(context, TIMER)?;
        if !service::is_enabled(TIMER)? || !service::is_active(TIMER)? {
            return Err(StepError::failed(
                format!("the backup timer `{TIMER}` is not enabled and running"),
                format!("run `sudo systemctl enable --now {TIMER}`"),
            ));
        }
        Ok(())
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = removals(context);
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
fn removals(context: &Context) -> Vec<Action> {
    services::own_unit_removals(context, TIMER, &OWN_TIMER.paths())
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
        "make it with `age-keygen -o {key_file}`, then `chown root:root {key_file}` and `chmod 600 {key_file}`; or unset `[backup] schedule`"
    );
    match host::backup::check_key_file(&context.host.path(key_file)) {
        Err(KeyFileError::Missing) => Err(StepError::input(
            format!(
                "`[backup] key_file` `{key_file}` does not exist: the scheduled backups (`{schedule}`) could not be encrypted"
            ),
            hint,
        )),
        // In the words `stackinstall backup` refuses it with.
        Err(why) => Err(StepError::input(
            format!(
                "`[backup] key_file` `{key_file}` cannot be used: {why}: the scheduled backups (`{schedule}`) would fail"
            ),
            hint,
        )),
        Ok(()) => Ok(Some(Action::check(format!(
            "scheduled backups at `{schedule}` are encrypted to `{key_file}` (root's, mode 0600)"
        )))),
    }
}

/// The service and the timer, for review (`stackinstall render`).
fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    let mut units = schedule_files(config)?;
    units.retain(|file| services::is_unit_file(&file.path));
    Ok(services::by_file_name(units))
}
