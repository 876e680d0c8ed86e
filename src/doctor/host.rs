//! The host's services as the pods use them: a real login with the
//! credentials file's password at the address pods reach (MySQL over TCP,
//! MongoDB with SCRAM, RabbitMQ over AMQP and its management API). A
//! refused password is named apart from a server that does not answer.
//! The NFS export, disk space, certificate and registry token are in
//! [`super::platform`] and [`super::tls`].

use crate::steps::StepId;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions, Connection};

use super::{Check, Checked, Finding, Found, Inputs};
use crate::credentials::Account;
use crate::host::service;
use crate::steps::mongodb::users;
use crate::steps::services::login_address;
use crate::steps::{self, services};

/// The host checks.
pub fn checks(inputs: &Arc<Inputs>) -> Vec<Check> {
    vec![
        Check::on("host.mysql", inputs, mysql),
        Check::on("host.mongodb", inputs, mongodb),
        Check::on("host.rabbitmq", inputs, rabbitmq),
        Check::on("host.services", inputs, services),
        Check::on("host.nfs", inputs, super::platform::nfs),
        Check::on("host.disk", inputs, super::platform::disk),
        Check::on("host.certificate", inputs, super::tls::certificate),
        Check::on("host.registry", inputs, super::platform::registry),
    ]
}

/// The units of the host's servers that the install set up (each step
/// with a checkpoint): enabled (they come back after a reboot) and active.
fn services(inputs: &Inputs) -> Checked {
    let os = crate::host::system::os_release(&inputs.host.path("/etc/os-release"))
        .and_then(|fields| fields.get("ID").cloned())
        .unwrap_or_default();
    let config = &inputs.config;
    let units = [
        (StepId::Mysql, steps::mysql::server_unit(config, &os)),
        (StepId::Mongodb, config.mongodb.service.clone()),
        (StepId::Rabbitmq, steps::rabbitmq::UNIT.to_string()),
        (StepId::Nfs, steps::nfs::UNIT.to_string()),
    ];
    let installed: Vec<_> = (units.into_iter())
        .filter(|(step, _)| inputs.installed_steps.contains(step))
        .collect();
    if installed.is_empty() {
        return Err("no host server step has run (mysql, mongodb, rabbitmq, nfs)".into());
    }
    let container = crate::host::fs::read_optional(&inputs.host.path("/run/systemd/container"))
        .ok()
        .flatten()
        .map(|kind| kind.trim().to_string())
        .filter(|kind| !kind.is_empty());
    let mut found = Found::default();
    for (step, unit) in installed {
        let enabled = service::is_enabled(&unit).map_err(|e| e.to_string())?;
        let active = service::is_active(&unit).map_err(|e| e.to_string())?;
        let state = format!("{unit}: {}", services::unit_state(enabled, active));
        if enabled && active {
            found.notes.push(state);
            continue;
        }
        let (class, fix) = match active {
            false => (
                "service-not-running",
                format!(
                    "`sudo systemctl enable --now {unit}`; why it stopped: `journalctl -u {unit}`"
                ),
            ),
            true => (
                "service-not-enabled",
                format!("`sudo systemctl enable {unit}`"),
            ),
        };
        let what = format!(
            "the `{step}` server `{unit}` {}",
            services::unit_state(enabled, active)
        );
        let mut finding = Finding::error(class, what, fix).with(state);
        if let Some(kind) = container.as_ref().filter(|_| !active) {
            finding = finding.with(format!("this host is a container (`{kind}` in `/run/systemd/container`): a server that needs the kernel's own services, like the NFS server, cannot run in it"));
        }
        found.findings.push(finding);
    }
    Ok(found)
}

/// The service's account from the credentials file, or why there is none.
fn account<'a>(inputs: &'a Inputs, service: &str) -> Result<&'a Account, String> {
    let credentials = inputs.credentials.as_ref().map_err(Clone::clone)?;
    credentials
        .account(service)
        .ok_or_else(|| format!("the credentials file has no `{service}` account"))
}

/// A small runtime for one check's async clients.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
        .block_on(future)
}

/// The finding for a login that failed: refused password or no answer.
fn login_failed(service: &str, who: &str, refused: bool, error: &str) -> Finding {
    let redo = format!("sudo stackinstall install --redo {service}");
    if refused {
        Finding::error(
            "service-login",
            format!("{service} refuses {who} with the credentials file's password: the pods, which use that password, cannot log in"),
            format!("set the password back to the credentials file's: `{redo}` (`stackinstall credentials --reveal` shows it)"),
        )
        .with(crate::secret::redact(error))
    } else {
        Finding::error(
            "service-unreachable",
            format!("{service} does not answer {who} at the address pods use"),
            format!("check that it runs and listens on that address (bind address, firewall), then `{redo}`"),
        )
        .with(crate::secret::redact(error))
    }
}

fn mysql(inputs: &Inputs) -> Checked {
    let account = account(inputs, "mysql")?;
    let config = &inputs.config.mysql;
    let address = login_address(config.host.as_deref());
    let options = MySqlConnectOptions::new()
        .host(&address)
        .port(config.port)
        .username(&account.username)
        .password(account.password.expose())
        .ssl_mode(MySqlSslMode::Preferred)
        .disable_statement_logging();
    let attempt = block_on(async {
        let connecting = MySqlConnection::connect_with(&options);
        match tokio::time::timeout(inputs.limit, connecting).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    });
    let who = format!("`{}` at {address}:{}", account.username, config.port);
    Ok(match attempt {
        Ok(()) => Vec::new(),
        Err(error) => {
            let refused = matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some("28000"));
            vec![login_failed("mysql", &who, refused, &error.to_string())]
        }
    }
    .into())
}

fn mongodb(inputs: &Inputs) -> Checked {
    let account = account(inputs, "mongodb")?;
    let config = &inputs.config.mongodb;
    let address = login_address(config.host.as_deref());
    let who = format!("`{}` at {address}:{}", account.username, config.port);
    let attempt = block_on(users::logs_in(
        &address,
        config.port,
        &account.username,
        &account.password,
    ));
    Ok(match attempt {
        Ok(true) => Vec::new(),
        Ok(false) => vec![login_failed(
            "mongodb",
            &who,
            true,
            "SCRAM-SHA-256 authentication failed",
        )],
        Err(error) => vec![login_failed("mongodb", &who, false, &error.to_string())],
    }
    .into())
}

fn rabbitmq(inputs: &Inputs) -> Checked {
    let account = account(inputs, "rabbitmq")?;
    let config = &inputs.config.rabbitmq;
    let address = login_address(config.host.as_deref());
    let mut findings = Vec::new();
    let who = format!(
        "`{}` at {address}:{} (vhost `{}`)",
        account.username, config.port, config.vhost
    );
    if let Err(error) = amqp_login(inputs, account, &address) {
        let refused = error.contains("ACCESS_REFUSED") || error.contains("authentication");
        findings.push(login_failed("rabbitmq", &who, refused, &error));
    }
    let url = format!("http://{address}:{}/api/whoami", config.management_port);
    let who = format!("`{}` on the management API `{url}`", account.username);
    let client = reqwest::blocking::Client::builder()
        .timeout(inputs.limit.min(Duration::from_secs(10)))
        .build()
        .map_err(|error| error.to_string())?;
    match client
        .get(&url)
        .basic_auth(&account.username, Some(account.password.expose()))
        .send()
    {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => findings.push(login_failed(
            "rabbitmq",
            &who,
            response.status().as_u16() == 401,
            &format!("HTTP {}", response.status()),
        )),
        Err(error) => findings.push(login_failed("rabbitmq", &who, false, &error.to_string())),
    }
    Ok(findings.into())
}

fn amqp_login(inputs: &Inputs, account: &Account, address: &str) -> Result<(), String> {
    use lapin::uri::{AMQPAuthority, AMQPUri, AMQPUserInfo};
    let config = &inputs.config.rabbitmq;
    let uri = AMQPUri {
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo {
                username: account.username.clone(),
                password: account.password.expose().to_string(),
            },
            host: address.to_string(),
            port: config.port,
        },
        vhost: config.vhost.clone(),
        ..AMQPUri::default()
    };
    block_on(async {
        let connecting =
            lapin::Connection::connect_uri(uri, lapin::ConnectionProperties::default());
        match tokio::time::timeout(inputs.limit, connecting).await {
            Ok(Ok(connection)) => connection
                .close(200, "stackinstall doctor")
                .await
                .map_err(|e| e.to_string()),
            Ok(Err(error)) => Err(format!("{error:?}")),
            Err(_) => Err(format!("no answer within {}s", inputs.limit.as_secs())),
        }
    })
}
