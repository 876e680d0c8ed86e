//! RabbitMQ: names rabbitmq-server to the `packages` step, enables the
//! management plugin, and keeps the application user with the credentials
//! file's password, its tags and its `.* .* .*` permissions on the vhost.
//! The default `guest` user is left as the package set it (loopback only).
//!
//! Each `rabbitmqctl` or `rabbitmq-plugins` boots an Erlang VM (0.25 to
//! 1.2 s), so the step runs few: the plugin is put in `enabled_plugins`
//! before the server starts (`rabbitmq-plugins enable` only for a running
//! server without it), the look reads the management API as the user (and
//! one `export_definitions` when that does not show everything in place),
//! and one `import_definitions` makes what is missing, the password's hash
//! on its stdin (never in argv).
//!
//! Done when the user logs in over AMQP (lapin) and to the management API
//! at the host's address with those tags and permissions. A password
//! changed behind our back is set back, and the run says so. Whether the
//! server was on the host before is recorded (`rabbitmq.preexisting`) for
//! uninstall, which deletes the user and vhost the install created.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use lapin::uri::{AMQPAuthority, AMQPUri, AMQPUserInfo};

mod definitions;

use self::definitions::{Change as Import, EVERYTHING, Found, Wanted};
use super::services;
use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::{Context, kept_because};
use crate::host::{self, Command, service};
use crate::secret::Secret;
use crate::state::{Fact, Fingerprint, Object, Server};

/// The rabbitmq step.
pub struct Rabbitmq;

const SERVICE: &str = "rabbitmq";
const PACKAGE: &str = "rabbitmq-server";
/// The server's unit.
pub const UNIT: &str = "rabbitmq-server.service";
const PLUGIN: &str = "rabbitmq_management";
const PLUGINS_FILE: &str = "/etc/rabbitmq/enabled_plugins";
/// How long a server started by this run may take to listen.
const STARTUP: Duration = Duration::from_secs(150);

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    server: Some(super::ServerRole {
        packages: server_packages,
        before_install,
    }),
    needs: &[StepId::Credentials, StepId::Packages],
    inputs_from: &[StepId::Credentials],
    undo_logs_in: true,
    rendered: Some(rendered),
    ..StepInfo::database(StepId::Rabbitmq, "RabbitMQ server and user")
};

impl Step for Rabbitmq {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config =
            toml::to_string(&context.config.rabbitmq).expect("the rabbitmq section serializes");
        fingerprint.add("rabbitmq", config);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = Vec::new();
        let installed = services::installed(&[PACKAGE])?;
        let running = installed && service::is_active(UNIT)?;
        let plugins = enabled_plugins(context)?;
        let listed = plugins.iter().any(|plugin| plugin == PLUGIN);
        if !listed && !running {
            // Before the start: the node boots with it.
            actions.push(plugins_file_action(context, plugins));
        }
        actions.extend(services::service_actions(context, UNIT, None)?);
        if !listed && running {
            let enable = rabbitmq_plugins(["enable", PLUGIN]);
            actions.push(Action::run_as(ActionKind::Service, enable));
        }
        let password = password(context).unwrap_or_else(|_| Secret::new(String::new()));
        let wanted = wanted(context, &password);
        let found = match running {
            true => Some(read(context, &wanted, listed)?),
            false => None,
        };
        let changes = found.as_ref().map_or_else(
            || Found::default().changes(&wanted),
            |found| found.changes(&wanted),
        );
        if let Some(found) = &found {
            actions.extend(claims(context, found).into_iter().map(Action::record));
        }
        // What the look found goes with the provisioning (a second read
        // would boot another VM); `None`: the server was not running yet.
        actions.extend(Action::change(Provision {
            planned: changes,
            looked: found,
            config: context.config.rabbitmq.clone(),
        }));
        let ours = context.facts().rabbitmq.installed_by_us();
        if ours && !(running && cluster_name_set(context, &password)) {
            actions.extend(Action::change(SetClusterName {
                name: cluster_name(),
            }));
        }
        Ok(actions)
    }

    /// Checks as the application would, without `rabbitmqctl` (each of its
    /// calls starts an Erlang VM): AMQP login, then the management API,
    /// which answers only for a user with the right password and tag.
    fn verify(&self, context: &Context) -> Result<(), StepError> {
        services::check_running(context, UNIT)?;
        let password = password(context)?;
        amqp_login(context, &password)?;
        user_complete(context, &password)
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        Self::removals(context)
    }
}

fn server_packages(_context: &Context) -> Result<services::ServerPackages, StepError> {
    Ok(services::ServerPackages {
        server: Server::Rabbitmq,
        names: vec![PACKAGE.into()],
    })
}

/// The package's install starts the node: the plugin goes in
/// `enabled_plugins` before it, so the node boots with it (a later
/// `rabbitmq-plugins enable` would start one more Erlang VM).
fn before_install(context: &Context) -> Result<Vec<Action>, StepError> {
    let plugins = enabled_plugins(context)?;
    Ok(match plugins.iter().any(|plugin| plugin == PLUGIN) {
        true => Vec::new(),
        false => vec![plugins_file_action(context, plugins)],
    })
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
        let mut export = None;
        let mut exported = || -> Result<serde_json::Value, StepError> {
            match &export {
                Some(export) => Ok(serde_json::Value::clone(export)),
                None => Ok(export.insert(export_definitions()?).clone()),
            }
        };
        let mut actions = Vec::new();
        let user = format!("RabbitMQ user `{}`", config.username);
        match kept_because(context.origin(&user_of(context)), &user) {
            Some(kept) => actions.push(Action::check(kept)),
            None if named(&exported()?["users"], "name", &config.username) => {
                actions.push(Action::run(rabbitmqctl([
                    "delete_user",
                    config.username.as_str(),
                ])));
            }
            None => {}
        }
        if config.vhost != "/" {
            let vhost = format!("RabbitMQ vhost `{}`", config.vhost);
            match kept_because(context.origin(&vhost_of(context)), &vhost) {
                Some(kept) => actions.push(Action::check(kept)),
                None if named(&exported()?["vhosts"], "name", &config.vhost) => {
                    actions.push(Action::run(rabbitmqctl([
                        "delete_vhost",
                        config.vhost.as_str(),
                    ])));
                }
                None => {}
            }
        }
        actions.extend(services::purge_actions(
            context,
            Server::Rabbitmq,
            &[PACKAGE],
            UNIT,
        )?);
        Ok(actions)
    }
}

/// The user, as the state records its origin.
fn user_of(context: &Context) -> Object {
    Object::RabbitmqUser(context.config.rabbitmq.username.clone())
}

/// The vhost, as the state records its origin.
fn vhost_of(context: &Context) -> Object {
    Object::Vhost(context.config.rabbitmq.vhost.clone())
}

/// What to record, before anything is made, of whether the user and the
/// vhost (never `/`) were there.
fn claims(context: &Context, found: &Found) -> Vec<Fact> {
    let mut claims = vec![(user_of(context), found.user())];
    if context.config.rabbitmq.vhost != "/" {
        claims.push((vhost_of(context), found.vhost));
    }
    (claims.into_iter())
        .filter_map(|(object, present)| context.claim_of(object, present))
        .collect()
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
/// The exit statuses of RabbitMQ's CLI tools that mean "the node cannot
/// be reached now" (a node still booting, or too busy to answer in time):
/// sysexits' `EX_UNAVAILABLE` 69 and `EX_TEMPFAIL` 75, as RabbitMQ's CLI
/// uses them (rabbitmq-server `deps/rabbitmq_cli/lib/rabbitmq/cli/core/exit_codes.ex`).
const NOT_NOW: &[i32] = &[69, 75];

/// `rabbitmqctl` with `args`; run again while the node cannot be reached
/// (an export is a read, an import of the same definitions makes nothing
/// new; a delete that did its work before the CLI gave up fails the second
/// time as any failure does, and a re-run finishes).
pub(crate) fn rabbitmqctl<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("rabbitmqctl")
        .inherit("RABBITMQ_NODENAME")
        .args(args)
        .timeout(Duration::from_secs(120))
        .retry_on(NOT_NOW)
}

fn rabbitmq_plugins<'a>(args: impl IntoIterator<Item = &'a str>) -> Command {
    Command::new("rabbitmq-plugins")
        .inherit("RABBITMQ_NODENAME")
        .args(args)
        .timeout(Duration::from_secs(120))
        .retry_on(NOT_NOW)
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

/// The user the profile wants, with the credentials file's `password`.
fn wanted<'a>(context: &'a Context, password: &'a Secret) -> Wanted<'a> {
    let config = &context.config.rabbitmq;
    Wanted {
        username: &config.username,
        vhost: &config.vhost,
        tags: &config.tags,
        password,
    }
}

/// The plugins `enabled_plugins` lists (an Erlang list, `[a,b].`); none
/// when the file is not there.
fn enabled_plugins(context: &Context) -> Result<Vec<String>, StepError> {
    let Some(text) = host::fs::read_optional(&context.host.path(PLUGINS_FILE))? else {
        return Ok(Vec::new());
    };
    let list = text
        .trim()
        .strip_suffix('.')
        .map(str::trim_end)
        .and_then(|list| list.strip_prefix('['))
        .and_then(|list| list.strip_suffix(']'));
    let Some(list) = list else {
        return Err(StepError::failed(
            format!("`{PLUGINS_FILE}` is not an Erlang list of plugins like `[{PLUGIN}].`"),
            "fix the file (or remove it), then run `stackinstall install` again",
        ));
    };
    Ok(list
        .split(',')
        .map(str::trim)
        .filter(|plugin| !plugin.is_empty())
        .map(String::from)
        .collect())
}

/// Writes `enabled_plugins` as `plugins` and the management plugin, for a
/// server that starts after it (what `rabbitmq-plugins enable --offline`
/// writes, without an Erlang VM).
fn plugins_file_action(context: &Context, plugins: Vec<String>) -> Action {
    let contents = plugins_file(plugins);
    Action::write(
        context.host.locate(PLUGINS_FILE),
        contents.into_bytes(),
        0o644,
    )
}

/// `enabled_plugins` listing `plugins` and the management plugin.
fn plugins_file(mut plugins: Vec<String>) -> String {
    plugins.push(PLUGIN.to_string());
    format!("[{}].\n", plugins.join(","))
}

/// `enabled_plugins` as a host without plugins gets it, for `render`.
fn rendered(
    _config: &crate::config::Config,
) -> Result<Vec<(String, String)>, crate::render::RenderError> {
    Ok(vec![(
        "rabbitmq-enabled_plugins".into(),
        plugins_file(Vec::new()),
    )])
}

/// What the running server has of the user: the management API as the
/// user, when the plugin is on and it shows everything in place; else one
/// `rabbitmqctl export_definitions`.
fn read(context: &Context, wanted: &Wanted, management: bool) -> Result<Found, StepError> {
    if management && let Ok((tags, true)) = management_view(context, wanted.password) {
        let found = Found {
            tags: Some(tags),
            password_matches: true,
            vhost: true,
            permissions: true,
        };
        if found.changes(wanted).is_empty() {
            return Ok(found);
        }
    }
    Ok(Found::from_export(&export_definitions()?, wanted))
}

/// `rabbitmqctl export_definitions` parsed: users (their hashes too, so
/// the output stays out of the log), vhosts and permissions.
fn export_definitions() -> Result<serde_json::Value, StepError> {
    let command =
        rabbitmqctl(["export_definitions", "-", "--format", "json", "--silent"]).unlogged_stdout();
    let output = command.run()?;
    serde_json::from_str(&output.stdout).map_err(|error| {
        StepError::failed(
            format!("`{command}` printed something that is not JSON: {error}"),
            "check the RabbitMQ version (3.8.2 or newer) and `rabbitmqctl status`",
        )
    })
}

/// Makes what is missing of the user and its vhost with one
/// `import_definitions` (the password's hash on stdin). Reads the server
/// only when the look could not (it was not running then): it then records
/// what was there and imports what that read finds missing.
struct Provision {
    planned: Vec<Import>,
    looked: Option<Found>,
    config: crate::config::Rabbitmq,
}

impl Change for Provision {
    fn kind(&self) -> ActionKind {
        ActionKind::Command
    }

    fn lines(&self) -> Vec<String> {
        let no_password = Secret::new(String::new());
        let wanted = Wanted {
            username: &self.config.username,
            vhost: &self.config.vhost,
            tags: &self.config.tags,
            password: &no_password,
        };
        (self.planned.iter())
            .map(|change| change.describe(&wanted))
            .collect()
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let password = password(context)?;
        let (found, planned) = match self.looked {
            Some(found) => (found, Some(self.planned)),
            None => {
                await_node(context)?;
                let found = read(context, &wanted(context, &password), true)?;
                for fact in claims(context, &found) {
                    context.record(&fact)?;
                }
                (found, None)
            }
        };
        let wanted = wanted(context, &password);
        let changes = planned.unwrap_or_else(|| found.changes(&wanted));
        if changes.contains(&Import::SetPassword) {
            let user = wanted.username;
            context.ui.warn(&format!("the password of RabbitMQ user `{user}` was not the credentials file's (changed by hand?): setting it back"));
        }
        if changes.is_empty() {
            return Ok(false);
        }
        rabbitmqctl(["import_definitions", "--format", "json"])
            .stdin_secret(definitions::import(&wanted, &changes))
            .run()?;
        await_import(context, &password)?;
        Ok(true)
    }
}

/// Waits until a server this run started listens for AMQP and the
/// management API.
fn await_node(context: &Context) -> Result<(), StepError> {
    let config = &context.config.rabbitmq;
    let address = services::login_address(config.host.as_deref());
    let deadline = Instant::now() + STARTUP;
    for port in [config.port, config.management_port] {
        while !listens(&address, port) {
            if Instant::now() > deadline {
                return Err(StepError::failed(
                    format!(
                        "RabbitMQ does not listen on {address}:{port} {} s after its start",
                        STARTUP.as_secs()
                    ),
                    "look at `rabbitmq-diagnostics status` and the server's log, then run `stackinstall install` again",
                ));
            }
            host::command::pause(Duration::from_millis(250))?;
        }
    }
    Ok(())
}

/// Whether something accepts TCP connections at `address`:`port`.
fn listens(address: &str, port: u16) -> bool {
    (address, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|socket| TcpStream::connect_timeout(&socket, Duration::from_secs(2)).is_ok())
}

/// Waits (up to 30 s) until the import has landed: the server applies it
/// after `import_definitions` returns, so the user logs in over AMQP and
/// the management API shows it its tags and `.* .* .*` permissions on the
/// vhost (what `verify` then checks) only some time later.
fn await_import(context: &Context, password: &Secret) -> Result<(), StepError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let landed = amqp_login(context, password).and_then(|()| user_complete(context, password));
        match landed {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) => host::command::pause(Duration::from_millis(200))?,
        }
    }
}

/// Fails unless the management API shows the user its profile's tags and
/// `.* .* .*` permissions on its vhost.
fn user_complete(context: &Context, password: &Secret) -> Result<(), StepError> {
    let config = &context.config.rabbitmq;
    let (tags, full) = management_view(context, password)?;
    if config.tags.iter().all(|tag| tags.contains(tag)) && full {
        return Ok(());
    }
    Err(StepError::failed(
        format!(
            "RabbitMQ user `{}` lacks its tags ({}) or its `.* .* .*` permissions on `{}`",
            config.username,
            config.tags.join(", "),
            config.vhost
        ),
        "run `stackinstall install --redo rabbitmq`",
    ))
}

/// The user's tags and whether it has `.* .* .*` on the vhost, as the
/// management API shows them to the user itself.
fn management_view(context: &Context, password: &Secret) -> Result<(Vec<String>, bool), StepError> {
    let config = &context.config.rabbitmq;
    let (user, vhost) = (encode(&config.username), encode(&config.vhost));
    let account = management_get(context, password, &format!("users/{user}"))?;
    let permissions = management_get(context, password, &format!("permissions/{vhost}/{user}"))?;
    let full = ["configure", "write", "read"]
        .iter()
        .all(|key| permissions[*key] == EVERYTHING);
    Ok((definitions::tags(&account["tags"]), full))
}

/// The cluster name RabbitMQ would compute itself, `rabbit@` and the
/// host's short name (its default node name).
fn cluster_name() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let short = hostname.trim().split('.').next().unwrap_or_default();
    format!(
        "rabbit@{}",
        if short.is_empty() { "localhost" } else { short }
    )
}

/// Whether the server has a cluster name of its own (the global parameter
/// `cluster_name`). Unset, RabbitMQ 3.x computes its default from the host's
/// fully qualified name (`rabbit_nodes:cluster_name_default/0`, through
/// `rabbit_net:hostname/0`) for every AMQP connection's `connection.start`:
/// where the host's name resolves only through a DNS server that does not
/// answer, each connection waits for that lookup (6 s in the box).
fn cluster_name_set(context: &Context, password: &Secret) -> bool {
    management_get(context, password, "global-parameters/cluster_name").is_ok()
}

/// Sets the cluster name when the server has none; returns whether it did.
/// Sets RabbitMQ's cluster name through the management API: unset, the
/// server looks the host's name up at every AMQP connection (a host
/// without DNS waits for it each time).
struct SetClusterName {
    name: String,
}

impl Change for SetClusterName {
    fn kind(&self) -> ActionKind {
        ActionKind::Service
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "set RabbitMQ's cluster name to `{}` through the management API (unset, the server looks the host's name up at every AMQP connection: a host without DNS waits for it each time)",
            self.name
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let password = password(context)?;
        if cluster_name_set(context, &password) {
            return Ok(false);
        }
        let body = serde_json::json!({ "name": self.name });
        management_put(context, &password, "cluster-name", &body)?;
        Ok(true)
    }
}

/// Logs in over AMQP at the host's address, as the application will.
fn amqp_login(context: &Context, password: &Secret) -> Result<(), StepError> {
    let config = &context.config.rabbitmq;
    let host = services::login_address(config.host.as_deref());
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

/// PUTs `body` to `/api/PATH` of the management API at the host's address
/// as the application user (an administrator).
fn management_put(
    context: &Context,
    password: &Secret,
    path: &str,
    body: &serde_json::Value,
) -> Result<(), StepError> {
    let config = &context.config.rabbitmq;
    let url = format!(
        "http://{}:{}/api/{path}",
        services::login_address(config.host.as_deref()),
        config.management_port
    );
    let failed = |why: String| {
        StepError::failed(
            format!(
                "the management API at `{url}` refused a change by `{}`: {why}",
                config.username
            ),
            "check that the user has the `administrator` tag (`[rabbitmq] tags`), then `stackinstall install --redo rabbitmq`",
        )
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .put(&url)
        .basic_auth(&config.username, Some(password.expose()))
        .json(body)
        .send()
        .map_err(|e| failed(e.to_string()))?;
    match response.status().is_success() {
        true => Ok(()),
        false => Err(failed(format!("HTTP {}", response.status()))),
    }
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
        services::login_address(config.host.as_deref()),
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
