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

use self::account::{drop_user, login_at_host_address, planned_changes, provision, user};
use self::users::Change as UserChange;
use super::services;
use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::{Context, Origin, kept_because};
use crate::host::{self, service};
use crate::render;
use crate::state::{Fingerprint, Object, Server};

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

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    preflight: Some(check_series),
    rendered: Some(rendered),
    server: Some(super::ServerRole {
        packages: server_packages,
        before_install,
    }),
    needs: &[StepId::Credentials, StepId::Packages],
    inputs_from: &[StepId::Credentials],
    undo_logs_in: true,
    ..StepInfo::database(StepId::Mongodb, "MongoDB server and user")
};

impl Step for Mongodb {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config =
            toml::to_string(&context.config.mongodb).expect("the mongodb section serializes");
        fingerprint.add("mongodb", config);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let config = &context.config.mongodb;
        let mut actions = Vec::new();
        let installed = services::installed(&[PACKAGE])?;
        let path = context.host.path(CONFIG_PATH);
        if !key_file_ready(context) {
            actions.extend(Action::change(MakeKeyFile {
                shown: context.shown(&key_file(context)),
            }));
        }
        let write = match config_in_place(context)? {
            true => None,
            false => Action::change(WriteConfig {
                shown: context.shown(&path),
            }),
        };
        actions.extend(services::service_actions(context, &config.service, write)?);
        let changes = match installed && service::is_active(&config.service)? {
            true => planned_changes(context)?,
            false => vec![UserChange::Create],
        };
        if changes.is_empty() {
            let fact = context.claim_of(user(context), true);
            actions.extend(fact.map(Action::record));
        }
        actions.extend(Action::change(ProvisionUser {
            planned: changes,
            config: config.clone(),
        }));
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

    /// Drops the user and removes the settings and key files the install
    /// made; puts back a settings file that was there before; stops mongod
    /// and purges its packages when the install put it there. What it found
    /// is kept, and listed.
    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let username = &context.config.mongodb.username;
        let user = format!("MongoDB user `{username}`");
        let mut actions = match kept_because(context.origin(&account::user(context)), &user) {
            Some(kept) => vec![Action::check(kept)],
            None => Action::change(DropUser {
                username: username.clone(),
            })
            .into_iter()
            .collect(),
        };
        actions.extend(config_removal(context)?);
        let key_file = key_file(context);
        let shown = context.shown(&key_file);
        match kept_because(
            context.origin(&Object::MongodbKeyFile),
            &format!("`{}`", shown.display()),
        ) {
            Some(kept) if key_file.exists() => actions.push(Action::check(kept)),
            None if key_file.exists() => {
                actions.push(Action::remove(context.host.reached(key_file)))
            }
            _ => {}
        }
        let unit = context.config.mongodb.service.clone();
        actions.extend(services::purge_actions(
            context,
            Server::Mongodb,
            &[PACKAGE],
            &unit,
        )?);
        if context.facts().mongodb.installed_by_us() {
            actions.extend(repository::removals(context));
        }
        Ok(actions)
    }
}

fn rendered(config: &crate::config::Config) -> Result<Vec<(String, String)>, render::RenderError> {
    Ok(vec![("mongodb.conf".into(), render_config(config)?)])
}

fn server_packages(_context: &Context) -> Result<services::ServerPackages, StepError> {
    Ok(services::ServerPackages {
        server: Server::Mongodb,
        names: vec![PACKAGE.into()],
    })
}

/// mongodb-org comes from MongoDB's repository: its key and source list.
fn before_install(context: &Context) -> Result<Vec<Action>, StepError> {
    repository::actions(context)
}

/// Whether `/etc/mongod.conf` is the one the profile renders.
fn config_in_place(context: &Context) -> Result<bool, StepError> {
    let text = render_config(&context.config)?;
    let current = host::fs::read_optional(&context.host.path(CONFIG_PATH))?;
    Ok(current.as_deref() == Some(text.as_str()))
}

/// Writes `/etc/mongod.conf`; one there before the install is first copied
/// to the backup (once, before it is replaced, and recorded as found).
struct WriteConfig {
    shown: PathBuf,
}

impl Change for WriteConfig {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "write {} (mode 0644; one that was there before the install is first copied to {CONFIG_BACKUP}, and uninstall puts it back)",
            self.shown.display()
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let path = context.host.path(CONFIG_PATH);
        let current = host::fs::read_optional(&path)?;
        let first_look =
            context.origin(&Object::MongodbConfig).is_none() && !context.was_done(StepId::Mongodb);
        if let Some(current) = current.as_ref().filter(|_| first_look) {
            let mode = host::fs::mode_of(&path).unwrap_or(0o644);
            host::fs::write_atomic(&context.host.path(CONFIG_BACKUP), current.as_bytes(), mode)?;
        }
        context.claim(Object::MongodbConfig, current.is_some())?;
        let text = render_config(&context.config)?;
        Ok(host::fs::ensure_file(&path, text.as_bytes(), 0o644)?)
    }
}

/// Makes the key file once, then keeps its mode and owner.
struct MakeKeyFile {
    shown: PathBuf,
}

impl Change for MakeKeyFile {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "make {} ({KEY_FILE_BYTES} random bytes in base64, mode {KEY_FILE_MODE:04o}, owner {OWNER})",
            self.shown.display()
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        make_key_file(context)
    }
}

/// Creates the user, sets its password back or grants the roles it lacks,
/// through the account that may manage users. mongod may just have been
/// started: the server is looked at again once it answers, and what that
/// look finds is done (the plan shows what the first look found).
struct ProvisionUser {
    planned: Vec<UserChange>,
    config: crate::config::Mongodb,
}

impl Change for ProvisionUser {
    fn kind(&self) -> ActionKind {
        ActionKind::Database
    }

    fn lines(&self) -> Vec<String> {
        (self.planned.iter())
            .map(|change| change.detail(&self.config))
            .collect()
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        provision(context)
    }
}

/// Drops the user the install made.
struct DropUser {
    username: String,
}

impl Change for DropUser {
    fn kind(&self) -> ActionKind {
        ActionKind::Database
    }

    fn lines(&self) -> Vec<String> {
        vec![format!("dropUser {}", self.username)]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        drop_user(context)
    }
}

/// What uninstall does with `/etc/mongod.conf`: removes the one the install
/// made, puts back the one it found (from the backup).
fn config_removal(context: &Context) -> Result<Vec<Action>, StepError> {
    let path = context.host.path(CONFIG_PATH);
    let shown = context.shown(&path);
    let backup = context.host.path(CONFIG_BACKUP);
    let what = format!("`{}`", shown.display());
    match context.origin(&Object::MongodbConfig) {
        Some(Origin::Created) if path.exists() => {
            Ok(vec![Action::remove(context.host.reached(path))])
        }
        Some(Origin::Created) => Ok(Vec::new()),
        Some(Origin::Found) => match host::fs::read_optional(&backup)? {
            Some(original) => {
                let mode = host::fs::mode_of(&backup).unwrap_or(0o644);
                let restore =
                    Action::write(context.host.reached(path), original.into_bytes(), mode);
                Ok(vec![restore, Action::remove(context.host.reached(backup))])
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

/// A pinned MongoDB series without packages for the host stops here,
/// before anything changes, rather than in `apt-get`.
fn check_series(context: &Context) -> Result<Option<Action>, StepError> {
    if context.config.install.skip_db {
        return Ok(None);
    }
    let series = repository::series(context)?;
    let (os, codename) = repository::host_release(context);
    let how = match context.config.mongodb.version {
        None => "chosen for the host",
        Some(_) => "pinned by the profile",
    };
    Ok(Some(Action::check(format!(
        "MongoDB {series} ({how}) has packages for {os} `{codename}`"
    ))))
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
    context.claim(Object::MongodbKeyFile, existing.is_some())?;
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

/// A client that may read every database (for a backup or a restore): the
/// configured admin account, else the user itself (it has root).
pub(crate) fn administrator_client(context: &Context) -> Result<mongodb::Client, StepError> {
    let password = account::password(context)?;
    match account::administrator(context, &password)? {
        Some((client, _)) => Ok(client),
        None => Err(StepError::failed(
            format!(
                "the MongoDB user `{}` cannot log in with the credentials file's password",
                context.config.mongodb.username
            ),
            "run `stackinstall install --only mongodb` to set it back, or set `[mongodb] admin_username`",
        )),
    }
}
