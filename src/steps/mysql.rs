//! MySQL (MariaDB where the OS ships that): names the server package to the
//! `packages` step (which installs it when it is missing), writes `stackbill.cnf` into the server's conf.d directory
//! (restarting the server only when that file changed), and creates the
//! databases and the application user with the credentials file's password,
//! administering through the local socket as the OS root (no root password).
//!
//! Done when the file matches, the databases exist, the user's password hash
//! is the credentials file's and its grants are complete, and the user logs
//! in over TCP at the host's address. A password changed behind our back is
//! set back, and the run says so. Whether the server was on the host before
//! is recorded (`mysql.preexisting`) so that uninstall knows whether to
//! remove it or only drop what this step created.

use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};

mod sql;

use self::sql::{Statement, Survey, User};
use super::services;
use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::{Context, kept_because};
use crate::host::{self, service};
use crate::render;
use crate::secret::Secret;
use crate::state::{Fact, Fingerprint, Object, Server};

/// The mysql step.
pub struct Mysql;

const SERVICE: &str = "mysql";
const CONFIG_FILE: &str = "stackbill.cnf";

/// Which server answers: the SQL and the file locations differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Mysql,
    Mariadb,
}

impl Flavour {
    /// The flavour `SELECT VERSION()` reports (`10.11.6-MariaDB-0+deb12u1`).
    pub fn from_version(version: &str) -> Self {
        match version.to_ascii_lowercase().contains("mariadb") {
            true => Self::Mariadb,
            false => Self::Mysql,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Mysql => "MySQL",
            Self::Mariadb => "MariaDB",
        }
    }

    /// Where the distribution's server reads extra settings from.
    pub fn config_dir(self) -> &'static str {
        match self {
            Self::Mysql => "/etc/mysql/mysql.conf.d",
            Self::Mariadb => "/etc/mysql/mariadb.conf.d",
        }
    }

    /// The unit the package installs (its own name, not an alias:
    /// `mysql.service` is one of MariaDB's).
    fn unit(self) -> &'static str {
        match self {
            Self::Mysql => "mysql.service",
            Self::Mariadb => "mariadb.service",
        }
    }
}

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    rendered: Some(rendered),
    server: Some(super::ServerRole {
        packages: server_packages,
        before_install: super::nothing_before_install,
    }),
    needs: &[StepId::Credentials, StepId::Packages],
    inputs_from: &[StepId::Credentials],
    undo_logs_in: true,
    ..StepInfo::database(StepId::Mysql, "MySQL server, databases and user")
};

impl Step for Mysql {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config = toml::to_string(&context.config.mysql).expect("the mysql section serializes");
        fingerprint.add("mysql", config);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let package = package(context);
        let mut actions = Vec::new();
        let installed = services::installed(&[&package])?;
        let survey = if installed {
            survey_if_running(context)?
        } else {
            None
        };
        let flavour = survey
            .as_ref()
            .map_or(expected_flavour(&package), |survey| survey.flavour);
        let path = config_path(context, flavour);
        let text = config_text(context, flavour)?;
        let changed = host::fs::read_optional(&path)?.as_deref() != Some(text.as_str());
        let write = changed
            .then(|| Action::write(context.host.reached(path.clone()), text.into_bytes(), 0o644));
        let unit = unit(context, flavour);
        actions.extend(services::service_actions(context, &unit, write)?);
        if let Some(survey) = &survey {
            check_plugin(&context.config.mysql, survey)?;
            actions.push(Action::check(format!(
                "{} {} answers on the socket",
                survey.flavour.name(),
                survey.version
            )));
        }
        let statements = sql::statements(&context.config.mysql, survey.as_ref());
        if let Some(survey) = &survey {
            let claims = claims(context, survey);
            actions.extend(claims.into_iter().map(Action::record));
        }
        actions.extend(Action::change(Provision {
            statements,
            flavour,
            survey,
            config: context.config.mysql.clone(),
        }));
        Ok(actions)
    }

    /// The settings file as the step leaves it, and the application's own
    /// login over TCP (no survey as root).
    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let mut in_place = false;
        for flavour in [Flavour::Mysql, Flavour::Mariadb] {
            let current = host::fs::read_optional(&config_path(context, flavour))?;
            in_place |= current.as_deref() == Some(config_text(context, flavour)?.as_str());
        }
        if !in_place {
            return Err(StepError::failed(
                format!("the MySQL settings file `{CONFIG_FILE}` is not as the step left it"),
                "run `stackinstall install --redo mysql`",
            ));
        }
        let unit = unit(context, expected_flavour(&package(context)));
        services::check_running(context, &unit)?;
        login_over_tcp(context)
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = drop_actions(context);
        let new = context.facts().mysql.installed_by_us();
        for flavour in [Flavour::Mysql, Flavour::Mariadb] {
            let path = config_path(context, flavour);
            if path.exists() {
                actions.push(Action::remove(context.host.reached(path.clone())));
                if !new {
                    let restart = service::restart(&unit(context, flavour));
                    actions.push(Action::run_as(ActionKind::Service, restart));
                }
            }
        }
        let package = package(context);
        let unit = unit(context, expected_flavour(&package));
        actions.extend(services::purge_actions(
            context,
            Server::Mysql,
            &[&package],
            &unit,
        )?);
        Ok(actions)
    }
}

fn rendered(config: &crate::config::Config) -> Result<Vec<(String, String)>, render::RenderError> {
    rendered_files(config)
}

fn server_packages(context: &Context) -> Result<services::ServerPackages, StepError> {
    Ok(services::ServerPackages {
        server: Server::Mysql,
        names: vec![package(context)],
    })
}

/// Runs one statement of the uninstall as root.
struct RunAsRoot {
    statement: Statement,
    config: crate::config::Mysql,
}

impl Change for RunAsRoot {
    fn kind(&self) -> ActionKind {
        ActionKind::Database
    }

    fn lines(&self) -> Vec<String> {
        vec![(self.statement).sql(&self.config, Flavour::Mariadb, None)]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let statement = (self.statement).sql(&self.config, Flavour::Mariadb, None);
        run_as_root(context, &statement)
    }
}

/// Runs one statement of the uninstall as root; whether it changed rows.
fn run_as_root(context: &Context, statement: &str) -> Result<bool, StepError> {
    let result = context.block_on(async {
        let mut connection = MySqlConnection::connect_with(&admin_options(context)).await?;
        sqlx::raw_sql(statement).execute(&mut connection).await
    })?;
    result
        .map(|done| done.rows_affected() > 0)
        .map_err(|error| admin_error(context, &error))
}

fn package(context: &Context) -> String {
    match &context.config.mysql.package {
        Some(package) => package.clone(),
        None if services::os_id(context) == "debian" => "mariadb-server".into(),
        None => "mysql-server".into(),
    }
}

fn expected_flavour(package: &str) -> Flavour {
    Flavour::from_version(package)
}

/// The unit of the server the step installs on this host.
pub fn unit_for(context: &Context) -> String {
    unit(context, expected_flavour(&package(context)))
}

/// The unit of the server the step installs on a host whose os-release
/// `ID` is `os` (for `doctor`, which has no step context).
pub fn server_unit(config: &crate::config::Config, os: &str) -> String {
    let package = match config.mysql.package.as_deref() {
        None if os == "debian" => "mariadb-server",
        None => "mysql-server",
        Some(package) => package,
    };
    match &config.mysql.service {
        None => Flavour::from_version(package).unit().into(),
        Some(unit) => unit.clone(),
    }
}

fn unit(context: &Context, flavour: Flavour) -> String {
    match &context.config.mysql.service {
        Some(unit) => unit.clone(),
        None => flavour.unit().into(),
    }
}

fn config_path(context: &Context, flavour: Flavour) -> std::path::PathBuf {
    let dir = match &context.config.mysql.config_dir {
        Some(dir) => dir.as_str(),
        None => flavour.config_dir(),
    };
    context.host.path(dir).join(CONFIG_FILE)
}

/// The settings file for `flavour`, from `templates/mysql-stackbill.cnf`.
pub fn config_text(context: &Context, flavour: Flavour) -> Result<String, StepError> {
    Ok(render_config(&context.config, flavour)?)
}

/// The settings file of `config` for `flavour`.
pub fn render_config(
    config: &crate::config::Config,
    flavour: Flavour,
) -> Result<String, render::RenderError> {
    let settings: Vec<serde_json::Value> = config
        .mysql
        .settings
        .iter()
        .map(|(name, value)| match (flavour, name.as_str(), value) {
            // Deprecated in MySQL 8.0.30 and gone in 8.4; this is its replacement.
            (Flavour::Mysql, "skip-host-cache", toml::Value::Boolean(true)) => {
                serde_json::json!({ "name": "host_cache_size", "value": "0", "flag": false })
            }
            (_, _, toml::Value::Boolean(true)) => serde_json::json!({ "name": name, "flag": true }),
            (_, _, toml::Value::String(text)) => {
                serde_json::json!({ "name": name, "value": text, "flag": false })
            }
            (_, _, other) => {
                serde_json::json!({ "name": name, "value": other.to_string(), "flag": false })
            }
        })
        .collect();
    let values = serde_json::json!({ "profile": config.name, "flavour": flavour.name(), "settings": settings });
    render::template("mysql-stackbill.cnf", values)
}

/// The settings file of each flavour, for `stackinstall render`.
pub fn rendered_files(
    config: &crate::config::Config,
) -> Result<Vec<(String, String)>, render::RenderError> {
    let mut files = Vec::new();
    for flavour in [Flavour::Mysql, Flavour::Mariadb] {
        let text = render_config(config, flavour)?;
        files.push((
            match flavour {
                Flavour::Mysql => format!("mysql-{CONFIG_FILE}"),
                Flavour::Mariadb => format!("mariadb-{CONFIG_FILE}"),
            },
            text,
        ));
    }
    Ok(files)
}

fn password(context: &Context) -> Result<Secret, StepError> {
    let account = context.credentials()?.account(SERVICE).ok_or_else(|| {
        StepError::failed(
            "the credentials file has no password for `mysql`",
            "run `stackinstall install --only credentials` to add it",
        )
    })?;
    Ok(account.password.clone())
}

fn admin_options(context: &Context) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .socket(&context.config.mysql.socket)
        .username("root")
        .disable_statement_logging()
}

/// What the server holds, or `None` when it does not run yet (or, in a
/// plan, cannot be looked into without root).
fn survey_if_running(context: &Context) -> Result<Option<Survey>, StepError> {
    let login = password(context)
        .ok()
        .map(|password| user_options(context, &password));
    let attempt = context.block_on(async {
        let mut connection = MySqlConnection::connect_with(&admin_options(context)).await?;
        sql::survey(&mut connection, &context.config.mysql, login.as_ref()).await
    })?;
    match attempt {
        Ok(survey) => Ok(Some(survey)),
        Err(_) if context.plan => Ok(None),
        Err(_) if !service::is_active(&unit(context, expected_flavour(&package(context))))? => {
            Ok(None)
        }
        Err(error) => Err(admin_error(context, &error)),
    }
}

fn admin_error(context: &Context, error: &sqlx::Error) -> StepError {
    StepError::failed(
        format!(
            "cannot administer MySQL through the socket `{}` as root: {error}",
            context.config.mysql.socket
        ),
        "check that the server runs (`systemctl status mariadb` or `mysql`) and that root logs in with `sudo mysql`; set `[mysql] socket` if it lives elsewhere",
    )
}

/// Creates what the server lacks of the profile (databases, the user, its
/// password, its privileges), connected as root through the socket. When
/// the look could not survey the server (it did not run yet), the server
/// is surveyed once it answers, what was there is recorded, and the
/// statements follow that survey; else the statements are the planned ones.
struct Provision {
    statements: Vec<Statement>,
    flavour: Flavour,
    survey: Option<Survey>,
    config: crate::config::Mysql,
}

impl Change for Provision {
    fn kind(&self) -> ActionKind {
        ActionKind::Database
    }

    fn lines(&self) -> Vec<String> {
        (self.statements.iter())
            .map(|statement| statement.sql(&self.config, self.flavour, None))
            .collect()
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let password = password(context)?;
        let login = user_options(context, &password);
        let Self {
            statements,
            survey,
            config,
            ..
        } = *self;
        let connected = context.block_on(async {
            let mut connection = connect_with_retries(&admin_options(context), 60).await?;
            sqlx::raw_sql("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")
                .execute(&mut connection)
                .await?;
            let planned = match survey {
                Some(survey) => (survey, Some(statements)),
                None => (
                    sql::survey(&mut connection, &config, Some(&login)).await?,
                    None,
                ),
            };
            Ok::<_, sqlx::Error>((connection, planned))
        })?;
        let (mut connection, (survey, planned)) =
            connected.map_err(|error| admin_error(context, &error))?;
        check_plugin(&config, &survey)?;
        report_drift(context, &survey);
        for fact in claims(context, &survey) {
            context.record(&fact)?;
        }
        let planned = planned.unwrap_or_else(|| sql::statements(&config, Some(&survey)));
        let statements: Vec<String> = (planned.iter())
            .map(|statement| statement.sql(&config, survey.flavour, Some(&password)))
            .collect();
        let result = context.block_on(async {
            for statement in &statements {
                sqlx::raw_sql(statement).execute(&mut connection).await?;
            }
            Ok::<bool, sqlx::Error>(!statements.is_empty())
        })?;
        result.map_err(|error| admin_error(context, &error))
    }
}

/// What to record, before anything is created, of which of the profile's
/// databases and which user were there (found) and which this run creates.
fn claims(context: &Context, survey: &Survey) -> Vec<Fact> {
    let config = &context.config.mysql;
    let databases = (config.databases.iter()).map(|database| {
        let present = !survey.missing_databases.contains(database);
        (Object::Database(database.clone()), present)
    });
    let user = (
        Object::MysqlUser(config.username.clone()),
        survey.user != User::Missing,
    );
    (databases.chain([user]))
        .filter_map(|(object, present)| context.claim_of(object, present))
        .collect()
}

/// The drops of the databases and the user the install created, and a
/// kept line for each one it found (or cannot attribute).
fn drop_actions(context: &Context) -> Vec<Action> {
    let config = &context.config.mysql;
    let mut actions = Vec::new();
    let mut ours = |object: Object, what: String| match kept_because(context.origin(&object), &what)
    {
        Some(kept) => {
            actions.push(Action::check(kept));
            false
        }
        None => true,
    };
    let databases: Vec<String> = (config.databases.iter())
        .filter(|name| {
            ours(
                Object::Database(name.to_string()),
                format!("database `{name}`"),
            )
        })
        .cloned()
        .collect();
    let user_what = format!("MySQL user `{}`", config.username);
    let user_object = Object::MysqlUser(config.username.clone());
    let user = ours(user_object, user_what).then_some(config.username.as_str());
    let statements = sql::drop_statements(&databases, user);
    actions.extend(statements.into_iter().filter_map(|statement| {
        Action::change(RunAsRoot {
            statement,
            config: config.clone(),
        })
    }));
    actions
}

fn report_drift(context: &Context, survey: &Survey) {
    let user = format!("`{}`@`%`", context.config.mysql.username);
    if survey.user == User::OtherPassword {
        context.ui.warn(&format!("the password of {user} was not the credentials file's (changed by hand?): setting it back"));
    }
    if survey.user != User::Missing && !survey.grants_complete {
        context.ui.warn(&format!(
            "{user} lacked some privileges: granting them again"
        ));
    }
}

async fn connect_with_retries(
    options: &MySqlConnectOptions,
    seconds: u32,
) -> Result<MySqlConnection, sqlx::Error> {
    let mut attempt = 0;
    loop {
        match MySqlConnection::connect_with(options).await {
            Ok(connection) => return Ok(connection),
            Err(_) if attempt < seconds => attempt += 1,
            Err(error) => return Err(error),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Refuses a plugin the profile asks for that the server cannot give.
fn check_plugin(config: &crate::config::Mysql, survey: &Survey) -> Result<(), StepError> {
    let plugin = config.auth_plugin.as_deref();
    match sql::plugin_refused(survey.flavour, &survey.version, plugin) {
        None => Ok(()),
        Some(why) => Err(StepError::input(
            format!(
                "`[mysql] auth_plugin` is `{}`: {why}",
                plugin.unwrap_or_default()
            ),
            "leave `[mysql] auth_plugin` unset for the server's default (caching_sha2_password), or enable the plugin in the server's settings",
        )),
    }
}

/// How the application logs in: over TCP at the host's address, as the
/// profile's user, with `password`.
fn user_options(context: &Context, password: &Secret) -> MySqlConnectOptions {
    let config = &context.config.mysql;
    let address = services::login_address(config.host.as_deref());
    MySqlConnectOptions::new()
        .host(&address)
        .port(config.port)
        .username(&config.username)
        .password(password.expose())
        .ssl_mode(MySqlSslMode::Preferred)
        .disable_statement_logging()
}

/// Logs in as the application will: over TCP at the host's address, with
/// the credentials file's password, and sees every database.
fn login_over_tcp(context: &Context) -> Result<(), StepError> {
    let config = &context.config.mysql;
    let address = services::login_address(config.host.as_deref());
    let password = password(context)?;
    let options = user_options(context, &password);
    let seen: Result<Vec<String>, sqlx::Error> = context.block_on(async {
        let mut connection = MySqlConnection::connect_with(&options).await?;
        sqlx::query_scalar("SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA")
            .fetch_all(&mut connection)
            .await
    })?;
    let who = format!("`{}` at {address}:{}", config.username, config.port);
    let seen = seen.map_err(|error| {
        StepError::failed(
            format!("{who} cannot log in to MySQL over TCP with the credentials file's password: {error}"),
            "check `bind-address` in the server's settings and the host firewall, then `stackinstall install --redo mysql`",
        )
    })?;
    match config
        .databases
        .iter()
        .find(|database| !seen.contains(database))
    {
        Some(database) => Err(StepError::failed(
            format!("{who} logs in but does not see the database `{database}`"),
            "run `stackinstall install --redo mysql`",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_settings_file_replaces_skip_host_cache() {
        let config = crate::config::Config::load(&Default::default()).unwrap();
        insta::assert_snapshot!("mysql_cnf", render_config(&config, Flavour::Mysql).unwrap());
        let mariadb = render_config(&config, Flavour::Mariadb).unwrap();
        assert!(mariadb.contains("\nskip-host-cache\n"), "{mariadb}");
    }
}
