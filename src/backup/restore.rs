//! Restoring an archive: the checks that refuse it before anything
//! changes, the files put back, K3s's datastore and the databases.
//! `commands/restore.rs` runs these between the install's own steps.

use std::path::PathBuf;

use mongodb::bson::RawDocumentBuf;

use super::{Archive, FORMAT, members};
use crate::config::Config;
use crate::context::{Context, SELF_SIGNED_DIR};
use crate::credentials::CREDENTIALS_PATH;
use crate::error::StepError;
use crate::host::{self, Host};

/// Where the archive's configuration is put back: the restore's converge
/// (and later installs, with `--config`) reads it.
pub const RESTORED_CONFIG: &str = "/etc/stackinstall/config.toml";

/// Where an operator's certificate and key from the archive are put back
/// (their original paths were the operator's, maybe on another host).
const RESTORED_PAIR: [&str; 2] = [
    "/etc/stackinstall/tls/restored.crt",
    "/etc/stackinstall/tls/restored.key",
];

/// Refuses an archive that this stackinstall must not restore: a newer
/// format or stackinstall, another profile. Nothing has changed yet.
pub fn check(archive: &Archive, profile: &str) -> Result<(), StepError> {
    let manifest = &archive.manifest;
    let ours = env!("CARGO_PKG_VERSION");
    if manifest.format > FORMAT || is_newer(&manifest.stackinstall, ours) {
        return Err(StepError::input(
            format!(
                "the backup was made by stackinstall {} (archive format {}), newer than this one ({ours}, format {FORMAT}): nothing was changed",
                manifest.stackinstall, manifest.format
            ),
            format!(
                "restore it with stackinstall {} or newer",
                manifest.stackinstall
            ),
        ));
    }
    if manifest.profile != profile {
        return Err(StepError::input(
            format!(
                "the backup is of profile `{}`, and this restore is for profile `{profile}`: nothing was changed",
                manifest.profile
            ),
            format!(
                "pass `--profile {}` (the profile the backup's host was installed with)",
                manifest.profile
            ),
        ));
    }
    Ok(())
}

/// Whether the version `theirs` (`1.2.3`) is newer than `ours`.
pub fn is_newer(theirs: &str, ours: &str) -> bool {
    let parts = |version: &str| -> Vec<u64> {
        (version.split(['.', '-', '+']).take(3))
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    parts(theirs) > parts(ours)
}

/// The configuration of the archive, as it is put back: an operator's
/// certificate and key point where the restore puts them.
pub fn restored_config(archive: &Archive) -> Result<Config, StepError> {
    let text = String::from_utf8_lossy(archive.member(members::CONFIG).unwrap_or_default());
    let mut config: Config = toml::from_str(&text).map_err(|error| {
        StepError::failed(
            format!(
                "the backup's configuration cannot be read: {}",
                error.message()
            ),
            "it was made by another stackinstall: restore with that version",
        )
    })?;
    if !config.install.self_signed && archive.member(members::TLS_CERTIFICATE).is_some() {
        config.install.ssl_cert = Some(PathBuf::from(RESTORED_PAIR[0]));
        config.install.ssl_key = Some(PathBuf::from(RESTORED_PAIR[1]));
    }
    Ok(config)
}

/// Puts the credentials, the configuration, the TLS pair, the K3s token
/// and (on a host without one) the state back; what it put back, for the
/// log and the summary.
pub fn put_files_back(
    host: &Host,
    archive: &Archive,
    config: &Config,
) -> Result<Vec<String>, StepError> {
    let mut done = Vec::new();
    let mut put = |path: &str, bytes: &[u8], mode: u32, private: bool| -> Result<(), StepError> {
        host::backup::write_file(&host.path(path), bytes, mode, private)?;
        done.push(path.to_string());
        Ok(())
    };
    if let Some(bytes) = archive.member(members::CREDENTIALS) {
        put(CREDENTIALS_PATH, bytes, 0o600, true)?;
    }
    let config_text = toml::to_string(config).map_err(|error| {
        StepError::failed(
            format!("cannot write the configuration: {error}"),
            "report this",
        )
    })?;
    put(RESTORED_CONFIG, config_text.as_bytes(), 0o600, true)?;
    if let (Some(certificate), Some(key)) = (
        archive.member(members::TLS_CERTIFICATE),
        archive.member(members::TLS_KEY),
    ) {
        let [certificate_path, key_path] = match config.install.self_signed {
            true => [
                format!("{SELF_SIGNED_DIR}/tls.crt"),
                format!("{SELF_SIGNED_DIR}/tls.key"),
            ],
            false => RESTORED_PAIR.map(String::from),
        };
        put(&certificate_path, certificate, 0o644, true)?;
        put(&key_path, key, 0o600, true)?;
    }
    if let Some(token) = archive.member(members::K3S_TOKEN) {
        put(host::backup::K3S_TOKEN, token, 0o600, false)?;
    }
    let state = host.path(crate::state::STATE_DIR).join("state.toml");
    if let Some(bytes) = archive.member(members::STATE)
        && !host::fs::exists(&state)
    {
        host::backup::write_file(&state, bytes, 0o600, false)?;
        done.push(state.display().to_string());
    }
    Ok(done)
}

/// Puts K3s's datastore back: the etcd snapshot through K3s's cluster
/// reset, or the SQLite files; `false` when the archive has neither.
pub fn restore_k3s(context: &Context, archive: &Archive) -> Result<bool, StepError> {
    let host = &context.host;
    let failed = |error: host::backup::BackupError| {
        StepError::failed(
            format!("cannot restore K3s's datastore: {error}"),
            "look at `journalctl -u k3s`; run the same `stackinstall restore` again once it is fixed",
        )
    };
    if let Some(snapshot) = archive.member(members::K3S_ETCD_SNAPSHOT) {
        let work = host.path(members::WORK_DIR);
        host::backup::k3s_etcd_restore(host, &work, snapshot).map_err(failed)?;
        return Ok(true);
    }
    let prefix = format!("{}/", members::K3S_SQLITE_DIR);
    let files: Vec<(String, Vec<u8>)> = (archive.entries.iter())
        .filter_map(|entry| {
            let name = entry.name.strip_prefix(&prefix)?;
            Some((name.to_string(), entry.bytes.clone()))
        })
        .filter(|(name, _)| host::backup::K3S_SQLITE.contains(&name.as_str()))
        .collect();
    if files.is_empty() {
        return Ok(false);
    }
    host::backup::k3s_sqlite_restore(host, &files).map_err(failed)?;
    Ok(true)
}

/// Replays the MySQL dump, puts every MongoDB collection of the archive
/// back (each emptied first) and imports RabbitMQ's definitions of the
/// profile's user and vhost; what it restored.
pub fn restore_databases(context: &Context, archive: &Archive) -> Result<Vec<String>, StepError> {
    let mut done = Vec::new();
    if let Some(dump) = archive.member(members::MYSQL_DUMP) {
        host::backup::mysql_import(&context.config.mysql.socket, &String::from_utf8_lossy(dump))
            .map_err(|error| {
                StepError::failed(
                    format!("cannot restore the MySQL dump: {error}"),
                    "check that MySQL runs and root logs in with `sudo mysql`",
                )
            })?;
        done.push(format!(
            "MySQL databases {}",
            context.config.mysql.databases.join(", ")
        ));
    }
    let wanted = &context.config.mongodb.databases.clone().unwrap_or_default();
    let collections: Vec<_> = (archive.entries.iter())
        .filter_map(|entry| Some((members::mongodb_collection(&entry.name)?, &entry.bytes)))
        .filter(|((database, _), _)| wanted.is_empty() || wanted.contains(database))
        .collect();
    if !collections.is_empty() {
        restore_mongodb(context, &collections)?;
        done.push(format!("{} MongoDB collections", collections.len()));
    }
    if let Some(definitions) = archive.member(members::RABBITMQ_DEFINITIONS) {
        let ours = ours_of(context, definitions)?;
        crate::steps::rabbitmq::rabbitmqctl(["import_definitions", "--format", "json"])
            .stdin_secret(crate::secret::Secret::new(ours))
            .run()?;
        done.push(format!(
            "RabbitMQ user `{}` and vhost `{}`",
            context.config.rabbitmq.username, context.config.rabbitmq.vhost
        ));
    }
    Ok(done)
}

/// The definitions of the profile's user and of its vhost only (the
/// server may hold others' users: they are not ours to set back).
fn ours_of(context: &Context, definitions: &[u8]) -> Result<String, StepError> {
    let config = &context.config.rabbitmq;
    let all: serde_json::Value = serde_json::from_slice(definitions).map_err(|error| {
        StepError::failed(
            format!("the backup's RabbitMQ definitions are not JSON: {error}"),
            "use another backup",
        )
    })?;
    let keep = |key: &str, field: &str, value: &str| -> serde_json::Value {
        (all[key].as_array().into_iter().flatten())
            .filter(|item| item[field] == value)
            .cloned()
            .collect()
    };
    let ours = serde_json::json!({
        "users": keep("users", "name", &config.username),
        "vhosts": keep("vhosts", "name", &config.vhost),
        "permissions": (all["permissions"].as_array().into_iter().flatten())
            .filter(|item| item["user"] == config.username.as_str() && item["vhost"] == config.vhost.as_str())
            .cloned()
            .collect::<serde_json::Value>(),
        "queues": keep("queues", "vhost", &config.vhost),
        "exchanges": keep("exchanges", "vhost", &config.vhost),
        "bindings": keep("bindings", "vhost", &config.vhost),
        "policies": keep("policies", "vhost", &config.vhost),
    });
    Ok(ours.to_string())
}

fn restore_mongodb(
    context: &Context,
    collections: &[((String, String), &Vec<u8>)],
) -> Result<(), StepError> {
    let client = crate::steps::mongodb::administrator_client(context)?;
    let restore = async {
        for ((database, collection), bytes) in collections {
            let documents = split_bson(bytes).map_err(|why| {
                mongodb::error::Error::custom(format!("{database}.{collection}: {why}"))
            })?;
            let target = client
                .database(database)
                .collection::<RawDocumentBuf>(collection);
            target.delete_many(mongodb::bson::doc! {}).await?;
            if !documents.is_empty() {
                target.insert_many(documents).await?;
            }
        }
        Ok::<_, mongodb::error::Error>(())
    };
    context.block_on(restore)?.map_err(|error| {
        StepError::failed(
            format!("cannot restore MongoDB: {error}"),
            "check that mongod runs (`systemctl status mongod`)",
        )
    })
}

/// The documents of a `.bson` member: each starts with its length
/// (little-endian i32, itself included).
pub fn split_bson(bytes: &[u8]) -> Result<Vec<RawDocumentBuf>, String> {
    let mut documents = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let length = rest
            .get(..4)
            .map(|head| i32::from_le_bytes([head[0], head[1], head[2], head[3]]))
            .filter(|length| *length >= 5 && *length as usize <= rest.len())
            .ok_or("a document's length runs past the member")? as usize;
        let document = RawDocumentBuf::from_bytes(rest[..length].to_vec())
            .map_err(|error| error.to_string())?;
        documents.push(document);
        rest = &rest[length..];
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(is_newer("0.10.0", "0.9.9"));
        assert!(is_newer("1.0.0", "0.1.0"));
        assert!(!is_newer("0.1.0", "0.1.0"));
        assert!(!is_newer("0.1.0-rc1", "0.1.0"));
    }

    #[test]
    fn a_truncated_bson_member_is_refused() {
        let document = mongodb::bson::rawdoc! { "a": 1 };
        let mut bytes = document.as_bytes().to_vec();
        bytes.extend_from_slice(document.as_bytes());
        assert_eq!(split_bson(&bytes).unwrap().len(), 2);
        assert!(split_bson(&bytes[..bytes.len() - 1]).is_err());
    }
}
