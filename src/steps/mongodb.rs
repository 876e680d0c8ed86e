//! MongoDB: names mongodb-org and MongoDB's own apt repository (its signing
//! key and a source list for the host's release, added only while the
//! package is missing) to the `packages` step, which installs it; writes `/etc/mongod.conf` from the template
//! (restarting mongod only when it changed), makes the key file once (756
//! random bytes in base64, mode 0600, owner mongodb) and keeps the user
//! `stackbill` with the profile's roles and the credentials file's password.
//! The seed calls the key file "for encryption at rest", but mongod's
//! `security.keyFile` is replica-set member authentication, and encryption at
//! rest is an Enterprise feature; the seed's mongod.conf does not reference
//! the file, so neither does ours: it is kept for the day a replica set needs it.
//!
//! Users are managed by a configured admin account (`[mongodb]
//! admin_username`, password in a 0600 file), else by `stackbill` itself (it
//! has root), else, on a server without users, through the localhost
//! exception. Done when the file and key file are as they should be, the user
//! has its roles and logs in with SCRAM-SHA-256 at the host's address. A
//! password changed behind our back is set back, and the run says so.
//! Whether the server was there before is recorded (`mongodb.preexisting`),
//! and per object whether the install created it (`mongodb.user.NAME`,
//! `mongodb.config`, `mongodb.key-file`): uninstall drops and removes only
//! those, puts a settings file it found back from
//! `/etc/mongod.conf.stackinstall-backup`, and stops and purges mongod
//! (every `mongodb-org*` package) only when it installed it.

mod account;
pub mod repository;
pub(crate) mod users;

use std::path::PathBuf;

use base64::Engine;
use rand::RngCore;

use self::account::{drop_user, login_at_host_address, planned_changes, provision, user_key};
use self::users::Change;
use super::services;
use super::{Action, ActionKind, Group, Step, StepError};
use crate::context::{Context, Origin, kept_because};
use crate::host::{self, service};
use crate::render;
use crate::state::Fingerprint;

/// The mongodb step.
pub struct Mongodb;

const SERVICE: &str = "mongodb";
const PACKAGE: &str = "mongodb-org";
const CONFIG_PATH: &str = "/etc/mongod.conf";
const KEY_FILE_BYTES: usize = 756;
const KEY_FILE_MODE: u32 = 0o600;
const OWNER: &str = "mongodb";
/// Where a `/etc/mongod.conf` that was there before the install is kept.
const CONFIG_BACKUP: &str = "/etc/mongod.conf.stackinstall-backup";
const CONFIG_KEY: &str = "mongodb.config";
const KEY_FILE_KEY: &str = "mongodb.key-file";

impl Step for Mongodb {
    fn id(&self) -> &'static str {
        "mongodb"
    }

    fn title(&self) -> &'static str {
        "MongoDB server and user"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["credentials", "packages"]
    }

    fn group(&self) -> Group {
        Group::Database
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["credentials"]
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config =
            toml::to_string(&context.config.mongodb).expect("the mongodb section serializes");
        fingerprint.add("mongodb", config);
        Ok(())
    }

    fn rendered(
        &self,
        config: &crate::config::Config,
    ) -> Result<Vec<(String, String)>, render::RenderError> {
        Ok(vec![("mongodb.conf".into(), render_config(config)?)])
    }

    fn packages(&self, _context: &Context) -> Result<Option<services::ServerPackages>, StepError> {
        Ok(Some(services::ServerPackages {
            service: SERVICE,
            names: vec![PACKAGE.into()],
        }))
    }

    /// mongodb-org comes from MongoDB's repository: its key and source list.
    fn before_install(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        repository::actions(context)
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let config = &context.config.mongodb;
        let mut actions = Vec::new();
        let installed = services::installed(&[PACKAGE])?;
        let path = context.host.path(CONFIG_PATH);
        let changed = !config_in_place(context)?;
        if changed {
            let detail = format!(
                "write {} (mode 0644; one that was there before the install is first copied to {CONFIG_BACKUP}, and uninstall puts it back)",
                context.shown(&path).display()
            );
            actions.push(Action::call(ActionKind::File, detail, write_config));
        }
        if !key_file_ready(context) {
            let detail = format!(
                "make {} ({KEY_FILE_BYTES} random bytes in base64, mode 0600, owner {OWNER})",
                context.shown(&key_file(context)).display()
            );
            actions.push(Action::call(ActionKind::File, detail, make_key_file));
        }
        actions.extend(services::service_actions(&config.service, changed)?);
        let changes = match installed && service::is_active(&config.service)? {
            true => planned_changes(context)?,
            false => vec![Change::Create],
        };
        if changes.is_empty()
            && !context.was_done(SERVICE)
            && context.origin(&user_key(context)).is_none()
        {
            let detail = format!(
                "record in the state that the user `{}` was there before the install (uninstall keeps it)",
                config.username
            );
            actions.push(Action::call(ActionKind::Check, detail, provision));
        }
        let lines = changes.iter().map(|change| change.detail(config)).collect();
        actions.extend(Action::call_lines(ActionKind::Database, lines, provision));
        Ok(actions)
    }

    /// The settings and key files as the step leaves them, and the user's
    /// own login with its roles (no survey through an admin account).
    fn verify(&self, context: &Context) -> Result<(), StepError> {
        if !config_in_place(context)? || !key_file_ready(context) {
            return Err(StepError::failed(
                format!(
                    "`{CONFIG_PATH}` or the key file `{}` is not as the step left it",
                    context.config.mongodb.key_file
                ),
                "run `stackinstall install --redo mongodb`",
            ));
        }
        services::check_running(context, &context.config.mongodb.service)?;
        login_at_host_address(context)
    }

    fn undo_needs_credentials(&self) -> bool {
        true
    }

    /// Drops the user and removes the settings and key files the install
    /// made; puts back a settings file that was there before; stops mongod
    /// and purges its packages when the install put it there. What it found
    /// is kept, and listed.
    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let username = &context.config.mongodb.username;
        let user = format!("MongoDB user `{username}`");
        let mut actions = match kept_because(context.origin(&user_key(context)), &user) {
            Some(kept) => vec![Action::check(kept)],
            None => vec![Action::call(
                ActionKind::Database,
                format!("dropUser {username}"),
                |context| drop_user(context),
            )],
        };
        actions.extend(config_removal(context)?);
        let key_file = key_file(context);
        let shown = context.shown(&key_file);
        match kept_because(
            context.origin(KEY_FILE_KEY),
            &format!("`{}`", shown.display()),
        ) {
            Some(kept) if key_file.exists() => actions.push(Action::check(kept)),
            None if key_file.exists() => actions.push(Action::remove(key_file, &shown)),
            _ => {}
        }
        let unit = context.config.mongodb.service.clone();
        actions.extend(services::purge_actions(
            context,
            SERVICE,
            &[PACKAGE],
            &unit,
        )?);
        if context.fact(&services::preexisting_key(SERVICE)) == Some("false") {
            actions.extend(repository::removals(context));
        }
        Ok(actions)
    }
}

/// Whether `/etc/mongod.conf` is the one the profile renders.
fn config_in_place(context: &Context) -> Result<bool, StepError> {
    let text = render_config(&context.config)?;
    let current = host::fs::read_optional(&context.host.path(CONFIG_PATH))?;
    Ok(current.as_deref() == Some(text.as_str()))
}

/// Writes `/etc/mongod.conf`; one there before the install is first copied
/// to the backup (once, before it is replaced, and recorded as found).
fn write_config(context: &mut Context) -> Result<bool, StepError> {
    let path = context.host.path(CONFIG_PATH);
    let current = host::fs::read_optional(&path)?;
    let first_look = context.origin(CONFIG_KEY).is_none() && !context.was_done(SERVICE);
    if let Some(current) = current.as_ref().filter(|_| first_look) {
        let mode = host::fs::mode_of(&path).unwrap_or(0o644);
        host::fs::write_atomic(&context.host.path(CONFIG_BACKUP), current.as_bytes(), mode)?;
    }
    context.claim(SERVICE, CONFIG_KEY, current.is_some())?;
    let text = render_config(&context.config)?;
    Ok(host::fs::ensure_file(&path, text.as_bytes(), 0o644)?)
}

/// What uninstall does with `/etc/mongod.conf`: removes the one the install
/// made, puts back the one it found (from the backup).
fn config_removal(context: &Context) -> Result<Vec<Action>, StepError> {
    let path = context.host.path(CONFIG_PATH);
    let shown = context.shown(&path);
    let backup = context.host.path(CONFIG_BACKUP);
    let what = format!("`{}`", shown.display());
    match context.origin(CONFIG_KEY) {
        Some(Origin::Created) if path.exists() => Ok(vec![Action::remove(path, &shown)]),
        Some(Origin::Created) => Ok(Vec::new()),
        Some(Origin::Found) => match host::fs::read_optional(&backup)? {
            Some(original) => {
                let mode = host::fs::mode_of(&backup).unwrap_or(0o644);
                let detail = format!("put back {} as it was before the install", shown.display());
                let restore = Action::call(ActionKind::File, detail, move |_| {
                    Ok(host::fs::ensure_file(&path, original.as_bytes(), mode)?)
                });
                let shown_backup = context.shown(&backup);
                Ok(vec![restore, Action::remove(backup, &shown_backup)])
            }
            None => Ok(vec![Action::check(format!(
                "{what} (was there before the install)"
            ))]),
        },
        None => Ok(kept_because(None, &what)
            .map(Action::check)
            .into_iter()
            .collect()),
    }
}

/// `/etc/mongod.conf` of `config`, from `templates/mongod.conf`.
pub fn render_config(config: &crate::config::Config) -> Result<String, render::RenderError> {
    let mongodb = &config.mongodb;
    render::template(
        "mongod.conf",
        minijinja::context! { profile => config.name, port => mongodb.port, bind_ip => mongodb.bind_ip },
    )
}

fn key_file(context: &Context) -> PathBuf {
    context.host.path(&context.config.mongodb.key_file)
}

/// The uid and gid of the `mongodb` user (made by the package).
fn owner(context: &Context) -> Option<(u32, u32)> {
    let id = |file: &str| host::system::id_in(&context.host.path(file), OWNER);
    Some((id("/etc/passwd")?, id("/etc/group")?))
}

fn key_file_ready(context: &Context) -> bool {
    let path = key_file(context);
    let owned = owner(context).is_some_and(|owner| host::fs::owner_of(&path) == Some(owner));
    owned && host::fs::mode_of(&path) == Some(KEY_FILE_MODE)
}

/// Makes the key file once, then keeps its mode and owner; returns whether
/// it changed anything. An existing key is never replaced. Its directory
/// belongs to `mongodb`, so the file is read without following a link and
/// written with owner and mode set on the new file's descriptor.
fn make_key_file(context: &mut Context) -> Result<bool, StepError> {
    let path = key_file(context);
    let (uid, gid) = owner(context).ok_or_else(|| {
        StepError::failed(
            format!("there is no `{OWNER}` user and group to own `{}`", context.shown(&path).display()),
            "the mongodb-org package creates them: check `dpkg -s mongodb-org` and `id mongodb`, then run again",
        )
    })?;
    let existing = host::fs::read_own_optional(&path)?;
    context.claim(SERVICE, KEY_FILE_KEY, existing.is_some())?;
    let contents = match existing {
        Some(existing) => existing.into_bytes(),
        None => {
            let mut random = vec![0u8; KEY_FILE_BYTES];
            rand::rng().fill_bytes(&mut random);
            let text = base64::engine::general_purpose::STANDARD.encode(random);
            format!("{text}\n").into_bytes()
        }
    };
    Ok(host::fs::ensure_file_owned(
        &path,
        &contents,
        KEY_FILE_MODE,
        Some((uid, gid)),
    )?)
}
