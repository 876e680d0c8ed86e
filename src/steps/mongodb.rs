//! MongoDB: installs mongodb-org from MongoDB's own apt repository (its
//! signing key and a source list for the host's release, added only when
//! the package is missing), writes `/etc/mongod.conf` from the template
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
//! Whether the server was there before is recorded (`mongodb.preexisting`);
//! uninstall drops the user, and removes the two files only when it was not.

mod account;
pub mod repository;
pub(crate) mod users;

use std::path::PathBuf;

use base64::Engine;
use rand::RngCore;

use self::account::{drop_user, login_at_host_address, planned_changes, provision};
use self::users::Change;
use super::services;
use super::{Action, ActionKind, Group, Step, StepError};
use crate::context::Context;
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
const MAKE_KEY_FILE: &str = "make-key-file";
const CHANGE_USER: &str = "change-user";
const DROP_USER: &str = "drop-user";

impl Step for Mongodb {
    fn id(&self) -> &'static str {
        "mongodb"
    }

    fn title(&self) -> &'static str {
        "MongoDB server and user"
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

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let config = &context.config.mongodb;
        let mut actions = services::package_actions(context, SERVICE, &[PACKAGE])?;
        let install = actions.iter().position(|a| a.kind == ActionKind::Package);
        if let Some(at) = install {
            actions.splice(at..at, repository::actions(context)?);
        }
        let path = context.host.path(CONFIG_PATH);
        let text = render_config(&context.config)?;
        let changed = host::fs::read_optional(&path)?.as_deref() != Some(text.as_str());
        if changed {
            let shown = context.shown(&path);
            actions.push(Action::write(path, &shown, text.into_bytes(), 0o644));
        }
        if !key_file_ready(context) {
            let detail = format!(
                "make {} ({KEY_FILE_BYTES} random bytes in base64, mode 0600, owner {OWNER})",
                context.shown(&key_file(context)).display()
            );
            actions.push(Action::custom(ActionKind::File, MAKE_KEY_FILE, detail));
        }
        actions.extend(services::service_action(&config.service, changed)?);
        let changes = match install.is_none() && service::is_active(&config.service)? {
            true => planned_changes(context)?,
            false => vec![Change::Create],
        };
        for change in changes {
            let detail = change.detail(config);
            actions.push(Action::custom(ActionKind::Database, CHANGE_USER, detail));
        }
        Ok(actions)
    }

    fn apply(&self, context: &mut Context, actions: Vec<Action>) -> Result<bool, StepError> {
        let (mut changed, mut provisioned) = (false, false);
        for action in &actions {
            changed |= match services::perform(context, SERVICE, action, &[PACKAGE])? {
                Some(result) => result,
                None => match action.tag() {
                    Some(repository::ADD_KEY) => repository::add_key(context)?,
                    Some(MAKE_KEY_FILE) => make_key_file(context)?,
                    Some(DROP_USER) => drop_user(context)?,
                    _ if provisioned => false,
                    _ => {
                        provisioned = true;
                        provision(context)?
                    }
                },
            };
        }
        Ok(changed)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        super::check_nothing_left(self, context, "MongoDB")?;
        login_at_host_address(context)
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let username = &context.config.mongodb.username;
        let detail = format!("dropUser {username}");
        let mut actions = vec![Action::custom(ActionKind::Database, DROP_USER, detail)];
        if context.fact(&services::preexisting_key(SERVICE)) != Some("true") {
            for path in [context.host.path(CONFIG_PATH), key_file(context)] {
                if path.exists() {
                    actions.push(Action::remove(path.clone(), &context.shown(&path)));
                }
            }
        }
        Ok(actions)
    }

    fn apply_undo(&self, context: &mut Context, action: &Action) -> Result<bool, StepError> {
        match action.tag() {
            Some(DROP_USER) => drop_user(context),
            _ => action.perform(),
        }
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
fn make_key_file(context: &Context) -> Result<bool, StepError> {
    let path = key_file(context);
    let (uid, gid) = owner(context).ok_or_else(|| {
        StepError::failed(
            format!("there is no `{OWNER}` user and group to own `{}`", context.shown(&path).display()),
            "the mongodb-org package creates them: check `dpkg -s mongodb-org` and `id mongodb`, then run again",
        )
    })?;
    let contents = match host::fs::read_own_optional(&path)? {
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
