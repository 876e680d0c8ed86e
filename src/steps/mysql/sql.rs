//! The SQL of the mysql step: what the server holds (read-only queries)
//! and the statements that bring it to the profile, right for each flavour.

use sqlx::mysql::MySqlConnection;

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
        let identified = format!("{} '{shown}'", flavour.identified_by());
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

pub async fn survey(
    connection: &mut MySqlConnection,
    config: &Mysql,
    password: Option<&Secret>,
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
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT CAST(plugin AS CHAR), CAST(authentication_string AS CHAR) FROM mysql.user WHERE User = ? AND Host = '%'",
    )
    .bind(&config.username)
    .fetch_optional(&mut *connection)
    .await?;
    let user = match (row, password) {
        (None, _) => User::Missing,
        (Some((plugin, hash)), Some(password)) => {
            let expected: String =
                sqlx::query_scalar("SELECT CONCAT('*', UPPER(SHA1(UNHEX(SHA1(?)))))")
                    .bind(password.expose())
                    .fetch_one(&mut *connection)
                    .await?;
            match plugin == "mysql_native_password" && hash == expected {
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

    #[test]
    fn each_flavour_gets_its_own_create_user() {
        let mysql = sql(Flavour::Mysql, None, None);
        let mariadb = sql(Flavour::Mariadb, None, None);
        assert_eq!(
            mysql[2],
            "CREATE USER 'stackbill'@'%' IDENTIFIED WITH mysql_native_password BY '********'"
        );
        assert_eq!(
            mariadb[2],
            "CREATE USER 'stackbill'@'%' IDENTIFIED BY '********'"
        );
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
