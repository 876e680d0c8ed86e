//! One typed configuration from five layers: built-in defaults < profile
//! (embedded `profiles/*.toml` or a file) < `--config FILE` <
//! `STACKINSTALL_<SECTION>__<KEY>` environment variables < flags.
//!
//! Every layer is checked on its own against the schema, so an unknown key
//! or a wrong type is reported with the file (or variable) it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};

use crate::host::download::Pin;

mod validate;

static PROFILES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/profiles");

/// The profile used when `--profile` is not given.
pub const DEFAULT_PROFILE: &str = "stackbill-poc";

/// Prefix of the environment variables that set configuration values.
pub const ENV_PREFIX: &str = "STACKINSTALL_";

/// The name of the flags' layer (flags and the variables clap reads for
/// them, like `STACKINSTALL_DOMAIN`).
const COMMAND_LINE: &str = "the command line";

/// Everything the install needs to know, merged from all layers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The profile's name.
    pub name: String,
    /// One line on what the profile installs.
    pub description: String,
    pub versions: Versions,
    pub requirements: Requirements,
    pub cluster: Cluster,
    pub istio: Istio,
    pub chart: Chart,
    pub routes: Vec<Route>,
    pub registry: Registry,
    pub mysql: Mysql,
    pub mongodb: Mongodb,
    pub rabbitmq: Rabbitmq,
    pub nfs: Nfs,
    pub storage: Storage,
    pub wait: Wait,
    pub downloads: Downloads,
    /// What this install is for: domain, certificate, what to skip.
    pub install: Install,
}

/// Pinned versions of the infrastructure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Versions {
    pub k3s: String,
    pub helm: String,
    pub istio: String,
}

/// The smallest machine the profile runs on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Requirements {
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

impl Default for Requirements {
    fn default() -> Self {
        Self {
            cpus: 2,
            memory_mib: 3800,
            disk_gib: 20,
        }
    }
}

/// The Kubernetes cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// The application's namespace.
    pub namespace: String,
    /// The pod network, exported over NFS and allowed to reach the databases.
    pub pod_cidr: String,
    pub api_port: u16,
    /// The address pods reach the host's databases at; empty to use the
    /// host's primary IPv4 address.
    pub host_ip: String,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            pod_cidr: "10.42.0.0/16".into(),
            api_port: 6443,
            host_ip: String::new(),
        }
    }
}

/// Istio and its ingress gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Istio {
    pub profile: String,
    pub http_node_port: u16,
    pub https_node_port: u16,
    /// The port clients reach HTTPS at, where HTTP redirects to and the
    /// summary's URLs point: unset for the HTTPS NodePort, 443 when a load
    /// balancer or port mapping serves 443.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_https_port: Option<u16>,
    pub gateway: String,
    pub virtual_service: String,
    pub tls_secret: String,
}

impl Default for Istio {
    fn default() -> Self {
        Self {
            profile: "demo".into(),
            http_node_port: 31443,
            https_node_port: 31882,
            public_https_port: None,
            gateway: String::new(),
            virtual_service: String::new(),
            tls_secret: String::new(),
        }
    }
}

impl Istio {
    /// The port clients reach HTTPS at: `public_https_port`, else the
    /// HTTPS NodePort.
    pub fn https_port_for_clients(&self) -> u16 {
        self.public_https_port.unwrap_or(self.https_node_port)
    }
}

/// The application's Helm chart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chart {
    pub release: String,
    /// An OCI reference (`oci://...`) or a repository chart.
    pub reference: String,
    /// Empty for the newest (which cannot be pinned). The chart file's
    /// pin is `[downloads.pins."NAME/VERSION/NAME-VERSION.tgz"]`.
    pub version: String,
    pub timeout_seconds: u64,
}

impl Default for Chart {
    fn default() -> Self {
        Self {
            release: String::new(),
            reference: String::new(),
            version: String::new(),
            timeout_seconds: 900,
        }
    }
}

/// One path prefix routed to a Service port.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Route {
    pub prefix: String,
    pub service: String,
    /// The Service's port (not the container's).
    pub port: u16,
}

/// The image registry and its pull secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registry {
    pub server: String,
    pub region: String,
    pub secret: String,
    pub refresh_hours: u32,
    /// Another ECR endpoint (a test server); empty for AWS's own.
    pub endpoint_url: String,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            server: String::new(),
            region: String::new(),
            secret: String::new(),
            refresh_hours: 6,
            endpoint_url: String::new(),
        }
    }
}

/// MySQL (or MariaDB) on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mysql {
    pub port: u16,
    pub username: String,
    pub databases: Vec<String>,
    /// `[mysqld]` settings; `true` writes a bare flag.
    pub settings: BTreeMap<String, toml::Value>,
    /// Programs that may already listen on the port (a server we use).
    pub server_programs: Vec<String>,
    /// The package to install; empty: `mysql-server` on Ubuntu,
    /// `mariadb-server` on Debian.
    pub package: String,
    /// The socket root administers the server through (not under `--root`:
    /// it is the running server's).
    pub socket: String,
    /// Where the settings file goes; empty: `/etc/mysql/mysql.conf.d` for
    /// MySQL, `/etc/mysql/mariadb.conf.d` for MariaDB.
    pub config_dir: String,
    /// The systemd unit; empty: `mysql` for MySQL, `mariadb` for MariaDB.
    pub service: String,
    /// The address the verification logs in at; empty: the host's own.
    pub host: String,
}

impl Default for Mysql {
    fn default() -> Self {
        Self {
            port: 3306,
            username: String::new(),
            databases: Vec::new(),
            settings: BTreeMap::new(),
            server_programs: vec!["mysqld".into(), "mariadbd".into()],
            package: String::new(),
            socket: "/run/mysqld/mysqld.sock".into(),
            config_dir: String::new(),
            service: String::new(),
            host: String::new(),
        }
    }
}

/// MongoDB on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mongodb {
    /// The mongodb-org series, for the apt repository (`7.0`); empty: the
    /// series MongoDB publishes for the host's release (7.0, else 8.0).
    pub version: String,
    pub port: u16,
    /// `net.bindIp` of `/etc/mongod.conf`.
    pub bind_ip: String,
    pub username: String,
    pub roles: Vec<MongodbRole>,
    /// Programs that may already listen on the port (a server we use).
    pub server_programs: Vec<String>,
    /// The systemd unit.
    pub service: String,
    /// The key file made once (mode 0600, owner mongodb).
    pub key_file: String,
    /// An existing account that may manage users (for a server that already
    /// has users); empty: the localhost exception, then the user itself.
    pub admin_username: String,
    /// A file (mode 0600) holding that account's password.
    pub admin_password_file: String,
    /// The address the verification logs in at; empty: the host's own.
    pub host: String,
    /// The fingerprint of the apt signing key of each series (`"7.0"`).
    pub signing_keys: BTreeMap<String, SigningKey>,
}

/// The fingerprint an apt signing key must have, with where it is published.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningKey {
    /// The OpenPGP v4 fingerprint (40 hex digits, spaces allowed).
    pub fingerprint: String,
    /// Where the value comes from.
    pub source: String,
}

impl Default for Mongodb {
    fn default() -> Self {
        Self {
            version: String::new(),
            port: 27017,
            bind_ip: "0.0.0.0".into(),
            username: String::new(),
            roles: Vec::new(),
            server_programs: vec!["mongod".into()],
            service: "mongod".into(),
            key_file: "/var/lib/mongodb/encryption".into(),
            admin_username: String::new(),
            admin_password_file: String::new(),
            host: String::new(),
            signing_keys: BTreeMap::new(),
        }
    }
}

/// A MongoDB role grant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongodbRole {
    pub role: String,
    pub db: String,
}

/// RabbitMQ on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rabbitmq {
    pub port: u16,
    pub management_port: u16,
    pub username: String,
    pub tags: Vec<String>,
    pub vhost: String,
    /// Programs that may already listen on the ports (a server we use).
    pub server_programs: Vec<String>,
    /// The address the verification logs in at; empty: the host's own.
    pub host: String,
}

impl Default for Rabbitmq {
    fn default() -> Self {
        Self {
            port: 5672,
            management_port: 15672,
            username: String::new(),
            tags: vec!["administrator".into()],
            vhost: "/".into(),
            server_programs: vec!["beam.smp".into()],
            host: String::new(),
        }
    }
}

/// The NFS export for the cluster's volumes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nfs {
    pub path: String,
    pub port: u16,
    pub export_options: String,
    pub storage_class: String,
    /// Whether a directory at `path` that was there before, with another
    /// mode or owner than 0777 nobody:nogroup, is changed to them (by
    /// default it is left as it is and the plan says so).
    pub fix_permissions: bool,
}

impl Default for Nfs {
    fn default() -> Self {
        Self {
            path: String::new(),
            port: 2049,
            export_options: "rw,sync,no_subtree_check,no_root_squash".into(),
            storage_class: "nfs-client".into(),
            fix_permissions: false,
        }
    }
}

/// The NFS provisioner that serves `nfs.storage_class` from the export
/// (the nfs-subdir-external-provisioner Helm chart).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// The application chart brings its own provisioner: the `storage` step
    /// installs nothing, and `wait` checks the StorageClass after the release.
    pub provisioner_in_chart: bool,
    /// The chart's `.tgz`; `{version}` is replaced by `version`.
    pub chart_url: String,
    /// The chart's SHA-256 is pinned in `[downloads.pins]` under
    /// `NAME/VERSION/NAME-VERSION.tgz` (its `digest` in the chart
    /// repository's `index.yaml`).
    pub version: String,
    pub release: String,
    pub namespace: String,
    /// What the provisioner does with a deleted PVC's directory: `true`
    /// renames it `archived-*`, `false` deletes it.
    pub archive_on_delete: bool,
    pub timeout_seconds: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            provisioner_in_chart: false,
            chart_url: String::new(),
            version: String::new(),
            release: "nfs-subdir-external-provisioner".into(),
            namespace: "kube-system".into(),
            archive_on_delete: true,
            timeout_seconds: 300,
        }
    }
}

/// Waiting for the application to come up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Wait {
    pub timeout_seconds: u64,
    /// How often the pods are looked at.
    pub poll_milliseconds: u64,
}

impl Default for Wait {
    fn default() -> Self {
        Self {
            timeout_seconds: 600,
            poll_milliseconds: 5000,
        }
    }
}

/// Where the pinned infrastructure binaries are downloaded from. `{version}`
/// in a URL is replaced by the pinned version (`+` written as `%2B`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Downloads {
    /// The K3s release: holds `k3s` and `sha256sum-amd64.txt`.
    pub k3s: String,
    /// The K3s install script of the pinned version.
    pub k3s_install_script: String,
    /// Helm releases: `helm-VERSION-linux-amd64.tar.gz` and its `.sha256sum`.
    pub helm: String,
    /// The Istio release: `istio-VERSION-linux-amd64.tar.gz` and its `.sha256`.
    pub istio: String,
    /// MongoDB's apt repository (`{repository}/debian CODENAME/mongodb-org/
    /// SERIES main`): `https://`, or a `file:` mirror on the host.
    pub mongodb_repository: String,
    /// MongoDB's signing key of a series (`{version}` is the series):
    /// `https://`, or a `file:` path on the host.
    pub mongodb_key: String,
    pub timeout_seconds: u64,
    /// How long to wait for the node and for istiod to be Ready.
    pub ready_timeout_seconds: u64,
    /// Refuse (exit 2, before anything changes) to download a file that has
    /// no pin, instead of checking it against its origin's own sum.
    pub require_pins: bool,
    /// SHA-256 pins by `component/version/file` (`k3s/v1.29.0+k3s1/k3s`),
    /// each with the public source of its value.
    pub pins: BTreeMap<String, Pin>,
}

impl Downloads {
    /// The pin of the file `key` (`component/version/file`), if any.
    pub fn pin(&self, key: &str) -> Option<Pin> {
        self.pins.get(key).cloned()
    }
}

impl Default for Downloads {
    fn default() -> Self {
        Self {
            k3s: "https://github.com/k3s-io/k3s/releases/download/{version}".into(),
            k3s_install_script: "https://raw.githubusercontent.com/k3s-io/k3s/{version}/install.sh"
                .into(),
            helm: "https://get.helm.sh".into(),
            istio: "https://github.com/istio/istio/releases/download/{version}".into(),
            mongodb_repository: "https://repo.mongodb.org/apt".into(),
            mongodb_key: "https://www.mongodb.org/static/pgp/server-{version}.asc".into(),
            timeout_seconds: 300,
            ready_timeout_seconds: 300,
            require_pins: false,
            pins: BTreeMap::new(),
        }
    }
}

/// What this install is for (flags, their variables, or `[install]` in a
/// config file).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Install {
    pub domain: String,
    /// Where `domain` was set, for messages: `--domain`, or the config file
    /// or variable that set `install.domain`.
    #[serde(skip)]
    pub domain_origin: String,
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    pub self_signed: bool,
    pub skip_infra: bool,
    pub skip_db: bool,
    /// The AWS shared-config profile the ECR token is fetched with.
    pub aws_profile: Option<String>,
}

/// A configuration layer that does not fit the schema.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown profile `{name}`; the built-in profiles are: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("cannot read {source_name}: {error}")]
    Unreadable { source_name: String, error: String },
    #[error("{source_name} is not valid: {detail}")]
    Invalid { source_name: String, detail: String },
    #[error("the value `{key}` is missing: {source_name} must set it")]
    Missing { key: String, source_name: String },
    #[error("`{key}` = {value:?} from {source_name} is refused: it {rule}")]
    Refused {
        key: String,
        value: String,
        source_name: String,
        rule: String,
    },
}

/// Where each layer comes from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--profile`: a built-in profile name or a file.
    pub profile: Option<String>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// The environment (only `STACKINSTALL_<SECTION>__<KEY>` entries are used).
    pub environment: Vec<(String, String)>,
    /// Values set by flags, as a TOML table (e.g. `install.domain`).
    pub flags: toml::Table,
}

impl Config {
    /// Merges the layers of `sources` into one configuration.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut merged = toml::Table::try_from(Config::default()).expect("defaults serialize");
        let (profile_name, profile_text) = profile_text(sources.profile.as_deref())?;
        let mut layers = vec![(
            profile_name.clone(),
            check_layer(&profile_name, &profile_text)?,
        )];
        if let Some(path) = &sources.config_file {
            let name = format!("config file `{}`", path.display());
            let text = read_text(&name, path)?;
            let layer = check_layer(&name, &text)?;
            layers.push((name, layer));
        }
        for (variable, value) in &sources.environment {
            if let Some(layer) = environment_layer(variable, value)? {
                layers.push((format!("environment variable `{variable}`"), layer));
            }
        }
        layers.push((COMMAND_LINE.into(), sources.flags.clone()));
        for (_, layer) in &layers {
            merge(&mut merged, layer.clone());
        }
        let mut config: Config =
            merged
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    source_name: "the merged configuration".into(),
                    detail: e.message().to_string(),
                })?;
        // DNS names are case-insensitive: one spelling, from whichever layer.
        config.install.domain = config.install.domain.to_ascii_lowercase();
        config.install.domain_origin = match last_setter(&layers, "install.domain") {
            Some(name) if name != COMMAND_LINE => format!("`install.domain` in {name}"),
            _ => "--domain".into(),
        };
        config.check_complete(&layers)?;
        let source_of = |key: &str| {
            let top = key.split('.').take(2).collect::<Vec<_>>().join(".");
            last_setter(&layers, key)
                .or_else(|| last_setter(&layers, &top))
                .or_else(|| last_setter(&layers, key.split('.').next().unwrap_or(key)))
                .unwrap_or(&layers[0].0)
                .clone()
        };
        validate::check(&config, &source_of)?;
        Ok(config)
    }

    /// Fails on a required value that is empty, naming the last layer that
    /// set it (a config file or variable that emptied it), else the profile.
    fn check_complete(&self, layers: &[(String, toml::Table)]) -> Result<(), ConfigError> {
        let required = [
            ("name", self.name.is_empty()),
            ("versions.k3s", self.versions.k3s.is_empty()),
            ("versions.helm", self.versions.helm.is_empty()),
            ("versions.istio", self.versions.istio.is_empty()),
            ("cluster.namespace", self.cluster.namespace.is_empty()),
            ("istio.gateway", self.istio.gateway.is_empty()),
            (
                "istio.virtual_service",
                self.istio.virtual_service.is_empty(),
            ),
            ("istio.tls_secret", self.istio.tls_secret.is_empty()),
            ("chart.release", self.chart.release.is_empty()),
            ("chart.reference", self.chart.reference.is_empty()),
            ("routes", self.routes.is_empty()),
            ("registry.server", self.registry.server.is_empty()),
            ("registry.region", self.registry.region.is_empty()),
            ("registry.secret", self.registry.secret.is_empty()),
            ("mysql.username", self.mysql.username.is_empty()),
            ("mysql.databases", self.mysql.databases.is_empty()),
            ("mongodb.username", self.mongodb.username.is_empty()),
            ("rabbitmq.username", self.rabbitmq.username.is_empty()),
            ("nfs.path", self.nfs.path.is_empty()),
            ("nfs.storage_class", self.nfs.storage_class.is_empty()),
            (
                "storage.chart_url",
                !self.storage.provisioner_in_chart && self.storage.chart_url.is_empty(),
            ),
            (
                "storage.version",
                !self.storage.provisioner_in_chart && self.storage.version.is_empty(),
            ),
        ];
        let Some((key, _)) = required.iter().find(|(_, missing)| *missing) else {
            return Ok(());
        };
        Err(ConfigError::Missing {
            key: (*key).into(),
            source_name: last_setter(layers, key).unwrap_or(&layers[0].0).clone(),
        })
    }

    /// The user name of each service whose password the credentials file keeps.
    pub fn service_usernames(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("mysql".to_string(), self.mysql.username.clone()),
            ("mongodb".to_string(), self.mongodb.username.clone()),
            ("rabbitmq".to_string(), self.rabbitmq.username.clone()),
        ])
    }
}

/// The names of the built-in profiles.
pub fn builtin_profiles() -> Vec<String> {
    let mut names: Vec<String> = PROFILES
        .files()
        .filter_map(|file| file.path().file_stem())
        .map(|stem| stem.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn profile_text(profile: Option<&str>) -> Result<(String, String), ConfigError> {
    let name = profile.unwrap_or(DEFAULT_PROFILE);
    if let Some(file) = PROFILES.get_file(format!("{name}.toml")) {
        let text = file.contents_utf8().expect("built-in profiles are UTF-8");
        return Ok((format!("profile `{name}`"), text.to_string()));
    }
    let path = Path::new(name);
    if name.ends_with(".toml") || name.contains('/') || path.exists() {
        let source_name = format!("profile file `{}`", path.display());
        let text = read_text(&source_name, path)?;
        return Ok((source_name, text));
    }
    Err(ConfigError::UnknownProfile {
        name: name.into(),
        known: builtin_profiles().join(", "),
    })
}

fn read_text(source_name: &str, path: &Path) -> Result<String, ConfigError> {
    let unreadable = |error: std::io::Error| ConfigError::Unreadable {
        source_name: source_name.into(),
        error: error.to_string(),
    };
    let bytes = crate::host::fs::read_limited(path).map_err(unreadable)?;
    String::from_utf8(bytes).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// Parses one layer and checks it against the schema on its own.
fn check_layer(source_name: &str, text: &str) -> Result<toml::Table, ConfigError> {
    let invalid = |error: toml::de::Error| ConfigError::Invalid {
        source_name: source_name.into(),
        detail: error.to_string().trim_end().to_string(),
    };
    let table: toml::Table = toml::from_str(text).map_err(invalid)?;
    if table
        .get("storage")
        .and_then(toml::Value::as_table)
        .is_some_and(|storage| storage.contains_key("sha256"))
    {
        return Err(ConfigError::Invalid {
            source_name: source_name.into(),
            detail: "`[storage] sha256` is no longer read: the provisioner chart's pin moved to `[downloads.pins.\"nfs-subdir-external-provisioner/VERSION/nfs-subdir-external-provisioner-VERSION.tgz\"] sha256`, beside the other pins".into(),
        });
    }
    toml::from_str::<Config>(text).map_err(invalid)?;
    Ok(table)
}

/// `STACKINSTALL_WAIT__TIMEOUT_SECONDS=900` as `{ wait = { timeout_seconds = 900 } }`.
fn environment_layer(variable: &str, value: &str) -> Result<Option<toml::Table>, ConfigError> {
    let Some(rest) = variable.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    if !rest.contains("__") {
        return Ok(None);
    }
    let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let parsed = toml::from_str::<toml::Table>(&format!("value = {value}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut layer = parsed;
    for key in keys.iter().rev() {
        layer = toml::Value::Table(toml::Table::from_iter([(key.clone(), layer)]));
    }
    let toml::Value::Table(table) = layer else {
        unreachable!("built from keys")
    };
    let source_name = format!("environment variable `{variable}`");
    let text = toml::to_string(&table).map_err(|e| ConfigError::Invalid {
        source_name: source_name.clone(),
        detail: e.to_string(),
    })?;
    check_layer(&source_name, &text).map(Some)
}

/// The name of the last layer that sets the dotted `key`.
fn last_setter<'a>(layers: &'a [(String, toml::Table)], key: &str) -> Option<&'a String> {
    layers
        .iter()
        .rev()
        .find(|(_, layer)| sets(layer, key))
        .map(|(name, _)| name)
}

/// Whether `layer` sets the dotted `key` (`cluster.namespace`).
fn sets(layer: &toml::Table, key: &str) -> bool {
    let mut table = layer;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        match (table.get(part), parts.peek()) {
            (Some(_), None) => return true,
            (Some(toml::Value::Table(inner)), Some(_)) => table = inner,
            _ => return false,
        }
    }
    false
}

/// Merges `layer` over `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(layer_table)) => {
                merge(base_table, layer_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn sources() -> Sources {
        Sources::default()
    }

    #[test]
    fn default_profile_loads_with_the_spec_values() {
        let config = Config::load(&sources()).unwrap();
        assert_eq!(config.versions.k3s, "v1.29.0+k3s1");
        assert_eq!(config.versions.istio, "1.20.3");
        assert_eq!(config.cluster.namespace, "sb-apps");
        assert_eq!(config.istio.http_node_port, 31443);
        assert_eq!(config.istio.https_node_port, 31882);
        assert_eq!(config.mysql.databases, ["stackbill", "configuration"]);
        assert_eq!(config.wait.timeout_seconds, 600);
        let kong = config.routes.iter().find(|r| r.prefix == "/api").unwrap();
        assert_eq!((kong.service.as_str(), kong.port), ("sb-kong", 8000));
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("site.toml");
        std::fs::write(
            &file,
            "[wait]\ntimeout_seconds = 100\n[install]\ndomain = \"file.example.com\"\n",
        )
        .unwrap();
        let mut sources = sources();
        sources.config_file = Some(file);
        sources.environment = vec![("STACKINSTALL_WAIT__TIMEOUT_SECONDS".into(), "200".into())];
        let config = Config::load(&sources).unwrap();
        assert_eq!(
            config.wait.timeout_seconds, 200,
            "environment beats the file"
        );
        assert_eq!(config.install.domain, "file.example.com");
        sources.flags = toml::from_str("[install]\ndomain = \"flag.example.com\"").unwrap();
        assert_eq!(
            Config::load(&sources).unwrap().install.domain,
            "flag.example.com"
        );
    }

    #[test]
    fn a_domain_from_any_layer_is_lower_cased_and_its_origin_kept() {
        let mut sources = sources();
        sources.environment = vec![(
            "STACKINSTALL_INSTALL__DOMAIN".into(),
            "Demo.Example.COM".into(),
        )];
        let install = Config::load(&sources).unwrap().install;
        assert_eq!(install.domain, "demo.example.com");
        assert_eq!(
            install.domain_origin,
            "`install.domain` in environment variable `STACKINSTALL_INSTALL__DOMAIN`"
        );
        sources.flags = toml::from_str("[install]\ndomain = \"flag.example.com\"").unwrap();
        assert_eq!(
            Config::load(&sources).unwrap().install.domain_origin,
            "--domain"
        );
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("site.toml");
        std::fs::write(&file, "[wait]\ntimeout_secs = 100\n").unwrap();
        let mut sources = sources();
        sources.config_file = Some(file.clone());
        let error = Config::load(&sources).unwrap_err().to_string();
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains("unknown field `timeout_secs`"), "{error}");
    }

    #[test]
    fn an_emptied_value_names_the_layer_that_emptied_it() {
        let mut sources = sources();
        sources.environment = vec![("STACKINSTALL_CLUSTER__NAMESPACE".into(), "\"\"".into())];
        let error = Config::load(&sources).unwrap_err().to_string();
        assert!(
            error.contains("`cluster.namespace` is missing: environment variable `STACKINSTALL_CLUSTER__NAMESPACE`"),
            "{error}"
        );
    }

    #[test]
    fn wrong_type_in_environment_names_the_variable() {
        let mut sources = sources();
        sources.environment = vec![("STACKINSTALL_WAIT__TIMEOUT_SECONDS".into(), "soon".into())];
        let error = Config::load(&sources).unwrap_err().to_string();
        assert!(
            error.contains("STACKINSTALL_WAIT__TIMEOUT_SECONDS"),
            "{error}"
        );
        assert!(error.contains("expected"), "{error}");
    }
}
