//! The rule of every key of the configuration, checked where it is loaded,
//! so that no value can inject into what it becomes: Kubernetes names and
//! labels (RFC 1123), YAML scalars, file paths, program arguments, Helm
//! values, SQL names and URLs. A value that breaks a rule is refused (exit
//! 2) with the file, variable or flag that set it, the key and the rule.
//!
//! [`RULES`] names every leaf key; a key that reaches no program says so
//! (`Exempt`) and why. The check walks the configuration as it serializes,
//! so a key without a rule is refused rather than let through, and a test
//! walks every key the type has, so a key added later needs its rule.

use std::net::IpAddr;

use serde_json::Value;

use super::{Config, ConfigError};
use crate::host::download;

/// A check of one string: `None` when it passes, else the rule it breaks.
type Rule = fn(&str) -> Option<&'static str>;

/// How the value of one key is checked.
#[derive(Clone, Copy)]
enum Check {
    /// Text (or each text of a list) that must follow the rule.
    Text(Rule),
    /// A port from 1 to 65535.
    Port,
    /// A whole number up to `max`; the text says the bound.
    AtMost(u64, &'static str),
    /// A whole number from `min` to `max`; the text says the bounds.
    Within(u64, u64, &'static str),
    /// A whole number: it reaches programs as digits only.
    Number,
    /// `true` or `false`.
    Switch,
    /// A `[mysqld]` setting's value: text, a whole number or a switch.
    Setting,
    /// Parsed into its own type where it is read (the domain).
    Typed,
    /// Reaches no program; why (for the reader and the coverage test).
    Exempt(#[allow(dead_code, reason = "read by the reader and the coverage test")] &'static str),
}

use Check::{AtMost, Exempt, Number, Port, Setting, Switch, Text, Typed, Within};

/// The rule of every leaf key; `*` stands for any key of a map.
const RULES: &[(&str, Check)] = &[
    (
        "name",
        Exempt("shown, and in the first comment of the files it writes"),
    ),
    ("description", Exempt("shown in the summary")),
    ("versions.k3s", Text(version)),
    ("versions.helm", Text(version)),
    ("versions.istio", Text(version)),
    ("requirements.cpus", Exempt("compared with the host's")),
    (
        "requirements.memory_mib",
        Exempt("compared with the host's"),
    ),
    ("requirements.disk_gib", Exempt("compared with the host's")),
    ("cluster.namespace", Text(label)),
    ("cluster.pod_cidr", Text(cidr)),
    ("cluster.service_cidr", Text(cidr)),
    ("cluster.api_port", Port),
    ("cluster.tls_san", Text(host)),
    ("cluster.host_ip", Text(address)),
    ("cluster.server_address", Text(host)),
    ("istio.profile", Text(label)),
    ("istio.http_node_port", Port),
    ("istio.https_node_port", Port),
    ("istio.public_https_port", Port),
    ("istio.gateway", Text(subdomain)),
    ("istio.virtual_service", Text(subdomain)),
    ("istio.tls_secret", Text(subdomain)),
    ("istio.home", Text(prefix)),
    ("chart.release", Text(release)),
    ("chart.reference", Text(argument)),
    ("chart.version", Text(version)),
    ("chart.timeout_seconds", Number),
    ("routes.prefix", Text(prefix)),
    ("routes.service", Text(label)),
    ("routes.port", Port),
    ("registry.server", Text(registry_host)),
    ("registry.region", Text(region)),
    ("registry.secret", Text(subdomain)),
    ("registry.refresh_hours", AtMost(11, REFRESH)),
    ("registry.endpoint_url", Text(endpoint)),
    ("mysql.port", Port),
    ("mysql.username", Text(sql_name)),
    ("mysql.databases", Text(sql_name)),
    ("mysql.settings.*", Setting),
    ("mysql.server_programs", Exempt(LISTENERS)),
    ("mysql.package", Text(package)),
    ("mysql.socket", Text(absolute)),
    ("mysql.config_dir", Text(absolute)),
    ("mysql.service", Text(unit)),
    ("mysql.host", Text(host)),
    ("mysql.auth_plugin", Text(sql_name)),
    ("mongodb.version", Text(version)),
    ("mongodb.port", Port),
    ("mongodb.bind_ip", Text(addresses)),
    ("mongodb.username", Text(argument)),
    ("mongodb.databases", Text(sql_name)),
    ("mongodb.roles.role", Text(mongodb_name)),
    ("mongodb.roles.db", Text(mongodb_name)),
    ("mongodb.server_programs", Exempt(LISTENERS)),
    ("mongodb.service", Text(unit)),
    ("mongodb.key_file", Text(absolute)),
    ("mongodb.admin_username", Text(argument)),
    ("mongodb.admin_password_file", Text(absolute)),
    ("mongodb.host", Text(host)),
    ("mongodb.signing_keys.*.fingerprint", Text(fingerprint)),
    ("mongodb.signing_keys.*.source", Exempt("shown in the plan")),
    ("rabbitmq.port", Port),
    ("rabbitmq.management_port", Port),
    ("rabbitmq.username", Text(argument)),
    ("rabbitmq.tags", Text(argument)),
    ("rabbitmq.vhost", Text(argument)),
    ("rabbitmq.server_programs", Exempt(LISTENERS)),
    ("rabbitmq.host", Text(host)),
    ("nfs.path", Text(absolute)),
    ("nfs.port", Port),
    ("nfs.export_options", Text(export_options)),
    ("nfs.storage_class", Text(subdomain)),
    ("nfs.fix_permissions", Switch),
    ("nfs.squash", Typed),
    ("nfs.anonuid", Number),
    ("nfs.anongid", Number),
    ("nfs.node_addresses", Text(address)),
    ("storage.provisioner_in_chart", Switch),
    ("storage.chart_url", Text(https)),
    ("storage.version", Text(version)),
    ("storage.release", Text(release)),
    ("storage.namespace", Text(label)),
    ("storage.archive_on_delete", Switch),
    ("storage.timeout_seconds", Number),
    ("wait.timeout_seconds", Number),
    ("wait.poll_milliseconds", Number),
    ("downloads.k3s", Text(https)),
    ("downloads.k3s_install_script", Text(https)),
    ("downloads.helm", Text(https)),
    ("downloads.istio", Text(https)),
    ("downloads.mongodb_repository", Text(https_or_file)),
    ("downloads.mongodb_key", Text(key_template)),
    ("downloads.timeout_seconds", Number),
    ("downloads.ready_timeout_seconds", Number),
    ("downloads.require_pins", Switch),
    ("downloads.pins.*.sha256", Text(sha256)),
    ("downloads.pins.*.source", Exempt("shown in the plan")),
    ("backup.directory", Text(absolute)),
    ("backup.key_file", Text(absolute)),
    ("backup.schedule", Text(calendar)),
    ("backup.keep", Within(1, 1000, KEEP)),
    ("install.domain", Typed),
    ("install.ssl_cert", Exempt("read by stackinstall itself")),
    ("install.ssl_key", Exempt("read by stackinstall itself")),
    ("install.self_signed", Switch),
    ("install.skip_infra", Switch),
    ("install.skip_db", Switch),
    ("install.aws_profile", Text(aws_profile)),
];

/// The maps of the configuration, with the rule of their keys.
const MAP_KEYS: &[(&str, Rule)] = &[
    ("mysql.settings", setting_name),
    ("mongodb.signing_keys", version),
    ("downloads.pins", pin_key),
];

const LISTENERS: &str = "compared with the names of the programs listening on the ports";

const LABEL: &str = "must be an RFC 1123 label: at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit";
const SUBDOMAIN: &str =
    "must be an RFC 1123 subdomain: RFC 1123 labels joined by `.`, at most 253 characters";
const RELEASE: &str = "must be a Helm release name: an RFC 1123 label of at most 53 characters";
const PREFIX: &str =
    "must be a URL path starting with `/`, without spaces, quotes or control characters";
const ABSOLUTE: &str = "must be an absolute path (starting with `/`) without spaces, commas, quotes, control characters or `..`";
const ARGUMENT: &str = "must not start with `-` nor hold spaces, quotes or control characters (it becomes a program argument)";
const VERSION: &str =
    "must be a version: letters, digits, `.`, `+`, `_` and `-`, not starting with `-`";
const SQL_NAME: &str = "must be letters, digits and `_` only (it becomes an SQL name)";
const PORT: &str = "must be a port from 1 to 65535";
const CIDR: &str = "must be an IPv4 or IPv6 network such as `10.42.0.0/16`";
const ADDRESS: &str = "must be empty or an IP address";
const ADDRESSES: &str = "must be IP addresses or host names separated by `,`, without spaces";
const HOST: &str = "must be an IP address or a host name";
const HTTPS: &str = "must be an https:// URL";
const HTTPS_OR_FILE: &str = "must be an https:// URL or a file:/// path";
const KEY_TEMPLATE: &str = "must be an https:// URL or a file:/// path, with `{version}` where the series goes and no other `{...}`";
const ENDPOINT: &str = "must be an http:// or https:// URL without spaces or quotes";
const SHA256: &str = "must be a SHA-256: 64 hex digits";
const FINGERPRINT: &str = "must be an OpenPGP fingerprint: 40 hex digits (spaces allowed)";
const CONTROL: &str = "must not hold a newline or other control character";
const KEEP: &str = "must be from 1 to 1000 (the scheduled backups kept)";
const CALENDAR: &str = "must be a systemd calendar event (systemd.time(7), as `OnCalendar=` takes it): `daily`, `weekly`, `Mon..Fri 02:30`, `*-*-* 03:00:00 UTC`; `systemd-analyze calendar 'EXPRESSION'` shows when it runs";
const REFRESH: &str = "must be from 0 (no renewal) to 11 hours (an ECR token lasts 12)";
const PACKAGE: &str = "must be a Debian package name: lower-case letters, digits, `+`, `-` and `.`, starting with a letter or digit";
const UNIT: &str = "must be a systemd unit name: letters, digits, `:`, `_`, `.`, `@` and `-`, not starting with `-`";
const REGISTRY: &str =
    "must be a registry host: a host name or IP address, with an optional `:PORT`";
const REGION: &str = "must be an AWS region: lower-case letters, digits and `-`";
const EXPORT_OPTIONS: &str =
    "must be NFS export options: letters, digits and `_ = , . : / @ -`, not starting with `-`";
const SQUASH_OPTIONS: &str = "must not hold a squash option (`root_squash`, `no_root_squash`, `all_squash`, `no_all_squash`, `anonuid`, `anongid`): set `nfs.squash`, `nfs.anonuid` and `nfs.anongid` instead";
const MONGODB_NAME: &str = "must be letters, digits, `_` and `-` only (a MongoDB role or database)";
const SETTING_NAME: &str = "must be a [mysqld] setting name: letters, digits, `_` and `-`";
const SETTING: &str = "must be text, a whole number or true/false";
const AWS_PROFILE: &str =
    "must be an AWS profile name: letters, digits, `_`, `.` and `-`, not starting with `-`";
const PIN_KEY: &str = "must be `component/version/file` without spaces or quotes";
const TEXT: &str = "must be text";
const NUMBER: &str = "must be a whole number";
const SWITCH: &str = "must be true or false";
const NO_RULE: &str = "has no rule in src/config/validate.rs, and a value no rule checks is refused (a bug in stackinstall: please report it)";

/// One value of the configuration, or one key of one of its maps.
#[derive(Debug)]
struct Leaf<'a> {
    /// Its path (`["downloads", "pins", "k3s/v1.29.0+k3s1/k3s", "sha256"]`);
    /// a list's items share the list's path.
    path: Vec<String>,
    /// The path with each map key as `*`, as [`RULES`] names it.
    pattern: String,
    /// The value; for a map key, the key.
    value: &'a Value,
    /// `Some(rule)` for a map key: the rule of the map's keys.
    key_rule: Option<Rule>,
}

/// Checks every value of `config`; `source_of` names what set a key.
pub fn check(config: &Config, source_of: &dyn Fn(&[&str]) -> String) -> Result<(), ConfigError> {
    let tree = serde_json::to_value(config).expect("the configuration serializes");
    let mut found = Vec::new();
    leaves(&tree, Vec::new(), &mut found);
    for leaf in &found {
        if let Err((value, rule)) = check_leaf(leaf) {
            let path: Vec<&str> = leaf.path.iter().map(String::as_str).collect();
            return Err(ConfigError::Refused {
                key: shown_key(&leaf.path),
                value,
                source_name: source_of(&path),
                rule: rule.to_string(),
            });
        }
    }
    Ok(())
}

/// Every leaf under `value` at `path`: a value [`RULES`] names is one leaf
/// (a list too); any other table or list is walked into.
fn leaves<'a>(value: &'a Value, path: Vec<String>, found: &mut Vec<Leaf<'a>>) {
    let pattern = pattern_of(&path);
    let named = RULES.iter().any(|(key, _)| *key == pattern);
    match value {
        Value::Object(map) if !named => {
            let key_rule = MAP_KEYS.iter().find(|(key, _)| *key == pattern);
            for (key, item) in map {
                let mut inner = path.clone();
                inner.push(key.clone());
                if let Some((_, rule)) = key_rule {
                    found.push(Leaf {
                        pattern: format!("{pattern}.{{key}}"),
                        path: inner.clone(),
                        value: item,
                        key_rule: Some(*rule),
                    });
                }
                leaves(item, inner, found);
            }
        }
        Value::Array(items) if !named => {
            for item in items {
                leaves(item, path.clone(), found);
            }
        }
        _ => found.push(Leaf {
            path,
            pattern,
            value,
            key_rule: None,
        }),
    }
}

/// `path` as [`RULES`] names it: the keys of a map as `*`.
fn pattern_of(path: &[String]) -> String {
    let mut pattern = String::new();
    for part in path {
        let is_map = MAP_KEYS.iter().any(|(map, _)| *map == pattern);
        if !pattern.is_empty() {
            pattern.push('.');
        }
        pattern.push_str(if is_map { "*" } else { part });
    }
    pattern
}

/// `path` as a TOML key: `downloads.pins."k3s/v1.29.0+k3s1/k3s".sha256`.
fn shown_key(path: &[String]) -> String {
    let bare = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let parts: Vec<String> = path
        .iter()
        .map(|part| match bare(part) {
            true => part.clone(),
            false => format!("{part:?}"),
        })
        .collect();
    parts.join(".")
}

/// `Err((value as shown, rule))` when `leaf` breaks its rule.
fn check_leaf(leaf: &Leaf<'_>) -> Result<(), (String, &'static str)> {
    if let Some(rule) = leaf.key_rule {
        let key = leaf.path.last().map_or("", String::as_str);
        return text(key, rule).map_err(|broken| (key.to_string(), broken));
    }
    let shown = || match leaf.value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let Some((_, check)) = RULES.iter().find(|(key, _)| *key == leaf.pattern) else {
        return Err((shown(), NO_RULE));
    };
    let items: Vec<&Value> = match leaf.value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        value => vec![value],
    };
    for item in items {
        check_value(*check, item).map_err(|broken| match item {
            Value::String(text) => (text.clone(), broken),
            other => (other.to_string(), broken),
        })?;
    }
    Ok(())
}

/// Checks one value (not a list) against `check`.
fn check_value(check: Check, value: &Value) -> Result<(), &'static str> {
    match (check, value) {
        (_, Value::String(item)) if item.chars().any(char::is_control) => Err(CONTROL),
        (Exempt(_) | Typed, _) => Ok(()),
        (Text(rule), Value::String(item)) => text(item, rule),
        (Text(_), _) => Err(TEXT),
        (Setting, Value::String(_) | Value::Bool(_)) => Ok(()),
        (Setting, Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(()),
        (Setting, _) => Err(SETTING),
        (Switch, Value::Bool(_)) => Ok(()),
        (Switch, _) => Err(SWITCH),
        (Port, Value::Number(number)) => match number.as_u64() {
            Some(1..=65535) => Ok(()),
            _ => Err(PORT),
        },
        (AtMost(max, rule), Value::Number(number)) => match number.as_u64() {
            Some(found) if found <= max => Ok(()),
            _ => Err(rule),
        },
        (Within(min, max, rule), Value::Number(number)) => match number.as_u64() {
            Some(found) if (min..=max).contains(&found) => Ok(()),
            _ => Err(rule),
        },
        (Number, Value::Number(number)) if number.is_u64() => Ok(()),
        (Port | AtMost(..) | Within(..) | Number, _) => Err(NUMBER),
    }
}

/// Control characters first (their own rule), then `rule`.
fn text(value: &str, rule: Rule) -> Result<(), &'static str> {
    if value.chars().any(char::is_control) {
        return Err(CONTROL);
    }
    rule(value).map_or(Ok(()), Err)
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

fn is_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(|part| is_label(part, 63))
}

fn subdomain(value: &str) -> Option<&'static str> {
    (!is_subdomain(value)).then_some(SUBDOMAIN)
}

/// No whitespace, quotes, backslashes or control characters.
fn plain(value: &str) -> bool {
    !value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'`\\".contains(c))
}

/// Only characters of `allowed` (besides ASCII letters and digits), not
/// empty, not starting with `-`.
fn only(value: &str, allowed: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || allowed.contains(c))
}

fn calendar(value: &str) -> Option<&'static str> {
    (!super::calendar::is_calendar_event(value)).then_some(CALENDAR)
}

fn prefix(value: &str) -> Option<&'static str> {
    (!(value.starts_with('/') && plain(value))).then_some(PREFIX)
}

fn absolute(value: &str) -> Option<&'static str> {
    let valid = value.starts_with('/')
        && plain(value)
        && !value.contains(',')
        && !value.split('/').any(|part| part == "..");
    (!valid).then_some(ABSOLUTE)
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
    (!only(value, "_")).then_some(SQL_NAME)
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

fn address(value: &str) -> Option<&'static str> {
    value.parse::<IpAddr>().is_err().then_some(ADDRESS)
}

fn is_host(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok() || is_subdomain(&value.to_ascii_lowercase())
}

fn host(value: &str) -> Option<&'static str> {
    (!is_host(value)).then_some(HOST)
}

fn addresses(value: &str) -> Option<&'static str> {
    let valid = !value.is_empty() && value.split(',').all(is_host);
    (!valid).then_some(ADDRESSES)
}

fn registry_host(value: &str) -> Option<&'static str> {
    let (name, port) = match value.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (value, None),
    };
    let port_valid = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|p| p > 0));
    (!(is_host(name) && port_valid)).then_some(REGISTRY)
}

fn region(value: &str) -> Option<&'static str> {
    (!is_label(value, 63)).then_some(REGION)
}

fn https(value: &str) -> Option<&'static str> {
    let valid = plain(value) && download::allowed_url(&download::url_for(value, "v0"));
    (!valid).then_some(HTTPS)
}

fn endpoint(value: &str) -> Option<&'static str> {
    let scheme = reqwest::Url::parse(value).map(|url| url.scheme().to_string());
    let valid = plain(value) && scheme.is_ok_and(|scheme| scheme == "http" || scheme == "https");
    (!valid).then_some(ENDPOINT)
}

/// An https:// URL, or a `file:///` path on the host (a local mirror).
fn https_or_file(value: &str) -> Option<&'static str> {
    match value.strip_prefix("file://") {
        Some(path) => absolute(&path.replace("{version}", "v0")).map(|_| HTTPS_OR_FILE),
        None => https(value).map(|_| HTTPS_OR_FILE),
    }
}

/// [`https_or_file`] naming each series' key: `{version}` in it, and no
/// other placeholder (a misspelt one would be fetched as it stands).
fn key_template(value: &str) -> Option<&'static str> {
    let rest = value.replace("{version}", "");
    let valid =
        value.contains("{version}") && !rest.contains(['{', '}']) && https_or_file(value).is_none();
    (!valid).then_some(KEY_TEMPLATE)
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

fn package(value: &str) -> Option<&'static str> {
    let valid = value.len() >= 2
        && value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    (!valid).then_some(PACKAGE)
}

fn unit(value: &str) -> Option<&'static str> {
    (!only(value, ":_.@-")).then_some(UNIT)
}

fn export_options(value: &str) -> Option<&'static str> {
    if !only(value, "_=,.:/@-") {
        return Some(EXPORT_OPTIONS);
    }
    let squash = [
        "root_squash",
        "no_root_squash",
        "all_squash",
        "no_all_squash",
    ];
    let name = |option: &str| option.split('=').next().unwrap_or_default().to_string();
    value
        .split(',')
        .map(name)
        .any(|option| {
            squash.contains(&option.as_str()) || option == "anonuid" || option == "anongid"
        })
        .then_some(SQUASH_OPTIONS)
}

/// `istio.home`, where `/` redirects to, must be a path one of the routes
/// serves: a redirect to nothing would answer 404.
pub fn check_home(
    config: &Config,
    source_of: &dyn Fn(&[&str]) -> String,
) -> Result<(), ConfigError> {
    let home = &config.istio.home;
    if config
        .routes
        .iter()
        .any(|route| home.starts_with(&route.prefix))
    {
        return Ok(());
    }
    let prefixes: Vec<&str> = (config.routes.iter())
        .map(|route| route.prefix.as_str())
        .collect();
    Err(ConfigError::Refused {
        key: "istio.home".into(),
        value: home.clone(),
        source_name: source_of(&["istio", "home"]),
        rule: format!(
            "is where `/` redirects to, so one of the routes must serve it (their prefixes: {}): set `[istio] home` to one of them, in the file that sets the routes",
            prefixes.join(", ")
        ),
    })
}

/// The squash of `[nfs]` and its ids together: `all_squash` needs both
/// ids (every client's files belong to them); with `no_root_squash` no
/// request is mapped, so an id there is a mistake, refused.
pub fn check_squash(
    config: &Config,
    source_of: &dyn Fn(&[&str]) -> String,
) -> Result<(), ConfigError> {
    use super::Squash;
    let nfs = &config.nfs;
    let refused = |key: &str, value: String, rule: &str| ConfigError::Refused {
        key: format!("nfs.{key}"),
        value,
        source_name: source_of(&["nfs", key]),
        rule: rule.to_string(),
    };
    let ids = [("anonuid", nfs.anonuid), ("anongid", nfs.anongid)];
    match nfs.squash {
        Squash::AllSquash if ids.iter().any(|(_, id)| id.is_none()) => Err(refused(
            "squash",
            nfs.squash.word().into(),
            "needs `nfs.anonuid` and `nfs.anongid`: the user and group every client's files then belong to",
        )),
        Squash::NoRootSquash => match ids.iter().find(|(_, id)| id.is_some()) {
            Some((key, Some(id))) => Err(refused(
                key,
                id.to_string(),
                "is used only with `nfs.squash` = \"root_squash\" or \"all_squash\" (with \"no_root_squash\" no request is mapped)",
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A schedule of backups needs `[backup] key_file`: nobody is there to
/// type a passphrase when the timer runs.
pub fn check_schedule(
    config: &Config,
    source_of: &dyn Fn(&[&str]) -> String,
) -> Result<(), ConfigError> {
    let backup = &config.backup;
    match (&backup.schedule, &backup.key_file) {
        (Some(schedule), None) => Err(ConfigError::Refused {
            key: "backup.schedule".into(),
            value: schedule.clone(),
            source_name: source_of(&["backup", "schedule"]),
            rule: "needs `backup.key_file` (an age key: `age-keygen -o /etc/stackinstall/backup.key`, root's, mode 0600): nobody is there to type a passphrase when the timer runs, and a scheduled backup is never written unencrypted".into(),
        }),
        _ => Ok(()),
    }
}

fn mongodb_name(value: &str) -> Option<&'static str> {
    (!only(value, "_-")).then_some(MONGODB_NAME)
}

fn setting_name(value: &str) -> Option<&'static str> {
    (!only(value, "_-")).then_some(SETTING_NAME)
}

fn aws_profile(value: &str) -> Option<&'static str> {
    (!only(value, "_.-")).then_some(AWS_PROFILE)
}

fn pin_key(value: &str) -> Option<&'static str> {
    (value.is_empty() || !plain(value)).then_some(PIN_KEY)
}

#[cfg(test)]
#[allow(clippy::disallowed_macros)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every key the type has: the defaults (each optional value as
    /// `null`) merged with the built-in profile, whose lists and maps have
    /// items (a test below fails on an empty one, whose keys it cannot see).
    fn every_key() -> Value {
        let mut tree = serde_json::to_value(Config::default()).unwrap();
        // Parsed, not loaded: loading refuses a key without a rule, which
        // is what this walk is to name.
        let text = super::super::PROFILES
            .get_file(format!("{}.toml", super::super::DEFAULT_PROFILE))
            .and_then(|file| file.contents_utf8())
            .unwrap();
        let profile: Config = toml::from_str(text).unwrap();
        merge(&mut tree, serde_json::to_value(profile).unwrap());
        // Empty in the profile by design (no extra names by default).
        tree["cluster"]["tls_san"] = serde_json::json!(["api.example.com"]);
        tree["nfs"]["node_addresses"] = serde_json::json!(["192.0.2.11"]);
        tree
    }

    fn merge(base: &mut Value, over: Value) {
        match (base, over) {
            (Value::Object(base), Value::Object(over)) => {
                for (key, value) in over {
                    merge(base.entry(key).or_insert(Value::Null), value);
                }
            }
            (base, Value::Null) if !base.is_null() => {}
            (base, over) => *base = over,
        }
    }

    fn empty_containers(value: &Value, path: &str, found: &mut Vec<String>) {
        let join = |key: &str| format!("{path}.{key}");
        match value {
            Value::Object(map) if map.is_empty() => found.push(path.to_string()),
            Value::Array(items) if items.is_empty() => found.push(path.to_string()),
            Value::Object(map) => map
                .iter()
                .for_each(|(key, item)| empty_containers(item, &join(key), found)),
            Value::Array(items) => items
                .iter()
                .for_each(|item| empty_containers(item, path, found)),
            _ => {}
        }
    }

    #[test]
    fn every_key_of_the_configuration_has_a_rule_or_says_why_it_needs_none() {
        let tree = every_key();
        let mut empty = Vec::new();
        empty_containers(&tree, "", &mut empty);
        assert!(
            empty.is_empty(),
            "the keys inside these lists or maps cannot be walked: give them an item in the profile: {empty:?}"
        );
        let mut found = Vec::new();
        leaves(&tree, Vec::new(), &mut found);
        let keys: BTreeSet<&str> = found
            .iter()
            .filter(|leaf| leaf.key_rule.is_none())
            .map(|leaf| leaf.pattern.as_str())
            .collect();
        let ruled: BTreeSet<&str> = RULES.iter().map(|(key, _)| *key).collect();
        let missing: Vec<&&str> = keys.difference(&ruled).collect();
        assert!(
            missing.is_empty(),
            "keys with no rule and no exemption in RULES: {missing:?}"
        );
        let stale: Vec<&&str> = ruled.difference(&keys).collect();
        assert!(
            stale.is_empty(),
            "RULES names keys the configuration does not have: {stale:?}"
        );
        let exempt: Vec<String> = RULES
            .iter()
            .filter_map(|(key, check)| match check {
                Exempt(why) => Some(format!("{key} ({why})")),
                _ => None,
            })
            .collect();
        eprintln!("exempt: {}", exempt.join(", "));
        let exempt = exempt.len();
        eprintln!(
            "configuration keys: {} walked, {} with a rule, {exempt} exempt (reach no program), {} map keys ruled",
            keys.len(),
            keys.len() - exempt,
            MAP_KEYS.len()
        );
    }

    #[test]
    fn the_defaults_and_the_profile_pass_their_rules() {
        let tree = every_key();
        let mut found = Vec::new();
        leaves(&tree, Vec::new(), &mut found);
        for leaf in &found {
            assert!(check_leaf(leaf).is_ok(), "{leaf:?}: {:?}", check_leaf(leaf));
        }
    }

    #[test]
    fn a_key_without_a_rule_is_refused_not_let_through() {
        let tree = serde_json::json!({ "storage": { "post_renderer": "/tmp/x" } });
        let mut found = Vec::new();
        leaves(&tree, Vec::new(), &mut found);
        assert_eq!(check_leaf(&found[0]), Err(("/tmp/x".into(), NO_RULE)));
    }

    #[test]
    fn map_keys_are_shown_as_toml_keys() {
        let path: Vec<String> = ["downloads", "pins", "k3s/v1.29.0+k3s1/k3s", "sha256"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            shown_key(&path),
            "downloads.pins.\"k3s/v1.29.0+k3s1/k3s\".sha256"
        );
        assert_eq!(pattern_of(&path), "downloads.pins.*.sha256");
    }
}
