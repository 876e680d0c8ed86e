//! Who manages the user and how: a configured admin account, else the user
//! itself (it has root), else, on a server without users, the localhost
//! exception; then the survey, the changes, and the application's own login.

use mongodb::Client;
use mongodb::bson::doc;

use super::SERVICE;
use super::users::{self, Change, TIMEOUT};
use crate::context::Context;
use crate::host;
use crate::secret::Secret;
use crate::state::Object;
use crate::steps::{StepError, services};

/// The localhost exception only opens to a loopback connection.
const ADMIN_ADDRESS: &str = "127.0.0.1";

pub(super) fn password(context: &Context) -> Result<Secret, StepError> {
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
pub(super) fn administrator(
    context: &Context,
    password: &Secret,
) -> Result<Option<(Client, bool)>, StepError> {
    let config = &context.config.mongodb;
    let port = config.port;
    if let Some(admin_username) = &config.admin_username {
        let (file, admin_password) = admin_password(context)?;
        let login = Some((admin_username.as_str(), &admin_password));
        let client = connect(context, ADMIN_ADDRESS, login, TIMEOUT)?;
        return match context.block_on(users::admin_command(&client, doc! { "ping": 1 }))? {
            Ok(_) => Ok(Some((client, false))),
            Err(error) if users::is_login_refused(&error) => Err(StepError::input(
                format!(
                    "the MongoDB account `{admin_username}` (`[mongodb] admin_username`) cannot log in with the password in `{file}`"
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
        ))?
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
        .block_on(async { users::client(address, port, login, timeout) })?
        .map_err(|e| server_error(context, "connect", &e))
}

/// The admin account's password file and the password in it.
fn admin_password(context: &Context) -> Result<(String, Secret), StepError> {
    let Some(file) = context.config.mongodb.admin_password_file.clone() else {
        return Err(StepError::input(
            "`[mongodb] admin_username` is set but `admin_password_file` is not",
            "set `[mongodb] admin_password_file` to a file (mode 0600) holding the account's password",
        ));
    };
    let text = host::fs::read_optional(&context.host.path(&file))?.ok_or_else(|| {
        StepError::input(
            format!("`[mongodb] admin_username` is set but its password file `{file}` does not exist"),
            "set `[mongodb] admin_password_file` to a file (mode 0600) holding the account's password",
        )
    })?;
    Ok((file, Secret::new(text.trim().to_string())))
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
    })?;
    result.map_err(|error| server_error(context, "look at the users", &error))
}

/// The plan's changes; a plan that cannot look (no credentials or server
/// yet, or not root) shows the user as to be created.
pub(super) fn planned_changes(context: &Context) -> Result<Vec<Change>, StepError> {
    let attempt = password(context).and_then(|password| survey(context, &password));
    match attempt {
        Err(_) if context.plan => Ok(vec![Change::Create]),
        other => other,
    }
}

/// Waits for mongod (just restarted?), looks again and makes the changes;
/// returns whether it made any.
pub(super) fn provision(context: &mut Context) -> Result<bool, StepError> {
    let password = password(context)?;
    let startup = std::time::Duration::from_secs(60);
    let waiting = connect(context, ADMIN_ADDRESS, None, startup)?;
    context
        .block_on(users::admin_command(&waiting, doc! { "hello": 1 }))?
        .map_err(|e| server_error(context, "reach mongod", &e))?;
    let Some((client, is_user)) = administrator(context, &password)? else {
        // Only a server without users lets this create one: when it
        // refuses, the user may be someone else's, and is not claimed.
        let user = user(context);
        let unrecorded = context.origin(&user).is_none();
        context.claim(user.clone(), false)?;
        let created = create_through_localhost_exception(context, &waiting, &password);
        if created.is_err() && unrecorded {
            context.forget(&user)?;
        }
        if created.is_ok() {
            await_first_login(context)?;
        }
        return created;
    };
    let changes = survey_with(context, &client, is_user, &password)?;
    let present = !changes.contains(&Change::Create);
    context.claim(user(context), present)?;
    let config = &context.config.mongodb;
    if changes.contains(&Change::SetPassword) {
        context.ui.warn(&format!("the password of MongoDB user `{}` was not the credentials file's (changed by hand?): setting it back", config.username));
    }
    for change in &changes {
        let command = change.command(config, &password);
        context
            .block_on(users::admin_command(&client, command))?
            .map_err(|e| server_error(context, &change.detail(config), &e))?;
    }
    Ok(!changes.is_empty())
}

/// Waits (up to 60 s) until the user just created through the localhost
/// exception logs in at the host's address: the exception closes with the
/// first user, and a server that serves it apart (the tests' stand-in
/// restarts with authorization then) may take a moment to answer again.
fn await_first_login(context: &Context) -> Result<(), StepError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match login_at_host_address(context) {
            Ok(()) => return Ok(()),
            Err(error) if std::time::Instant::now() > deadline => return Err(error),
            Err(_) => host::command::pause(std::time::Duration::from_millis(500))?,
        }
    }
}

fn create_through_localhost_exception(
    context: &Context,
    client: &Client,
    password: &Secret,
) -> Result<bool, StepError> {
    let config = &context.config.mongodb;
    let command = Change::Create.command(config, password);
    match context.block_on(users::admin_command(client, command))? {
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

/// The user, as the state records its origin.
pub(super) fn user(context: &Context) -> Object {
    Object::MongodbUser(context.config.mongodb.username.clone())
}

pub(super) fn drop_user(context: &Context) -> Result<bool, StepError> {
    let config = &context.config.mongodb;
    let Some((client, _)) = administrator(context, &password(context)?)? else {
        context.ui.warn(&format!(
            "no MongoDB account logs in to drop `{}`: left as it is",
            config.username
        ));
        return Ok(false);
    };
    context
        .block_on(users::drop_user(&client, &config.username))?
        .map_err(|e| server_error(context, "drop the user", &e))
}

/// Logs in as the application will: SCRAM-SHA-256 at the host's address,
/// with the credentials file's password, and sees its own roles.
pub(super) fn login_at_host_address(context: &Context) -> Result<(), StepError> {
    let config = &context.config.mongodb;
    let address = services::login_address(config.host.as_deref());
    let password = password(context)?;
    let who = format!("`{}` at {address}:{}", config.username, config.port);
    let login = Some((config.username.as_str(), &password));
    let roles = context.block_on(async {
        let client = users::client(&address, config.port, login, TIMEOUT)?;
        users::roles(&client, &config.username).await
    })?;
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
