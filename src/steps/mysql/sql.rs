//! The SQL of the mysql step: what the server holds (read-only queries)
//! and the statements that bring it to the profile, right for each flavour.

use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};

use super::Flavour;
use crate::config::Mysql;
use crate::secret::{MASK, Secret};

/// What the server holds now.
#[derive(Debug, Clone)]
pub struct Survey {
    pub flavour: Flavour,
    pub version: String,
    pub missing_databases: Vec<String>,
    pub user: User,
    pub grants_complete: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum User {
    Missing,
    OtherPassword,
    Current,
}

/// One statement of the step: what it does is what the plan shows (the
/// password masked there, and only there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    CreateDatabase(String),
    /// The profile's user, with the credentials file's password.
    CreateUser,
    /// The user's password set back to the credentials file's.
    SetPassword,
    /// Every privilege, with grant option, to the user.
    GrantAll,
    DropDatabase(String),
    DropUser(String),
}

impl Statement {
    /// The SQL for `flavour`, with `password` where it needs one (masked
    /// when `None`).
    pub fn sql(&self, config: &Mysql, flavour: Flavour, password: Option<&Secret>) -> String {
        let shown = password.map_or(MASK.to_string(), |secret| escape(secret.expose()));
        let user = format!("'{}'@'%'", escape(&config.username));
        let identified = identified(flavour, config.auth_plugin.as_deref(), &shown);
        match self {
            Self::CreateDatabase(name) => {
                format!(
                    "CREATE DATABASE IF NOT EXISTS `{}`",
                    name.replace('`', "``")
                )
            }
            Self::CreateUser => format!("CREATE USER {user} {identified}"),
            Self::SetPassword => format!("ALTER USER {user} {identified}"),
            Self::GrantAll => format!("GRANT ALL PRIVILEGES ON *.* TO {user} WITH GRANT OPTION"),
            Self::DropDatabase(name) => {
                format!("DROP DATABASE IF EXISTS `{}`", name.replace('`', "``"))
            }
            Self::DropUser(name) => format!("DROP USER IF EXISTS '{}'@'%'", escape(name)),
        }
    }
}

/// How the user is identified, for `flavour`: by the server's default
/// plugin unless the profile names one. MySQL 8.0 and 8.4 (CREATE USER):
/// `IDENTIFIED [WITH plugin] BY 'password'`; MariaDB 10.4 and later (which
/// rejects `IDENTIFIED WITH plugin BY`): `IDENTIFIED BY 'password'`, or
/// `IDENTIFIED VIA plugin USING PASSWORD('password')`.
fn identified(flavour: Flavour, plugin: Option<&str>, password: &str) -> String {
    match (flavour, plugin) {
        (_, None) => format!("IDENTIFIED BY '{password}'"),
        (Flavour::Mysql, Some(plugin)) => format!("IDENTIFIED WITH {plugin} BY '{password}'"),
        (Flavour::Mariadb, Some(plugin)) => {
            format!("IDENTIFIED VIA {plugin} USING PASSWORD('{password}')")
        }
    }
}

/// Why the server `version` (`SELECT VERSION()`) cannot give the user
/// `plugin`, or `None`: MySQL 8.4 ships mysql_native_password disabled
/// (enabled only with `mysql_native_password=ON`), MySQL 9.0 removed it.
pub fn plugin_refused(flavour: Flavour, version: &str, plugin: Option<&str>) -> Option<String> {
    let (Flavour::Mysql, Some("mysql_native_password")) = (flavour, plugin) else {
        return None;
    };
    let mut numbers = version
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    let (major, minor) = (numbers.next()??, numbers.next()??);
    match (major, minor) {
        (8, 4..) => Some(format!(
            "MySQL {version} disables `mysql_native_password` unless the server runs with `mysql_native_password=ON`"
        )),
        (9.., _) => Some(format!(
            "MySQL {version} no longer has `mysql_native_password`"
        )),
        _ => None,
    }
}

/// The statements that bring the server to the profile. Without a survey
/// (the server does not run yet), all of them.
pub fn statements(config: &Mysql, survey: Option<&Survey>) -> Vec<Statement> {
    let mut statements = Vec::new();
    let missing_databases = survey.map_or(&config.databases, |survey| &survey.missing_databases);
    for database in missing_databases {
        statements.push(Statement::CreateDatabase(database.clone()));
    }
    match survey.map_or(&User::Missing, |survey| &survey.user) {
        User::Missing => statements.push(Statement::CreateUser),
        User::OtherPassword => statements.push(Statement::SetPassword),
        User::Current => {}
    }
    if survey.is_none_or(|survey| !survey.grants_complete || survey.user == User::Missing) {
        statements.push(Statement::GrantAll);
    }
    statements
}

/// The statements that drop `databases` and `user` (those the step
/// created), with `IF EXISTS` so that running them again changes nothing.
pub fn drop_statements(databases: &[String], user: Option<&str>) -> Vec<Statement> {
    let mut statements: Vec<Statement> = (databases.iter())
        .map(|database| Statement::DropDatabase(database.clone()))
        .collect();
    statements.extend(user.map(|user| Statement::DropUser(user.to_string())));
    statements
}

/// A string literal's content, for a session with backslash escapes on.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\'', "''")
        .replace('\0', "\\0")
}

/// What the server holds; `login`: how the user logs in over TCP with the
/// credentials file's password (whether that works is whether the password
/// is current, whatever plugin the server gave the user).
pub async fn survey(
    connection: &mut MySqlConnection,
    config: &Mysql,
    login: Option<&MySqlConnectOptions>,
) -> Result<Survey, sqlx::Error> {
    let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
        .fetch_one(&mut *connection)
        .await?;
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA")
            .fetch_all(&mut *connection)
            .await?;
    let missing_databases = config
        .databases
        .iter()
        .filter(|name| !existing.contains(name))
        .cloned()
        .collect();
    let row: Option<String> = sqlx::query_scalar(
        "SELECT CAST(plugin AS CHAR) FROM mysql.user WHERE User = ? AND Host = '%'",
    )
    .bind(&config.username)
    .fetch_optional(&mut *connection)
    .await?;
    let user = match (row, login) {
        (None, _) => User::Missing,
        (Some(plugin), Some(login)) => {
            let asked = config.auth_plugin.as_deref();
            let logs_in = logs_in(login).await?;
            match logs_in && asked.is_none_or(|asked| asked == plugin) {
                true => User::Current,
                false => User::OtherPassword,
            }
        }
        (Some(_), None) => User::OtherPassword,
    };
    let grants_complete = grants_complete(connection, &config.username).await?;
    Ok(Survey {
        flavour: Flavour::from_version(&version),
        version,
        missing_databases,
        user,
        grants_complete,
    })
}

/// Whether `login` succeeds; `false` when the server refuses the password
/// (error 1045, access denied), an error for anything else.
async fn logs_in(login: &MySqlConnectOptions) -> Result<bool, sqlx::Error> {
    match MySqlConnection::connect_with(login).await {
        Ok(connection) => {
            let _ = connection.close().await;
            Ok(true)
        }
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("28000") => Ok(false),
        Err(error) => Err(error),
    }
}

/// Whether the user holds, with grant option, every privilege root holds.
async fn grants_complete(
    connection: &mut MySqlConnection,
    username: &str,
) -> Result<bool, sqlx::Error> {
    let grantee = format!("'{}'@'%'", username.replace('\'', "''"));
    let lacking: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = \
         CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''') \
         AND PRIVILEGE_TYPE NOT IN (SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES \
         WHERE GRANTEE = ? AND IS_GRANTABLE = 'YES')",
    )
    .bind(&grantee)
    .fetch_one(&mut *connection)
    .await?;
    Ok(lacking == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Mysql {
        Mysql {
            username: "stackbill".into(),
            databases: vec!["stackbill".into(), "configuration".into()],
            ..Mysql::default()
        }
    }

    fn sql(flavour: Flavour, survey: Option<&Survey>, password: Option<&Secret>) -> Vec<String> {
        (statements(&config(), survey).iter())
            .map(|statement| statement.sql(&config(), flavour, password))
            .collect()
    }

    /// (flavour, `SELECT VERSION()`, `[mysql] auth_plugin`, CREATE USER's
    /// ending or the refusal's words)
    type Case = (
        Flavour,
        &'static str,
        Option<&'static str>,
        Result<&'static str, &'static str>,
    );

    #[test]
    fn the_user_sql_of_each_flavour_version_and_plugin_is_the_table() {
        const CREATE: &str = "CREATE USER 'stackbill'@'%' ";
        let table: [Case; 9] = [
            (
                Flavour::Mysql,
                "8.0.36-0ubuntu0.22.04.1",
                None,
                Ok("IDENTIFIED BY '********'"),
            ),
            (
                Flavour::Mysql,
                "8.4.0",
                None,
                Ok("IDENTIFIED BY '********'"),
            ),
            (
                Flavour::Mysql,
                "8.0.36-0ubuntu0.22.04.1",
                Some("mysql_native_password"),
                Ok("IDENTIFIED WITH mysql_native_password BY '********'"),
            ),
            (
                Flavour::Mysql,
                "8.4.0",
                Some("mysql_native_password"),
                Err("disables `mysql_native_password`"),
            ),
            (
                Flavour::Mysql,
                "9.1.0",
                Some("mysql_native_password"),
                Err("no longer has"),
            ),
            (
                Flavour::Mysql,
                "8.4.0",
                Some("caching_sha2_password"),
                Ok("IDENTIFIED WITH caching_sha2_password BY '********'"),
            ),
            (
                Flavour::Mariadb,
                "10.11.6-MariaDB-0+deb12u1",
                None,
                Ok("IDENTIFIED BY '********'"),
            ),
            (
                Flavour::Mariadb,
                "10.11.6-MariaDB-0+deb12u1",
                Some("mysql_native_password"),
                Ok("IDENTIFIED VIA mysql_native_password USING PASSWORD('********')"),
            ),
            (
                Flavour::Mariadb,
                "10.6.16-MariaDB-0ubuntu0.22.04.1",
                Some("ed25519"),
                Ok("IDENTIFIED VIA ed25519 USING PASSWORD('********')"),
            ),
        ];
        for (flavour, version, plugin, expected) in table {
            let config = Mysql {
                auth_plugin: plugin.map(str::to_string),
                ..config()
            };
            let refused = plugin_refused(flavour, version, plugin);
            match expected {
                Ok(ending) => {
                    assert_eq!(refused, None, "{version} {plugin:?}");
                    let create = Statement::CreateUser.sql(&config, flavour, None);
                    assert_eq!(create, format!("{CREATE}{ending}"), "{version} {plugin:?}");
                    let alter = Statement::SetPassword.sql(&config, flavour, None);
                    assert!(alter.ends_with(ending), "{alter}");
                }
                Err(words) => {
                    let why = refused.unwrap_or_else(|| panic!("{version} {plugin:?} accepted"));
                    assert!(why.contains(words), "{why}");
                }
            }
        }
        let mariadb = sql(Flavour::Mariadb, None, None);
        assert_eq!(
            mariadb[3],
            "GRANT ALL PRIVILEGES ON *.* TO 'stackbill'@'%' WITH GRANT OPTION"
        );
    }

    #[test]
    fn a_drifted_password_is_altered_and_quotes_are_escaped() {
        let survey = Survey {
            flavour: Flavour::Mariadb,
            version: "10.11.6-MariaDB".into(),
            missing_databases: vec![],
            user: User::OtherPassword,
            grants_complete: true,
        };
        let password = Secret::new(r"it's\here");
        let statements = sql(Flavour::Mariadb, Some(&survey), Some(&password));
        assert_eq!(
            statements,
            [r"ALTER USER 'stackbill'@'%' IDENTIFIED BY 'it''s\\here'"]
        );
    }
}
