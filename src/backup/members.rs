//! What a backup takes, member by member, from what the state says the
//! install made: a step without a done checkpoint is left out (and the
//! manifest says so); a step that ran but whose data cannot be taken
//! fails the backup (a backup silently missing a database is worse than
//! none).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mongodb::bson::doc;

use super::{Entry, LeftOut};
use crate::context::Context;
use crate::error::StepError;
use crate::host::{self, backup::BackupError, kube};
use crate::step_id::StepId;

/// Member names, as restore reads them.
pub const CREDENTIALS: &str = "stackinstall/credentials.toml";
pub const STATE: &str = "stackinstall/state.toml";
pub const CONFIG: &str = "stackinstall/config.toml";
pub const TLS_CERTIFICATE: &str = "tls/tls.crt";
pub const TLS_KEY: &str = "tls/tls.key";
pub const RELEASE_VALUES: &str = "helm/values.yaml";
pub const K3S_TOKEN: &str = "k3s/token";
pub const K3S_SQLITE_DIR: &str = "k3s/db";
pub const K3S_ETCD_SNAPSHOT: &str = "k3s/etcd-snapshot";
pub const MYSQL_DUMP: &str = "mysql/dump.sql";
pub const MONGODB_DIR: &str = "mongodb";
pub const RABBITMQ_DEFINITIONS: &str = "rabbitmq/definitions.json";

/// MongoDB's own databases, never dumped.
const MONGODB_SYSTEM: [&str; 3] = ["admin", "local", "config"];

/// Where an etcd snapshot is taken before it is read into the archive.
pub const WORK_DIR: &str = "/var/lib/stackinstall/backups/.work";

/// Every member the host has, and what was left out and why.
pub fn collect(context: &Context) -> Result<(Vec<Entry>, Vec<LeftOut>), StepError> {
    if host::backup::recover_k3s(&context.host).map_err(|error| {
        StepError::failed(
            format!("cannot start K3s, which a killed backup left stopped: {error}"),
            "look at `journalctl -u k3s`, then run `systemctl start k3s`",
        )
    })? {
        context
            .ui
            .warn("K3s had been left stopped by a backup that was killed: started it again");
    }
    // Read while K3s runs (it is stopped for a moment below).
    let domain = gateway_domain(context);
    let mut entries = own_files(context)?;
    let mut left_out = Vec::new();
    let parts: [(StepId, &str, Collector); 6] = [
        (StepId::Tls, "the TLS certificate and key", tls),
        (StepId::Release, "the release's values", release_values),
        (StepId::K3s, "K3s's datastore and token", k3s),
        (StepId::Mysql, "the MySQL databases", mysql),
        (StepId::Mongodb, "the MongoDB databases", mongodb),
        (StepId::Rabbitmq, "RabbitMQ's definitions", rabbitmq),
    ];
    for (step, what, collector) in parts {
        if !context.state.was_done(step) {
            left_out.push(LeftOut {
                what: what.into(),
                why: format!("the `{}` step has not run on this host", step.name()),
            });
            continue;
        }
        tracing::info!("backup: {what}");
        entries.extend(collector(context).map_err(|error| {
            StepError::failed(
                format!("cannot back up {what}: {error}"),
                "fix what the error says and run `stackinstall backup` again; no archive was written",
            )
        })?);
    }
    entries.push(config_entry(context, &entries, domain)?);
    Ok((entries, left_out))
}

type Collector = fn(&Context) -> Result<Vec<Entry>, StepError>;

/// The credentials file, the state file and the effective configuration.
fn own_files(context: &Context) -> Result<Vec<Entry>, StepError> {
    let mut entries = Vec::new();
    let files = [
        (
            CREDENTIALS,
            "the credentials file",
            context.credentials_file().path(),
        ),
        (STATE, "the state file", context.state_file().path()),
    ];
    for (name, what, path) in files {
        if let Some(bytes) = host::backup::read_member(path)? {
            entries.push(Entry::new(name, what, bytes));
        }
    }
    Ok(entries)
}

/// The effective configuration, with what the install was run for that
/// only its flags said: the domain (the live Gateway's HTTPS host) and
/// whether the certificate is the self-signed one.
fn config_entry(
    context: &Context,
    entries: &[Entry],
    domain: Option<String>,
) -> Result<Entry, StepError> {
    let mut config = context.config.clone();
    if config.install.domain.is_none() {
        config.install.domain =
            domain.and_then(|domain| crate::config::Domain::parse(&domain).ok());
    }
    let certificate = (entries.iter()).find(|entry| entry.name == TLS_CERTIFICATE);
    let self_signed = context
        .host
        .path(crate::context::SELF_SIGNED_DIR)
        .join("tls.crt");
    if let Some(certificate) = certificate
        && host::backup::read_member(&self_signed)?.as_deref() == Some(&certificate.bytes[..])
    {
        config.install.self_signed = true;
        config.install.ssl_cert = None;
        config.install.ssl_key = None;
    }
    let text = toml::to_string(&config).map_err(|error| {
        StepError::failed(
            format!("cannot write the configuration as TOML: {error}"),
            "report this: the configuration type cannot be serialized",
        )
    })?;
    Ok(Entry::new(
        CONFIG,
        "the effective configuration (with the installed domain)",
        text.into_bytes(),
    ))
}

/// The host of the profile's Gateway's HTTPS server, when it is there.
fn gateway_domain(context: &Context) -> Option<String> {
    let config = &context.config;
    let output = kube::kubectl([
        "get",
        "gateways.networking.istio.io",
        &config.istio.gateway,
        "-n",
        &config.cluster.namespace,
        "-o",
        "json",
    ])
    .run()
    .ok()?;
    let gateway: serde_json::Value = serde_json::from_str(&output.stdout).ok()?;
    crate::steps::gateway::https_host(&gateway)
}

/// The pair as the cluster holds it (the application namespace's Secret),
/// read without logging what `kubectl` printed.
fn tls(context: &Context) -> Result<Vec<Entry>, StepError> {
    let config = &context.config;
    let output = kube::kubectl([
        "get",
        "secret",
        &config.istio.tls_secret,
        "-n",
        &config.cluster.namespace,
        "-o",
        "json",
    ])
    .unlogged_stdout()
    .run()?;
    let secret: serde_json::Value = serde_json::from_str(&output.stdout).map_err(|error| {
        StepError::failed(
            format!("`kubectl get secret` printed something that is not JSON: {error}"),
            "check the cluster with `kubectl get secret -A`",
        )
    })?;
    let field = |key: &str| -> Result<Vec<u8>, StepError> {
        let text = secret["data"][key].as_str().unwrap_or_default();
        STANDARD
            .decode(text)
            .ok()
            .filter(|bytes| !bytes.is_empty())
            .ok_or_else(|| {
                StepError::failed(
                    format!("the Secret `{}` has no `{key}`", config.istio.tls_secret),
                    "run `stackinstall install --redo tls`",
                )
            })
    };
    Ok(vec![
        Entry::new(TLS_CERTIFICATE, "the TLS certificate", field("tls.crt")?),
        Entry::new(TLS_KEY, "the TLS certificate's key", field("tls.key")?),
    ])
}

/// The values the release was installed with (`helm get values`: the
/// user-supplied ones, which hold the passwords; not logged).
fn release_values(context: &Context) -> Result<Vec<Entry>, StepError> {
    let chart = &context.config.chart;
    let output = kube::helm([
        "get",
        "values",
        &chart.release,
        "-n",
        &context.config.cluster.namespace,
        "-o",
        "yaml",
    ])
    .unlogged_stdout()
    .run()?;
    Ok(vec![Entry::new(
        RELEASE_VALUES,
        "the release's values (helm get values)",
        output.stdout.into_bytes(),
    )])
}

/// The token, then an etcd snapshot when K3s runs etcd, else a copy of
/// its SQLite datastore taken with K3s stopped.
fn k3s(context: &Context) -> Result<Vec<Entry>, StepError> {
    let host = &context.host;
    let token_path = host.path(host::backup::K3S_TOKEN);
    let token = host::backup::read_member(&token_path)?.ok_or_else(|| {
        StepError::failed(
            format!("K3s's token `{}` is missing", token_path.display()),
            "check that K3s runs as a server on this host (`systemctl status k3s`)",
        )
    })?;
    let mut entries = vec![Entry::new(
        K3S_TOKEN,
        "K3s's server token (a snapshot needs it)",
        token,
    )];
    let failed = |error: BackupError| {
        StepError::failed(
            error.to_string(),
            "look at `systemctl status k3s` and `journalctl -u k3s`",
        )
    };
    if host::fs::exists(&host.path(host::backup::K3S_ETCD)) {
        let snapshot = host::backup::k3s_etcd_snapshot(&host.path(WORK_DIR)).map_err(failed)?;
        entries.push(Entry::new(
            K3S_ETCD_SNAPSHOT,
            "K3s's etcd snapshot (k3s etcd-snapshot save)",
            snapshot,
        ));
        return Ok(entries);
    }
    let files = host::backup::k3s_sqlite_copy(host).map_err(failed)?;
    if files.is_empty() {
        return Err(StepError::failed(
            "K3s has neither an etcd directory nor a SQLite datastore under `/var/lib/rancher/k3s/server/db`",
            "check that K3s runs as a server on this host (`systemctl status k3s`)",
        ));
    }
    for (name, bytes) in files {
        entries.push(Entry::new(
            format!("{K3S_SQLITE_DIR}/{name}"),
            "K3s's SQLite datastore (copied with K3s stopped)",
            bytes,
        ));
    }
    Ok(entries)
}

/// The profile's databases, dumped as root through the socket.
fn mysql(context: &Context) -> Result<Vec<Entry>, StepError> {
    let config = &context.config.mysql;
    let dump = host::backup::mysql_dump(&config.socket, &config.databases).map_err(|error| {
        StepError::failed(
            error.to_string(),
            "check that MySQL runs and root logs in with `sudo mysql`",
        )
    })?;
    Ok(vec![Entry::new(
        MYSQL_DUMP,
        format!(
            "a logical dump of the MySQL databases {}",
            config.databases.join(", ")
        ),
        dump,
    )])
}

/// Every collection of `[mongodb] databases` (unset: every database but
/// MongoDB's own), as mongodump keeps them: `mongodb/DB/COLLECTION.bson`,
/// the documents' BSON one after another.
fn mongodb(context: &Context) -> Result<Vec<Entry>, StepError> {
    let client = crate::steps::mongodb::administrator_client(context)?;
    let wanted = &context.config.mongodb.databases.clone().unwrap_or_default();
    let dump = async {
        let mut entries = Vec::new();
        for database_name in client.list_database_names().await? {
            let taken = match wanted.is_empty() {
                true => !MONGODB_SYSTEM.contains(&database_name.as_str()),
                false => wanted.contains(&database_name),
            };
            if !taken {
                continue;
            }
            let database = client.database(&database_name);
            for collection in database.list_collection_names().await? {
                if collection.starts_with("system.") {
                    continue;
                }
                let mut cursor = database
                    .collection::<mongodb::bson::RawDocumentBuf>(&collection)
                    .find(doc! {})
                    .await?;
                let mut bytes = Vec::new();
                let mut count = 0;
                while cursor.advance().await? {
                    bytes.extend_from_slice(cursor.current().as_bytes());
                    count += 1;
                }
                entries.push(Entry::new(
                    mongodb_member(&database_name, &collection),
                    format!("MongoDB {database_name}.{collection} ({count} documents)"),
                    bytes,
                ));
            }
        }
        Ok::<_, mongodb::error::Error>(entries)
    };
    context.block_on(dump)?.map_err(|error| {
        StepError::failed(
            format!("cannot dump MongoDB: {error}"),
            "check that mongod runs (`systemctl status mongod`)",
        )
    })
}

/// The member of a collection; a `/` or `%` in a name is escaped, so the
/// name stays one part.
pub fn mongodb_member(database: &str, collection: &str) -> String {
    let escape = |name: &str| name.replace('%', "%25").replace('/', "%2F");
    format!(
        "{MONGODB_DIR}/{}/{}.bson",
        escape(database),
        escape(collection)
    )
}

/// The database and collection of a member `mongodb/DB/COLLECTION.bson`.
pub fn mongodb_collection(member: &str) -> Option<(String, String)> {
    let unescape = |name: &str| name.replace("%2F", "/").replace("%25", "%");
    let rest = member.strip_prefix(MONGODB_DIR)?.strip_prefix('/')?;
    let (database, file) = rest.split_once('/')?;
    let collection = file.strip_suffix(".bson")?;
    Some((unescape(database), unescape(collection)))
}

/// `rabbitmqctl export_definitions`: users (with their password hashes),
/// vhosts, permissions, queues, exchanges and bindings; not logged.
fn rabbitmq(_context: &Context) -> Result<Vec<Entry>, StepError> {
    let output = crate::steps::rabbitmq::rabbitmqctl([
        "export_definitions",
        "-",
        "--format",
        "json",
        "--silent",
    ])
    .unlogged_stdout()
    .run()?;
    Ok(vec![Entry::new(
        RABBITMQ_DEFINITIONS,
        "RabbitMQ's definitions (rabbitmqctl export_definitions)",
        output.stdout.into_bytes(),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_name_with_a_slash_stays_one_member_part() {
        let member = mongodb_member("app", "a/b%c");
        assert_eq!(member, "mongodb/app/a%2Fb%25c.bson");
        assert!(super::super::safe_name(&member));
        assert_eq!(
            mongodb_collection(&member),
            Some(("app".into(), "a/b%c".into()))
        );
    }
}
