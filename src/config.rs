//! One typed configuration from five layers: built-in defaults < profile
//! (embedded `profiles/*.toml` or a file) < `--config FILE` <
//! `STACKINSTALL_<SECTION>__<KEY>` environment variables < flags.
//!
//! Every layer is checked on its own against the schema, so an unknown key
//! or a wrong type is reported with the file (or variable) it came from;
//! the flags go over the layers as typed values (`Flags`); then every value
//! is checked once against its rule (`validate`).
//!
//! A value that may be unset is an `Option`. In a file or a variable an
//! empty string unsets it: the one way a later layer can take back what an
//! earlier one set (`STACKINSTALL_CHART__VERSION=""` for the newest chart).

use std::collections::BTreeMap;
use std::path::PathBuf;

use include_dir::{Dir, include_dir};
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::host::download::Pin;

mod calendar;
mod domain;
mod layers;
mod validate;

pub use domain::{Domain, DomainError};
pub use layers::{Flags, Layers, Sources};

static PROFILES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/profiles");

/// The profile used when `--profile` is not given.
pub const DEFAULT_PROFILE: &str = "stackbill-poc";

/// Prefix of the environment variables that set configuration values.
pub const ENV_PREFIX: &str = "STACKINSTALL_";

/// An optional value: an empty string is `None`, as if it were absent.
fn unset_if_empty<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => T::deserialize(text.into_deserializer()).map(Some),
    }
}

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
    /// What set the routes when it is not the profile (a `--config` file
    /// whose `[[routes]]` replaced the profile's): the plan says so.
    #[serde(skip)]
    pub routes_replaced_by: Option<String>,
    pub registry: Registry,
    pub mysql: Mysql,
    pub mongodb: Mongodb,
    pub rabbitmq: Rabbitmq,
    pub nfs: Nfs,
    pub storage: Storage,
    pub wait: Wait,
    pub downloads: Downloads,
    pub backup: Backup,
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
    /// The pod network (K3s's `cluster-cidr`), exported over NFS and
    /// allowed to reach the databases; fixed once K3s made the cluster.
    pub pod_cidr: String,
    /// The Services' network (K3s's `service-cidr`); fixed once K3s made
    /// the cluster.
    pub service_cidr: String,
    /// The Kubernetes API server's port (K3s's `https-listen-port`).
    pub api_port: u16,
    /// Extra names and addresses the API server's certificate is valid
    /// for (K3s's `tls-san`), beside the host's own.
    pub tls_san: Vec<String>,
    /// The address pods reach the host's databases at; unset: the host's
    /// primary IPv4 address.
    #[serde(deserialize_with = "unset_if_empty")]
    pub host_ip: Option<String>,
    /// The fixed address nodes register at (a load balancer, DNS name or
    /// virtual IP in front of the servers); unset: this host's address.
    /// Added to the API certificate's names.
    #[serde(deserialize_with = "unset_if_empty")]
    pub server_address: Option<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            pod_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            api_port: 6443,
            tls_san: Vec::new(),
            host_ip: None,
            server_address: None,
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
    pub public_https_port: Option<u16>,
    pub gateway: String,
    pub virtual_service: String,
    pub tls_secret: String,
    /// Where `/` redirects to: the application's home route (one of the
    /// routes serves it).
    pub home: String,
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
            home: "/portal".into(),
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
    /// Unset for the newest (which cannot be pinned). The chart file's
    /// pin is `[downloads.pins."NAME/VERSION/NAME-VERSION.tgz"]`.
    #[serde(deserialize_with = "unset_if_empty")]
    pub version: Option<String>,
    pub timeout_seconds: u64,
}

impl Default for Chart {
    fn default() -> Self {
        Self {
            release: String::new(),
            reference: String::new(),
            version: None,
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
    /// Another ECR endpoint (a test server); unset for AWS's own.
    #[serde(deserialize_with = "unset_if_empty")]
    pub endpoint_url: Option<String>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            server: String::new(),
            region: String::new(),
            secret: String::new(),
            refresh_hours: 6,
            endpoint_url: None,
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
    /// The package to install; unset: `mysql-server` on Ubuntu,
    /// `mariadb-server` on Debian.
    #[serde(deserialize_with = "unset_if_empty")]
    pub package: Option<String>,
    /// The socket root administers the server through (not under `--root`:
    /// it is the running server's).
    pub socket: String,
    /// Where the settings file goes; unset: `/etc/mysql/mysql.conf.d` for
    /// MySQL, `/etc/mysql/mariadb.conf.d` for MariaDB.
    #[serde(deserialize_with = "unset_if_empty")]
    pub config_dir: Option<String>,
    /// The systemd unit; unset: `mysql` for MySQL, `mariadb` for MariaDB.
    #[serde(deserialize_with = "unset_if_empty")]
    pub service: Option<String>,
    /// The address the verification logs in at; unset: the host's own.
    #[serde(deserialize_with = "unset_if_empty")]
    pub host: Option<String>,
    /// The authentication plugin of the application's user; unset: the
    /// server's default (caching_sha2_password on MySQL 8,
    /// mysql_native_password on MariaDB).
    #[serde(deserialize_with = "unset_if_empty")]
    pub auth_plugin: Option<String>,
}

impl Default for Mysql {
    fn default() -> Self {
        Self {
            port: 3306,
            username: String::new(),
            databases: Vec::new(),
            settings: BTreeMap::new(),
            server_programs: vec!["mysqld".into(), "mariadbd".into()],
            package: None,
            socket: "/run/mysqld/mysqld.sock".into(),
            config_dir: None,
            service: None,
            host: None,
            auth_plugin: None,
        }
    }
}

/// MongoDB on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mongodb {
    /// The mongodb-org series, for the apt repository (`7.0`); unset: the
    /// series MongoDB publishes for the host's release (7.0, else 8.0).
    #[serde(deserialize_with = "unset_if_empty")]
    pub version: Option<String>,
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
    /// has users); unset: the localhost exception, then the user itself.
    #[serde(deserialize_with = "unset_if_empty")]
    pub admin_username: Option<String>,
    /// A file (mode 0600) holding that account's password.
    #[serde(deserialize_with = "unset_if_empty")]
    pub admin_password_file: Option<String>,
    /// The address the verification logs in at; unset: the host's own.
    #[serde(deserialize_with = "unset_if_empty")]
    pub host: Option<String>,
    /// The fingerprint of the apt signing key of each series (`"7.0"`).
    pub signing_keys: BTreeMap<String, SigningKey>,
    /// The application's databases a backup takes and a restore puts
    /// back; unset: every database but `admin`, `local` and `config`.
    pub databases: Option<Vec<String>>,
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
            version: None,
            port: 27017,
            bind_ip: "0.0.0.0".into(),
            username: String::new(),
            roles: Vec::new(),
            server_programs: vec!["mongod".into()],
            service: "mongod".into(),
            key_file: "/var/lib/mongodb/encryption".into(),
            admin_username: None,
            admin_password_file: None,
            host: None,
            signing_keys: BTreeMap::new(),
            databases: None,
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
    /// The address the verification logs in at; unset: the host's own.
    #[serde(deserialize_with = "unset_if_empty")]
    pub host: Option<String>,
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
            host: None,
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
    /// What the server makes of the clients' root (and other) users.
    pub squash: Squash,
    /// The user and group squashed requests act as (`anonuid`,
    /// `anongid` of exports(5)); `None`: the server's own (`nobody`).
    pub anonuid: Option<u32>,
    pub anongid: Option<u32>,
    /// The addresses of the other nodes (joined with `stackinstall join`)
    /// the export serves beside this host's: each kubelet mounts from its
    /// node's address.
    pub node_addresses: Vec<String>,
}

/// The squash option of the export, exports(5) "User ID Mapping".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Squash {
    /// A client's root is root on the files (the seed's choice: the
    /// application's containers may run as root).
    #[default]
    NoRootSquash,
    /// A client's root acts as `anonuid`:`anongid`; other users keep their ids.
    RootSquash,
    /// Every client user acts as `anonuid`:`anongid`.
    AllSquash,
}

impl Squash {
    /// Its word in `/etc/exports`.
    pub fn word(self) -> &'static str {
        match self {
            Self::NoRootSquash => "no_root_squash",
            Self::RootSquash => "root_squash",
            Self::AllSquash => "all_squash",
        }
    }
}

impl Nfs {
    /// The options of the export line: `export_options`, the squash word
    /// and, when set, `anonuid=`/`anongid=`.
    pub fn options(&self) -> String {
        let mut options = format!("{},{}", self.export_options, self.squash.word());
        if let Some(uid) = self.anonuid {
            options.push_str(&format!(",anonuid={uid}"));
        }
        if let Some(gid) = self.anongid {
            options.push_str(&format!(",anongid={gid}"));
        }
        options
    }
}

impl Default for Nfs {
    fn default() -> Self {
        Self {
            path: String::new(),
            port: 2049,
            export_options: "rw,sync,no_subtree_check".into(),
            storage_class: "nfs-client".into(),
            fix_permissions: false,
            squash: Squash::NoRootSquash,
            anonuid: None,
            anongid: None,
            node_addresses: Vec::new(),
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

/// `stackinstall backup`: where archives go and what encrypts them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    /// Where an archive goes without `--out` (made root-only).
    pub directory: String,
    /// An age identity file (`age-keygen` writes one; mode 0600, root's):
    /// archives are encrypted to its key and read with it, no passphrase
    /// asked. Unset: a passphrase asked on a terminal.
    #[serde(deserialize_with = "unset_if_empty")]
    pub key_file: Option<String>,
    /// When to back up on a schedule: a systemd calendar event
    /// (`OnCalendar=`, systemd.time(7): `daily`, `Mon..Fri 02:30`); the
    /// `backups` step installs a timer running `stackinstall backup
    /// --scheduled`. Unset: no scheduled backups.
    #[serde(deserialize_with = "unset_if_empty")]
    pub schedule: Option<String>,
    /// How many scheduled backups to keep: older ones are removed after
    /// each scheduled backup (only `scheduled-backup-TIME.tar.gz.age`).
    pub keep: u64,
}

impl Default for Backup {
    fn default() -> Self {
        Self {
            directory: "/var/lib/stackinstall/backups".into(),
            key_file: None,
            schedule: None,
            keep: 7,
        }
    }
}

impl Config {
    /// The address pods reach the host's databases and NFS export at:
    /// `[cluster] host_ip`, else the host's primary IPv4 address; `None`
    /// when there is neither.
    pub fn host_ip(&self) -> Option<String> {
        match &self.cluster.host_ip {
            None => crate::host::system::primary_ipv4().map(|ip| ip.to_string()),
            Some(configured) => Some(configured.clone()),
        }
    }
}

impl Downloads {
    /// The pin of the file `key` (`component/version/file`), if any.
    pub fn pin(&self, key: &str) -> Option<Pin> {
        self.pins.get(key).cloned()
    }

    /// A release file of `component_version` (`helm/v3.14.2`) at `url`,
    /// with its pin, if it has one.
    pub fn release(
        &self,
        component_version: &str,
        url: String,
        sums_url: Option<String>,
        member: Option<String>,
    ) -> crate::host::download::ReleaseBinary {
        let file = url.rsplit('/').next().unwrap_or(&url);
        let key = format!("{component_version}/{file}");
        crate::host::download::ReleaseBinary {
            pin: self.pin(&key),
            key,
            url,
            sums_url,
            member,
        }
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
    /// Parsed where it is read (a layer, `--domain`, the question).
    #[serde(deserialize_with = "unset_if_empty")]
    pub domain: Option<Domain>,
    #[serde(deserialize_with = "unset_if_empty")]
    pub ssl_cert: Option<PathBuf>,
    #[serde(deserialize_with = "unset_if_empty")]
    pub ssl_key: Option<PathBuf>,
    pub self_signed: bool,
    pub skip_infra: bool,
    pub skip_db: bool,
    /// The AWS shared-config profile the ECR token is fetched with.
    #[serde(deserialize_with = "unset_if_empty")]
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
    #[error("{origin} `{value}` is not a valid DNS name: {why}")]
    Domain {
        origin: String,
        value: String,
        why: DomainError,
    },
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

impl ConfigError {
    /// The next thing to try, when the message alone does not say it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Domain { .. } => Some(
                "pass the DNS name the application is reached at, like `portal.example.com`".into(),
            ),
            Self::Invalid { .. } | Self::Missing { .. } => Some(
                "`stackinstall render --domain D --out DIR` writes the effective configuration as a starting point".into(),
            ),
            _ => None,
        }
    }
}

impl Config {
    /// Merges the layers of `sources` into one configuration, checked once.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        Layers::read(sources)?.into_config(&sources.flags)
    }

    /// Fails on a required value that is empty, naming the last layer that
    /// set it (a config file or variable that emptied it), else the profile.
    fn check_complete(&self, setter_of: &dyn Fn(&[&str]) -> String) -> Result<(), ConfigError> {
        let provisioner = !self.storage.provisioner_in_chart;
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
            ("storage.release", self.storage.release.is_empty()),
            ("storage.namespace", self.storage.namespace.is_empty()),
            (
                "storage.chart_url",
                provisioner && self.storage.chart_url.is_empty(),
            ),
            (
                "storage.version",
                provisioner && self.storage.version.is_empty(),
            ),
        ];
        let Some((key, _)) = required.iter().find(|(_, missing)| *missing) else {
            return Ok(());
        };
        let path: Vec<&str> = key.split('.').collect();
        Err(ConfigError::Missing {
            key: (*key).into(),
            source_name: setter_of(&path),
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
        assert_eq!(domain(&config), "file.example.com");
        sources.flags.domain = Some("flag.example.com".into());
        assert_eq!(domain(&Config::load(&sources).unwrap()), "flag.example.com");
    }

    fn domain(config: &Config) -> &str {
        config.install.domain.as_deref().unwrap_or("(none)")
    }

    #[test]
    fn a_domain_from_any_layer_is_parsed_there_and_a_bad_one_named_by_its_origin() {
        let mut sources = sources();
        sources.environment = vec![(
            "STACKINSTALL_INSTALL__DOMAIN".into(),
            "Demo.Example.COM".into(),
        )];
        assert_eq!(domain(&Config::load(&sources).unwrap()), "demo.example.com");
        sources.environment[0].1 = "demo_1.example.com".into();
        let error = Config::load(&sources).unwrap_err().to_string();
        assert_eq!(
            error,
            "`install.domain` in environment variable `STACKINSTALL_INSTALL__DOMAIN` `demo_1.example.com` is not a valid DNS name: `demo_1` may only hold letters, digits and `-`"
        );
        sources.flags.domain = Some("-x.example.com".into());
        let error = Config::load(&sources).unwrap_err().to_string();
        assert!(
            error.starts_with("`install.domain` in environment"),
            "layers are checked first: {error}"
        );
        sources.environment.clear();
        let error = Config::load(&sources).unwrap_err().to_string();
        assert!(
            error.starts_with("--domain `-x.example.com` is not"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_string_unsets_an_optional_value() {
        let mut sources = sources();
        sources.environment = vec![
            ("STACKINSTALL_CHART__VERSION".into(), "1.2.3".into()),
            (
                "STACKINSTALL_MYSQL__PACKAGE".into(),
                "mariadb-server".into(),
            ),
        ];
        let config = Config::load(&sources).unwrap();
        assert_eq!(config.chart.version.as_deref(), Some("1.2.3"));
        assert_eq!(config.mysql.package.as_deref(), Some("mariadb-server"));
        sources
            .environment
            .push(("STACKINSTALL_CHART__VERSION".into(), "".into()));
        sources
            .environment
            .push(("STACKINSTALL_MYSQL__PACKAGE".into(), "\"\"".into()));
        sources.flags.domain = Some(String::new());
        let config = Config::load(&sources).unwrap();
        assert_eq!(config.chart.version, None);
        assert_eq!(config.mysql.package, None);
        assert_eq!(config.install.domain, None);
        assert_eq!(
            config.cluster.host_ip, None,
            "the profile's `host_ip = \"\"`"
        );
    }

    #[test]
    fn flags_go_over_the_layers_as_typed_values_and_are_named_in_refusals() {
        let mut sources = sources();
        sources.environment = vec![(
            "STACKINSTALL_INSTALL__AWS_PROFILE".into(),
            "from-env".into(),
        )];
        assert_eq!(
            Config::load(&sources)
                .unwrap()
                .install
                .aws_profile
                .as_deref(),
            Some("from-env")
        );
        sources.flags.aws_profile = Some("--from-flag".into());
        let error = Config::load(&sources).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "`install.aws_profile` = \"--from-flag\" from --aws-profile is refused"
            ),
            "{error}"
        );
        sources.flags.aws_profile = Some("from-flag".into());
        sources.flags.self_signed = true;
        let install = Config::load(&sources).unwrap().install;
        assert_eq!(install.aws_profile.as_deref(), Some("from-flag"));
        assert!(install.self_signed);
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
