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

mod repository;
mod users;

use std::path::PathBuf;

use base64::Engine;
use mongodb::Client;
use mongodb::bson::doc;
use rand::RngCore;

use self::users::{Change, TIMEOUT};
use super::services;
use super::{Action, ActionKind, Group, Step, StepError};
use crate::context::Context;
use crate::host::{self, service};
use crate::render;
use crate::secrets::Secret;
use crate::state::Fingerprint;

/// The mongodb step.
pub struct Mongodb;

const SERVICE: &str = "mongodb";
const PACKAGE: &str = "mongodb-org";
const CONFIG_PATH: &str = "/etc/mongod.conf";
const KEY_FILE_BYTES: usize = 756;
const KEY_FILE_MODE: u32 = 0o600;
const OWNER: &str = "mongodb";
/// The localhost exception only opens to a loopback connection.
const ADMIN_ADDRESS: &str = "127.0.0.1";
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
        let left: Vec<String> = self
            .look(context)?
            .into_iter()
            .filter(|action| action.changes_host())
            .map(|action| action.detail)
            .collect();
        if !left.is_empty() {
            return Err(StepError::failed(
                format!(
                    "MongoDB is not as the step left it: still to do: {}",
                    left.join("; ")
                ),
                "run `stackinstall install --redo mongodb`",
            ));
        }
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
    use std::os::unix::fs::MetadataExt;
    let path = key_file(context);
    let owned = std::fs::metadata(&path)
        .is_ok_and(|metadata| Some((metadata.uid(), metadata.gid())) == owner(context));
    owned && host::fs::mode_of(&path) == Some(KEY_FILE_MODE)
}

/// Makes the key file once, then keeps its mode and owner; returns whether
/// it changed anything. An existing key is never replaced.
fn make_key_file(context: &Context) -> Result<bool, StepError> {
    let path = key_file(context);
    let (uid, gid) = owner(context).ok_or_else(|| {
        StepError::failed(
            format!("there is no `{OWNER}` user and group to own `{}`", context.shown(&path).display()),
            "the mongodb-org package creates them: check `dpkg -s mongodb-org` and `id mongodb`, then run again",
        )
    })?;
    let contents = match host::fs::read_optional(&path)? {
        Some(existing) => existing.into_bytes(),
        None => {
            let mut random = vec![0u8; KEY_FILE_BYTES];
            rand::rng().fill_bytes(&mut random);
            let text = base64::engine::general_purpose::STANDARD.encode(random);
            format!("{text}\n").into_bytes()
        }
    };
    let written = host::fs::ensure_file(&path, &contents, KEY_FILE_MODE)?;
    Ok(host::fs::ensure_owner(&path, uid, gid)? || written)
}

fn password(context: &Context) -> Result<Secret, StepError> {
    let account = context.credentials()?.account(SERVICE).ok_or_else(|| {
        StepError::failed(
            "the credentials file has no password for `mongodb`",
            "run `stackinstall install --only credentials` to add it",
        )
    })?;
    Ok(account.password.clone())
}

fn server_error(context: &Context, doing: &str, error: &mongodb::error::Error) -> StepError {
    StepError::failed(
        format!(
            "cannot {doing} on MongoDB at {ADMIN_ADDRESS}:{}: {error}",
            context.config.mongodb.port
        ),
        "check that mongod runs (`systemctl status mongod`, `journalctl -u mongod`), then run again",
    )
}

/// A client that may manage users, and whether it is the user itself:
/// the configured admin account, else the user (it has root), else `None`
/// (only the localhost exception is left).
fn administrator(
    context: &Context,
    password: &Secret,
) -> Result<Option<(Client, bool)>, StepError> {
    let config = &context.config.mongodb;
    let port = config.port;
    if !config.admin_username.is_empty() {
        let admin_password = admin_password(context)?;
        let login = Some((config.admin_username.as_str(), &admin_password));
        let client = connect(context, ADMIN_ADDRESS, login, TIMEOUT)?;
        return match context.block_on(users::admin_command(&client, doc! { "ping": 1 })) {
            Ok(_) => Ok(Some((client, false))),
            Err(error) if users::is_login_refused(&error) => Err(StepError::input(
                format!(
                    "the MongoDB account `{}` (`[mongodb] admin_username`) cannot log in with the password in `{}`",
                    config.admin_username, config.admin_password_file
                ),
                "fix the account or the file (one line, the password), then run again",
            )),
            Err(error) => Err(server_error(context, "log in", &error)),
        };
    }
    let user_logs_in = context
        .block_on(users::logs_in(
            ADMIN_ADDRESS,
            port,
            &config.username,
            password,
        ))
        .map_err(|e| server_error(context, "log in", &e))?;
    if !user_logs_in {
        return Ok(None);
    }
    let login = Some((config.username.as_str(), password));
    Ok(Some((
        connect(context, ADMIN_ADDRESS, login, TIMEOUT)?,
        true,
    )))
}

/// A client (made inside the runtime, which runs its monitors).
fn connect(
    context: &Context,
    address: &str,
    login: Option<(&str, &Secret)>,
    timeout: std::time::Duration,
) -> Result<Client, StepError> {
    let port = context.config.mongodb.port;
    context
        .block_on(async { users::client(address, port, login, timeout) })
        .map_err(|e| server_error(context, "connect", &e))
}

fn admin_password(context: &Context) -> Result<Secret, StepError> {
    let file = &context.config.mongodb.admin_password_file;
    let text = host::fs::read_optional(&context.host.path(file))?.ok_or_else(|| {
        StepError::input(
            format!("`[mongodb] admin_username` is set but its password file `{file}` does not exist"),
            "set `[mongodb] admin_password_file` to a file (mode 0600) holding the account's password",
        )
    })?;
    Ok(Secret::new(text.trim().to_string()))
}

/// What the user lacks, as far as the server lets us look: with no account
/// that logs in, a user to create (through the localhost exception).
fn survey(context: &Context, password: &Secret) -> Result<Vec<Change>, StepError> {
    match administrator(context, password)? {
        Some((client, is_user)) => survey_with(context, &client, is_user, password),
        None => Ok(vec![Change::Create]),
    }
}

/// What the user lacks, seen through `client` (`is_user`: logged in as it).
fn survey_with(
    context: &Context,
    client: &Client,
    is_user: bool,
    password: &Secret,
) -> Result<Vec<Change>, StepError> {
    let config = &context.config.mongodb;
    let result = context.block_on(async {
        let roles = users::roles(client, &config.username).await?;
        let matches = match (&roles, is_user) {
            (None, _) => false,
            (Some(_), true) => true,
            (Some(_), false) => {
                users::logs_in(ADMIN_ADDRESS, config.port, &config.username, password).await?
            }
        };
        Ok(users::changes(config, roles.as_deref(), matches))
    });
    result.map_err(|error| server_error(context, "look at the users", &error))
}

/// The plan's changes; a plan that cannot look (no credentials or server
/// yet, or not root) shows the user as to be created.
fn planned_changes(context: &Context) -> Result<Vec<Change>, StepError> {
    let attempt = password(context).and_then(|password| survey(context, &password));
    match attempt {
        Err(_) if context.plan => Ok(vec![Change::Create]),
        other => other,
    }
}

/// Waits for mongod (just restarted?), looks again and makes the changes;
/// returns whether it made any.
fn provision(context: &Context) -> Result<bool, StepError> {
    let config = &context.config.mongodb;
    let password = password(context)?;
    let startup = std::time::Duration::from_secs(60);
    let waiting = connect(context, ADMIN_ADDRESS, None, startup)?;
    context
        .block_on(users::admin_command(&waiting, doc! { "hello": 1 }))
        .map_err(|e| server_error(context, "reach mongod", &e))?;
    let Some((client, is_user)) = administrator(context, &password)? else {
        return create_through_localhost_exception(context, &waiting, &password);
    };
    let changes = survey_with(context, &client, is_user, &password)?;
    if changes.contains(&Change::SetPassword) {
        context.ui.warn(&format!("the password of MongoDB user `{}` was not the credentials file's (changed by hand?): setting it back", config.username));
    }
    for change in &changes {
        let command = change.command(config, &password);
        context
            .block_on(users::admin_command(&client, command))
            .map_err(|e| server_error(context, &change.detail(config), &e))?;
    }
    Ok(!changes.is_empty())
}

fn create_through_localhost_exception(
    context: &Context,
    client: &Client,
    password: &Secret,
) -> Result<bool, StepError> {
    let config = &context.config.mongodb;
    let command = Change::Create.command(config, password);
    match context.block_on(users::admin_command(client, command)) {
        Ok(_) => Ok(true),
        Err(error) if users::code(&error) == Some(users::UNAUTHORIZED) => Err(StepError::failed(
            format!(
                "MongoDB already has users, and `{}` does not log in with the credentials file's password: no account can create or repair it",
                config.username
            ),
            "set `[mongodb] admin_username` and `admin_password_file` (mode 0600) to an account with the root or userAdminAnyDatabase role, then run again",
        )),
        Err(error) => Err(server_error(
            context,
            "create the user through the localhost exception",
            &error,
        )),
    }
}

fn drop_user(context: &Context) -> Result<bool, StepError> {
    let config = &context.config.mongodb;
    let Some((client, _)) = administrator(context, &password(context)?)? else {
        context.ui.warn(&format!(
            "no MongoDB account logs in to drop `{}`: left as it is",
            config.username
        ));
        return Ok(false);
    };
    context
        .block_on(users::drop_user(&client, &config.username))
        .map_err(|e| server_error(context, "drop the user", &e))
}

/// Logs in as the application will: SCRAM-SHA-256 at the host's address,
/// with the credentials file's password, and sees its own roles.
fn login_at_host_address(context: &Context) -> Result<(), StepError> {
    let config = &context.config.mongodb;
    let address = services::login_address(&config.host);
    let password = password(context)?;
    let who = format!("`{}` at {address}:{}", config.username, config.port);
    let login = Some((config.username.as_str(), &password));
    let roles = context.block_on(async {
        let client = users::client(&address, config.port, login, TIMEOUT)?;
        users::roles(&client, &config.username).await
    });
    let roles = roles.map_err(|error| {
        StepError::failed(
            format!("{who} cannot log in to MongoDB (SCRAM-SHA-256) with the credentials file's password: {error}"),
            "check `net.bindIp` in `/etc/mongod.conf` and the host firewall, then `stackinstall install --redo mongodb`",
        )
    })?;
    let missing = users::changes(config, roles.as_deref(), true);
    if !missing.is_empty() {
        return Err(StepError::failed(
            format!(
                "{who} logs in but lacks some of its roles ({})",
                missing[0].detail(config)
            ),
            "run `stackinstall install --redo mongodb`",
        ));
    }
    Ok(())
}
