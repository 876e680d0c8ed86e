//! The application user through the `mongodb` crate: clients that log in
//! with SCRAM-SHA-256 (or not at all, for the localhost exception), what the
//! server holds for the user, and the commands that bring it to the profile.
//! Passwords only ever go into the driver's credential or a command body;
//! what a plan shows comes from [`Change::detail`], which masks them.

use std::time::Duration;

use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{Error, ErrorKind};
use mongodb::options::{AuthMechanism, ClientOptions, Credential, ServerAddress};

use crate::config::Mongodb as Config;
use crate::secret::Secret;

/// `Unauthorized`: what a server with users answers an unauthenticated
/// `createUser` (the localhost exception is closed).
pub const UNAUTHORIZED: i32 = 13;
const USER_NOT_FOUND: i32 = 11;
const AUTHENTICATION_FAILED: i32 = 18;
const AUTHENTICATION_DATABASE: &str = "admin";

/// A role on a database, as `usersInfo` lists it.
pub type Role = (String, String);

/// A client for `host:port`, logged in as `login` (user name and password)
/// or unauthenticated. The server is a single node, whatever it says.
pub fn client(
    host: &str,
    port: u16,
    login: Option<(&str, &Secret)>,
    timeout: Duration,
) -> Result<Client, Error> {
    let credential = login.map(|(username, password)| {
        Credential::builder()
            .username(username.to_string())
            .password(password.expose().to_string())
            .source(AUTHENTICATION_DATABASE.to_string())
            .mechanism(AuthMechanism::ScramSha256)
            .build()
    });
    let address = ServerAddress::Tcp {
        host: host.to_string(),
        port: Some(port),
    };
    let options = ClientOptions::builder()
        .hosts(vec![address])
        .direct_connection(true)
        .server_selection_timeout(timeout)
        .connect_timeout(timeout)
        .credential(credential)
        .app_name("stackinstall".to_string())
        .build();
    Client::with_options(options)
}

/// Runs `command` on the admin database.
pub async fn admin_command(client: &Client, command: Document) -> Result<Document, Error> {
    client
        .database(AUTHENTICATION_DATABASE)
        .run_command(command)
        .await
}

/// The server's error code, for a command that failed.
pub fn code(error: &Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        _ => None,
    }
}

/// Whether the server refused the login (wrong password or no such user).
pub fn is_login_refused(error: &Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Authentication { .. })
        || code(error) == Some(AUTHENTICATION_FAILED)
}

/// Whether `username` logs in with `password` (a fresh SCRAM conversation).
pub async fn logs_in(
    host: &str,
    port: u16,
    username: &str,
    password: &Secret,
) -> Result<bool, Error> {
    let client = client(host, port, Some((username, password)), TIMEOUT)?;
    let answer = admin_command(&client, doc! { "ping": 1 }).await;
    client.shutdown().await;
    match answer {
        Ok(_) => Ok(true),
        Err(error) if is_login_refused(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// How long one connection attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The roles `usersInfo` lists for `username`, or `None` without the user.
pub async fn roles(client: &Client, username: &str) -> Result<Option<Vec<Role>>, Error> {
    let command = doc! { "usersInfo": { "user": username, "db": AUTHENTICATION_DATABASE } };
    let reply = admin_command(client, command).await?;
    let Ok(users) = reply.get_array("users") else {
        return Ok(None);
    };
    let Some(Bson::Document(user)) = users.first() else {
        return Ok(None);
    };
    let roles = user
        .get_array("roles")
        .map(|roles| roles.iter().filter_map(role).collect())
        .unwrap_or_default();
    Ok(Some(roles))
}

fn role(value: &Bson) -> Option<Role> {
    let document = value.as_document()?;
    Some((
        document.get_str("role").ok()?.to_string(),
        document.get_str("db").ok()?.to_string(),
    ))
}

/// The profile's roles.
pub fn wanted_roles(config: &Config) -> Vec<Role> {
    config
        .roles
        .iter()
        .map(|role| (role.role.clone(), role.db.clone()))
        .collect()
}

/// A change to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `createUser` with the profile's roles.
    Create,
    /// `updateUser` back to the credentials file's password.
    SetPassword,
    /// `grantRolesToUser` for the roles it lacks.
    Grant(Vec<Role>),
}

impl Change {
    /// What a plan shows: never the password.
    pub fn detail(&self, config: &Config) -> String {
        let user = &config.username;
        match self {
            Self::Create => format!(
                "createUser {user} roles {} pwd ********",
                shown(&wanted_roles(config))
            ),
            Self::SetPassword => format!(
                "updateUser {user} pwd ******** (its password is not the credentials file's)"
            ),
            Self::Grant(roles) => format!("grantRolesToUser {user} roles {}", shown(roles)),
        }
    }

    /// The command, with the password where it needs one.
    pub fn command(&self, config: &Config, password: &Secret) -> Document {
        let user = config.username.as_str();
        match self {
            Self::Create => doc! {
                "createUser": user,
                "pwd": password.expose(),
                "roles": documents(&wanted_roles(config)),
            },
            Self::SetPassword => doc! { "updateUser": user, "pwd": password.expose() },
            Self::Grant(roles) => doc! { "grantRolesToUser": user, "roles": documents(roles) },
        }
    }
}

fn documents(roles: &[Role]) -> Vec<Document> {
    roles
        .iter()
        .map(|(role, db)| doc! { "role": role, "db": db })
        .collect()
}

fn shown(roles: &[Role]) -> String {
    let names: Vec<String> = roles
        .iter()
        .map(|(role, db)| format!("{role}@{db}"))
        .collect();
    format!("[{}]", names.join(", "))
}

/// The changes that bring a user with `roles` (`None`: missing) and a
/// matching password or not to the profile.
pub fn changes(config: &Config, roles: Option<&[Role]>, password_matches: bool) -> Vec<Change> {
    let Some(roles) = roles else {
        return vec![Change::Create];
    };
    let mut changes = Vec::new();
    if !password_matches {
        changes.push(Change::SetPassword);
    }
    let missing: Vec<Role> = wanted_roles(config)
        .into_iter()
        .filter(|role| !roles.contains(role))
        .collect();
    if !missing.is_empty() {
        changes.push(Change::Grant(missing));
    }
    changes
}

/// Drops the user; returns whether there was one.
pub async fn drop_user(client: &Client, username: &str) -> Result<bool, Error> {
    match admin_command(client, doc! { "dropUser": username }).await {
        Ok(_) => Ok(true),
        Err(error) if code(&error) == Some(USER_NOT_FOUND) => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::Config::load(&Default::default())
            .unwrap()
            .mongodb
    }

    #[test]
    fn a_missing_user_is_created_and_the_plan_masks_its_password() {
        let config = config();
        let changes = changes(&config, None, false);
        assert_eq!(changes, vec![Change::Create]);
        assert_eq!(
            changes[0].detail(&config),
            "createUser stackbill roles [root@admin, readWriteAnyDatabase@admin] pwd ********"
        );
        let command = changes[0].command(&config, &Secret::new("Sekrit123"));
        assert_eq!(command.get_str("pwd").unwrap(), "Sekrit123");
    }

    #[test]
    fn drift_sets_the_password_back_and_grants_only_what_is_missing() {
        let config = config();
        let roles = vec![("root".to_string(), "admin".to_string())];
        let changes = changes(&config, Some(&roles), false);
        let grant = vec![("readWriteAnyDatabase".to_string(), "admin".to_string())];
        assert_eq!(changes, vec![Change::SetPassword, Change::Grant(grant)]);
        let all = wanted_roles(&config);
        assert!(super::changes(&config, Some(&all), true).is_empty());
    }
}
