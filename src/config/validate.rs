//! The rules configuration values must follow where they are loaded, so
//! that none can inject into what they become: Kubernetes names and labels
//! (RFC 1123), YAML scalars, file paths, program arguments, SQL names and
//! URLs. A value that breaks a rule is refused (exit 2) with the file or
//! variable that set it, the key and the rule.

use std::net::IpAddr;

use super::{Config, ConfigError};
use crate::host::download;

/// A check of one value: `None` when it passes, else the rule it breaks.
type Rule = fn(&str) -> Option<&'static str>;

const LABEL: &str = "must be an RFC 1123 label: at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit";
const SUBDOMAIN: &str =
    "must be an RFC 1123 subdomain: RFC 1123 labels joined by `.`, at most 253 characters";
const RELEASE: &str = "must be a Helm release name: an RFC 1123 label of at most 53 characters";
const PREFIX: &str =
    "must be a URL path starting with `/`, without spaces, quotes or control characters";
const ABSOLUTE: &str =
    "must be an absolute path (starting with `/`) without spaces, control characters or `..`";
const ARGUMENT: &str = "must not start with `-` nor hold spaces, quotes or control characters (it becomes a program argument)";
const VERSION: &str =
    "must be a version: letters, digits, `.`, `+`, `_` and `-`, not starting with `-`";
const SQL_NAME: &str = "must be letters, digits and `_` only (it becomes an SQL name)";
const PORT: &str = "must be a port from 1 to 65535";
const CIDR: &str = "must be an IPv4 or IPv6 network such as `10.42.0.0/16`";
const ADDRESS: &str = "must be empty or an IP address";
const ADDRESSES: &str = "must be IP addresses or host names separated by `,`, without spaces";
const HTTPS: &str = "must be an https:// URL";
const HTTPS_OR_FILE: &str = "must be an https:// URL or a file:/// path";
const SHA256: &str = "must be a SHA-256: 64 hex digits";
const FINGERPRINT: &str = "must be an OpenPGP fingerprint: 40 hex digits (spaces allowed)";
const CONTROL: &str = "must not hold a newline or other control character";
const REFRESH: &str = "must be from 0 (no renewal) to 11 hours (an ECR token lasts 12)";

/// Checks every value of `config`; `source_of` names the layer that set a
/// dotted key.
pub fn check(config: &Config, source_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let refuse = |key: &str, value: &str, rule: &'static str| ConfigError::Refused {
        key: key.to_string(),
        value: value.to_string(),
        source_name: source_of(key),
        rule: rule.to_string(),
    };
    if let Some((key, value)) = control_characters(config) {
        return Err(refuse(&key, &value, CONTROL));
    }
    for (key, value, rule) in values(config) {
        if let Some(broken) = rule(&value) {
            return Err(refuse(&key, &value, broken));
        }
    }
    let hours = config.registry.refresh_hours;
    if hours > 11 {
        return Err(refuse(
            "registry.refresh_hours",
            &hours.to_string(),
            REFRESH,
        ));
    }
    for (key, port) in ports(config) {
        if port == 0 {
            return Err(refuse(&key, &port.to_string(), PORT));
        }
    }
    Ok(())
}

/// Every string value with the rule it must follow.
fn values(config: &Config) -> Vec<(String, String, Rule)> {
    let mut values: Vec<(String, String, Rule)> = Vec::new();
    let mut add = |key: &str, value: &str, rule: Rule| {
        values.push((key.to_string(), value.to_string(), rule));
    };
    add("cluster.namespace", &config.cluster.namespace, label);
    add("chart.release", &config.chart.release, release);
    for (key, value) in [
        ("istio.gateway", &config.istio.gateway),
        ("istio.virtual_service", &config.istio.virtual_service),
        ("istio.tls_secret", &config.istio.tls_secret),
        ("registry.secret", &config.registry.secret),
        ("nfs.storage_class", &config.nfs.storage_class),
    ] {
        add(key, value, subdomain);
    }
    for route in &config.routes {
        add("routes.service", &route.service, label);
        add("routes.prefix", &route.prefix, prefix);
    }
    add("nfs.path", &config.nfs.path, absolute);
    add("mongodb.key_file", &config.mongodb.key_file, absolute);
    add("mysql.socket", &config.mysql.socket, absolute);
    add(
        "mysql.config_dir",
        &config.mysql.config_dir,
        optional_absolute,
    );
    add(
        "mongodb.admin_password_file",
        &config.mongodb.admin_password_file,
        optional_absolute,
    );
    add_arguments(config, &mut add);
    for database in &config.mysql.databases {
        add("mysql.databases", database, sql_name);
    }
    add("mysql.username", &config.mysql.username, sql_name);
    add("cluster.pod_cidr", &config.cluster.pod_cidr, cidr);
    add("cluster.host_ip", &config.cluster.host_ip, optional_address);
    add("mongodb.bind_ip", &config.mongodb.bind_ip, addresses);
    for (key, url) in [
        ("downloads.k3s", &config.downloads.k3s),
        (
            "downloads.k3s_install_script",
            &config.downloads.k3s_install_script,
        ),
        ("downloads.helm", &config.downloads.helm),
        ("downloads.istio", &config.downloads.istio),
    ] {
        add(key, url, https);
    }
    for (key, url) in [
        (
            "downloads.mongodb_repository",
            &config.downloads.mongodb_repository,
        ),
        ("downloads.mongodb_key", &config.downloads.mongodb_key),
    ] {
        add(key, url, https_or_file);
    }
    for pin in config.downloads.pins.values() {
        add("downloads.pins", &pin.sha256, sha256);
    }
    for key in config.mongodb.signing_keys.values() {
        add("mongodb.signing_keys", &key.fingerprint, fingerprint);
    }
    values
}

/// Values that become program arguments (or parts of one).
fn add_arguments(config: &Config, add: &mut impl FnMut(&str, &str, Rule)) {
    for (key, value) in [
        ("versions.k3s", &config.versions.k3s),
        ("versions.helm", &config.versions.helm),
        ("versions.istio", &config.versions.istio),
        ("chart.version", &config.chart.version),
        ("mongodb.version", &config.mongodb.version),
    ] {
        add(key, value, version);
    }
    for (key, value) in [
        ("istio.profile", &config.istio.profile),
        ("chart.reference", &config.chart.reference),
        ("registry.server", &config.registry.server),
        ("registry.region", &config.registry.region),
        ("mongodb.username", &config.mongodb.username),
        ("mongodb.admin_username", &config.mongodb.admin_username),
        ("mongodb.service", &config.mongodb.service),
        ("mysql.package", &config.mysql.package),
        ("mysql.service", &config.mysql.service),
        ("rabbitmq.username", &config.rabbitmq.username),
        ("rabbitmq.vhost", &config.rabbitmq.vhost),
        ("nfs.export_options", &config.nfs.export_options),
    ] {
        add(key, value, argument);
    }
    for tag in &config.rabbitmq.tags {
        add("rabbitmq.tags", tag, argument);
    }
}

/// Every port (a NodePort too: Kubernetes itself keeps those in its range).
fn ports(config: &Config) -> Vec<(String, u16)> {
    let mut ports = vec![
        ("cluster.api_port".to_string(), config.cluster.api_port),
        ("mysql.port".into(), config.mysql.port),
        ("mongodb.port".into(), config.mongodb.port),
        ("rabbitmq.port".into(), config.rabbitmq.port),
        (
            "rabbitmq.management_port".into(),
            config.rabbitmq.management_port,
        ),
        ("nfs.port".into(), config.nfs.port),
        ("istio.http_node_port".into(), config.istio.http_node_port),
        ("istio.https_node_port".into(), config.istio.https_node_port),
    ];
    ports.extend(config.routes.iter().map(|r| ("routes.port".into(), r.port)));
    ports
}

/// The first string anywhere in `config` with a control character.
fn control_characters(config: &Config) -> Option<(String, String)> {
    let table = toml::Table::try_from(config).ok()?;
    find_control(&toml::Value::Table(table), "")
}

fn find_control(value: &toml::Value, key: &str) -> Option<(String, String)> {
    let join = |name: &str| {
        if key.is_empty() {
            name.to_string()
        } else {
            format!("{key}.{name}")
        }
    };
    match value {
        toml::Value::String(text) => text
            .chars()
            .any(char::is_control)
            .then(|| (key.to_string(), text.clone())),
        toml::Value::Array(items) => items.iter().find_map(|item| find_control(item, key)),
        toml::Value::Table(table) => table
            .iter()
            .find_map(|(name, item)| find_control(item, &join(name))),
        _ => None,
    }
}

fn is_label(value: &str, limit: usize) -> bool {
    let bytes = value.as_bytes();
    !value.is_empty()
        && value.len() <= limit
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn label(value: &str) -> Option<&'static str> {
    (!is_label(value, 63)).then_some(LABEL)
}

fn release(value: &str) -> Option<&'static str> {
    (!is_label(value, 53)).then_some(RELEASE)
}

fn subdomain(value: &str) -> Option<&'static str> {
    let valid = value.len() <= 253 && value.split('.').all(|part| is_label(part, 63));
    (!valid).then_some(SUBDOMAIN)
}

fn plain(value: &str) -> bool {
    !value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'`\\".contains(c))
}

fn prefix(value: &str) -> Option<&'static str> {
    (!(value.starts_with('/') && plain(value))).then_some(PREFIX)
}

fn absolute(value: &str) -> Option<&'static str> {
    let valid =
        value.starts_with('/') && plain(value) && !value.split('/').any(|part| part == "..");
    (!valid).then_some(ABSOLUTE)
}

fn optional_absolute(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        None
    } else {
        absolute(value)
    }
}

fn argument(value: &str) -> Option<&'static str> {
    (value.starts_with('-') || !plain(value)).then_some(ARGUMENT)
}

fn version(value: &str) -> Option<&'static str> {
    let valid = !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+_-".contains(c));
    (!valid).then_some(VERSION)
}

fn sql_name(value: &str) -> Option<&'static str> {
    let valid = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!valid).then_some(SQL_NAME)
}

fn cidr(value: &str) -> Option<&'static str> {
    let valid = value.split_once('/').is_some_and(|(address, bits)| {
        let bits: Option<u8> = bits.parse().ok();
        match (address.parse::<IpAddr>(), bits) {
            (Ok(IpAddr::V4(_)), Some(bits)) => bits <= 32,
            (Ok(IpAddr::V6(_)), Some(bits)) => bits <= 128,
            _ => false,
        }
    });
    (!valid).then_some(CIDR)
}

fn optional_address(value: &str) -> Option<&'static str> {
    (!value.is_empty() && value.parse::<IpAddr>().is_err()).then_some(ADDRESS)
}

fn addresses(value: &str) -> Option<&'static str> {
    let valid = !value.is_empty()
        && value.split(',').all(|part| {
            part.parse::<IpAddr>().is_ok() || subdomain(&part.to_ascii_lowercase()).is_none()
        });
    (!valid).then_some(ADDRESSES)
}

fn https(value: &str) -> Option<&'static str> {
    (!download::allowed_url(&download::url_for(value, "v0"))).then_some(HTTPS)
}

/// An https:// URL, or a `file:///` path on the host (a local mirror).
fn https_or_file(value: &str) -> Option<&'static str> {
    match value.strip_prefix("file://") {
        Some(path) => absolute(&path.replace("{version}", "v0")).map(|_| HTTPS_OR_FILE),
        None => https(value).map(|_| HTTPS_OR_FILE),
    }
}

fn sha256(value: &str) -> Option<&'static str> {
    let valid = value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit());
    (!valid).then_some(SHA256)
}

fn fingerprint(value: &str) -> Option<&'static str> {
    let digits = crate::pgp::normalize(value);
    let valid = digits.len() == 40 && digits.chars().all(|c| c.is_ascii_hexdigit());
    (!valid).then_some(FINGERPRINT)
}
