//! RabbitMQ: installs rabbitmq-server when it is missing, enables the
//! management plugin, and keeps the application user with the credentials
//! file's password (always on `rabbitmqctl`'s stdin, never in argv), its
//! tags and its `.* .* .*` permissions on the vhost. The default `guest`
//! user is left as the package set it (loopback only).
//!
//! Done when the user exists with those tags and permissions, its password
//! authenticates, and it logs in over AMQP (lapin) and to the management API
//! at the host's address. A password changed behind our back is set back,
//! and the run says so. Whether the server was on the host before is
//! recorded (`rabbitmq.preexisting`) for uninstall.

use std::time::Duration;

use lapin::uri::{AMQPAuthority, AMQPUri, AMQPUserInfo};

use super::services;
use super::{Action, ActionKind, Group, Step, StepError};
use crate::context::{Context, kept_because};
use crate::host::{Command, service};
use crate::secret::Secret;
use crate::state::Fingerprint;

/// The rabbitmq step.
pub struct Rabbitmq;

const SERVICE: &str = "rabbitmq";
const PACKAGE: &str = "rabbitmq-server";
const UNIT: &str = "rabbitmq-server";
const PLUGIN: &str = "rabbitmq_management";
const EVERYTHING: &str = ".*";

impl Step for Rabbitmq {
    fn id(&self) -> &'static str {
        "rabbitmq"
    }

    fn title(&self) -> &'static str {
        "RabbitMQ server and user"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["credentials"]
    }

    fn group(&self) -> Group {
        Group::Database
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["credentials"]
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config =
            toml::to_string(&context.config.rabbitmq).expect("the rabbitmq section serializes");
        fingerprint.add("rabbitmq", config);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = services::package_actions(context, SERVICE, &[PACKAGE])?;
        let installed = !actions
            .iter()
            .any(|action| action.kind() == ActionKind::Package);
        let running = installed && service::is_active(UNIT)?;
        actions.extend(services::service_action(UNIT, false)?);
        if !installed || !plugin_enabled()? {
            let enable = rabbitmq_plugins(["enable", PLUGIN]);
            actions.push(Action::run_as(ActionKind::Service, enable));
        }
        let password = password(context).unwrap_or_else(|_| Secret::new(String::new()));
        let commands = match running {
            true => user_commands(context, &password)?.0,
            false => all_user_commands(context, &password),
        };
        if commands.is_empty() && unclaimed(context) {
            let detail = "record in the state that the user (and vhost) were there before the install (uninstall keeps them)";
            actions.push(Action::call(ActionKind::Check, detail, provision));
        }
        let lines = commands.iter().map(Command::to_string).collect();
        actions.extend(Action::call_lines(ActionKind::Command, lines, provision));
        Ok(actions)
    }

    /// Checks as the application would, without `rabbitmqctl` (each of its
    /// calls starts an Erlang VM): AMQP login, then the management API,
    /// which answers only for a user with the right password and tag.
    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let config = &context.config.rabbitmq;
        let password = password(context)?;
        amqp_login(context, &password)?;
        let user = management_get(
            context,
            &password,
            &format!("users/{}", encode(&config.username)),
        )?;
        let tags: Vec<String> = match &user["tags"] {
            serde_json::Value::String(text) => text
                .split(',')
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            list => list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
        };
        let permissions = management_get(
            context,
            &password,
            &format!(
                "permissions/{}/{}",
                encode(&config.vhost),
                encode(&config.username)
            ),
        )?;
        let full = ["configure", "write", "read"]
            .iter()
            .all(|key| permissions[*key] == EVERYTHING);
        if config.tags.iter().any(|tag| !tags.contains(tag)) || !full {
            return Err(StepError::failed(
                format!(
                    "RabbitMQ user `{}` lacks its tags ({}) or its `.* .* .*` permissions on `{}`",
                    config.username,
                    config.tags.join(", "),
                    config.vhost
                ),
                "run `stackinstall install --redo rabbitmq`",
            ));
        }
        Ok(())
    }

    fn undo_needs_credentials(&self) -> bool {
        true
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        Self::removals(context)
    }
}

impl Rabbitmq {
    /// Deletes the user and the vhost (never `/`) the install created, if
    /// they are there (those it found are kept, and listed), and purges the
    /// package when the install put it on the host.
    pub fn removals(context: &Context) -> Result<Vec<Action>, StepError> {
        let config = &context.config.rabbitmq;
        let named = |list: &serde_json::Value, key: &str, name: &str| {
            list.as_array()
                .into_iter()
                .flatten()
                .any(|entry| entry[key] == name)
        };
        let mut actions = Vec::new();
        let user = format!("RabbitMQ user `{}`", config.username);
        match kept_because(context.origin(&user_key(context)), &user) {
            Some(kept) => actions.push(Action::check(kept)),
            None if named(&json(&["list_users"])?, "user", &config.username) => {
                actions.push(Action::run(rabbitmqctl([
                    "delete_user",
                    config.username.as_str(),
                ])));
            }
            None => {}
        }
        if config.vhost != "/" {
            let vhost = format!("RabbitMQ vhost `{}`", config.vhost);
            match kept_because(context.origin(&vhost_key(context)), &vhost) {
                Some(kept) => actions.push(Action::check(kept)),
                None if named(&json(&["list_vhosts"])?, "name", &config.vhost) => {
                    actions.push(Action::run(rabbitmqctl([
                        "delete_vhost",
                        config.vhost.as_str(),
                    ])));
                }
                None => {}
            }
        }
        actions.extend(services::purge_actions(context, SERVICE, &[PACKAGE], UNIT)?);
        Ok(actions)
    }
}

/// The state key of the user's origin.
fn user_key(context: &Context) -> String {
    format!("{SERVICE}.user.{}", context.config.rabbitmq.username)
}

/// The state key of the vhost's origin.
fn vhost_key(context: &Context) -> String {
    format!("{SERVICE}.vhost.{}", context.config.rabbitmq.vhost)
}

/// Whether the user or vhost has no recorded origin yet, on the step's
/// first run (when a look must record them).
fn unclaimed(context: &Context) -> bool {
    let vhost = context.config.rabbitmq.vhost != "/";
    !context.was_done(SERVICE)
        && (context.origin(&user_key(context)).is_none()
            || (vhost && context.origin(&vhost_key(context)).is_none()))
}

/// Which of the user and the vhost the server has.
#[derive(Debug, Clone, Copy, Default)]
struct Present {
    user: bool,
    vhost: bool,
}

/// `text` percent-encoded for a URL path segment (the vhost `/` is `%2F`).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `rabbitmqctl`, told which node to manage when the operator set one.
fn rabbitmqctl<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("rabbitmqctl")
        .inherit("RABBITMQ_NODENAME")
        .args(args)
        .timeout(Duration::from_secs(120))
}

fn rabbitmq_plugins<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("rabbitmq-plugins")
        .inherit("RABBITMQ_NODENAME")
        .args(args)
        .timeout(Duration::from_secs(120))
}

fn password(context: &Context) -> Result<Secret, StepError> {
    let account = context.credentials()?.account(SERVICE).ok_or_else(|| {
        StepError::failed(
            "the credentials file has no password for `rabbitmq`",
            "run `stackinstall install --only credentials` to add it",
        )
    })?;
    Ok(account.password.clone())
}

fn plugin_enabled() -> Result<bool, StepError> {
    let output = rabbitmq_plugins(["list", "--enabled", "--minimal", "--silent"]).run()?;
    Ok(output.stdout.lines().any(|line| line.trim() == PLUGIN))
}

/// `rabbitmqctl ... --formatter json` parsed.
fn json(args: &[&str]) -> Result<serde_json::Value, StepError> {
    let command = rabbitmqctl(
        args.iter()
            .copied()
            .chain(["--formatter", "json", "--silent"]),
    );
    let output = command.run()?;
    serde_json::from_str(&output.stdout).map_err(|error| {
        StepError::failed(
            format!("`{command}` printed something that is not JSON: {error}"),
            "check the RabbitMQ version (3.8 or newer) and `rabbitmqctl status`",
        )
    })
}

/// Every command that makes the user (for a server not running yet).
fn all_user_commands(context: &Context, password: &Secret) -> Vec<Command> {
    let config = &context.config.rabbitmq;
    let mut commands = Vec::new();
    if config.vhost != "/" {
        commands.push(rabbitmqctl(["add_vhost", config.vhost.as_str()]));
    }
    commands
        .push(rabbitmqctl(["add_user", config.username.as_str()]).stdin_secret(password.clone()));
    commands.push(tags_command(context));
    commands.push(permissions_command(context));
    commands
}

/// The commands that bring the running server's user to the profile, and
/// which of the user and vhost it has.
fn user_commands(
    context: &Context,
    password: &Secret,
) -> Result<(Vec<Command>, Present), StepError> {
    let config = &context.config.rabbitmq;
    let users = json(&["list_users"])?;
    let user = users
        .as_array()
        .into_iter()
        .flatten()
        .find(|user| user["user"] == config.username.as_str());
    let vhosts = json(&["list_vhosts"])?;
    let vhost_present = vhosts
        .as_array()
        .into_iter()
        .flatten()
        .any(|vhost| vhost["name"] == config.vhost.as_str());
    let present = Present {
        user: user.is_some(),
        vhost: vhost_present,
    };
    let Some(user) = user else {
        let mut commands = all_user_commands(context, password);
        if vhost_present && config.vhost != "/" {
            commands.remove(0);
        }
        return Ok((commands, present));
    };
    let mut commands = Vec::new();
    let authenticate =
        rabbitmqctl(["authenticate_user", config.username.as_str()]).stdin_secret(password.clone());
    if !authenticate.run_unchecked()?.success() {
        commands.push(
            rabbitmqctl(["change_password", config.username.as_str()])
                .stdin_secret(password.clone()),
        );
    }
    let mut tags: Vec<String> = user["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .collect();
    let mut wanted = config.tags.clone();
    tags.sort();
    wanted.sort();
    if tags != wanted {
        commands.push(tags_command(context));
    }
    if !vhost_present {
        commands.push(rabbitmqctl(["add_vhost", config.vhost.as_str()]));
    }
    let permissions = json(&["list_user_permissions", config.username.as_str()])?;
    let full = permissions.as_array().into_iter().flatten().any(|entry| {
        entry["vhost"] == config.vhost.as_str()
            && ["configure", "write", "read"]
                .iter()
                .all(|key| entry[*key] == EVERYTHING)
    });
    if !full {
        commands.push(permissions_command(context));
    }
    Ok((commands, present))
}

fn tags_command(context: &Context) -> Command {
    let config = &context.config.rabbitmq;
    rabbitmqctl(["set_user_tags", config.username.as_str()]).args(config.tags.iter().cloned())
}

fn permissions_command(context: &Context) -> Command {
    let config = &context.config.rabbitmq;
    rabbitmqctl([
        "set_permissions",
        "-p",
        config.vhost.as_str(),
        config.username.as_str(),
    ])
    .args([EVERYTHING; 3])
}

/// Waits for the node, looks again and runs what is missing; returns
/// whether it ran anything.
fn provision(context: &mut Context) -> Result<bool, StepError> {
    let password = password(context)?;
    rabbitmqctl(["await_startup", "--timeout", "120"])
        .timeout(Duration::from_secs(150))
        .run()?;
    let (commands, present) = user_commands(context, &password)?;
    context.claim(SERVICE, &user_key(context), present.user)?;
    if context.config.rabbitmq.vhost != "/" {
        context.claim(SERVICE, &vhost_key(context), present.vhost)?;
    }
    if commands.iter().any(|command| {
        command
            .arguments()
            .first()
            .is_some_and(|a| a == "change_password")
    }) {
        let user = &context.config.rabbitmq.username;
        context.ui.warn(&format!("the password of RabbitMQ user `{user}` was not the credentials file's (changed by hand?): setting it back"));
    }
    for command in &commands {
        command.run()?;
    }
    Ok(!commands.is_empty())
}

/// Logs in over AMQP at the host's address, as the application will.
fn amqp_login(context: &Context, password: &Secret) -> Result<(), StepError> {
    let config = &context.config.rabbitmq;
    let host = services::login_address(&config.host);
    let uri = AMQPUri {
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo {
                username: config.username.clone(),
                password: password.expose().to_string(),
            },
            host: host.clone(),
            port: config.port,
        },
        vhost: config.vhost.clone(),
        ..AMQPUri::default()
    };
    let result = context.block_on(async {
        let connection =
            lapin::Connection::connect_uri(uri, lapin::ConnectionProperties::default()).await?;
        connection
            .close(200, "stackinstall verified the login")
            .await
    })?;
    result.map_err(|error| {
        StepError::failed(
            format!("`{}` cannot log in over AMQP at {host}:{} (vhost `{}`): {error}", config.username, config.port, config.vhost),
            "check that RabbitMQ listens on the host's address (`rabbitmq-diagnostics listeners`) and the firewall, then `stackinstall install --redo rabbitmq`",
        )
    })
}

/// GETs `/api/PATH` of the management API at the host's address as the
/// application user.
fn management_get(
    context: &Context,
    password: &Secret,
    path: &str,
) -> Result<serde_json::Value, StepError> {
    let config = &context.config.rabbitmq;
    let url = format!(
        "http://{}:{}/api/{path}",
        services::login_address(&config.host),
        config.management_port
    );
    let failed = |why: String| {
        StepError::failed(
            format!(
                "the management API at `{url}` does not answer `{}`: {why}",
                config.username
            ),
            "check that `rabbitmq-plugins list` shows rabbitmq_management enabled, then `stackinstall install --redo rabbitmq`",
        )
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(&url)
        .basic_auth(&config.username, Some(password.expose()))
        .send()
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    response.json().map_err(|e| failed(e.to_string()))
}
