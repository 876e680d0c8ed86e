//! What the install found or made on the host, kept in the state file for
//! uninstall: per step, whether its program or server was there before the
//! first install, which packages the install added, and who made each
//! database, user, vhost and file it uses. A recorded fact is never
//! overwritten by a later run (a re-run does not turn found into created);
//! an uninstall forgets what it removed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::step_id::StepId;

/// Who made an object the install uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The install made it (or was about to, when it recorded this):
    /// `uninstall --delete-db` removes it.
    Created,
    /// It was there before the install: every uninstall keeps it.
    Found,
}

impl Origin {
    /// The origin of a program or server by whether it was there before
    /// the first install.
    pub fn from_preexisting(preexisting: bool) -> Self {
        match preexisting {
            true => Self::Found,
            false => Self::Created,
        }
    }
}

/// Every fact, by step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Facts {
    #[serde(skip_serializing_if = "K3sFacts::is_empty")]
    pub k3s: K3sFacts,
    #[serde(skip_serializing_if = "ProgramFacts::is_empty")]
    pub helm: ProgramFacts,
    #[serde(skip_serializing_if = "IstioFacts::is_empty")]
    pub istio: IstioFacts,
    #[serde(skip_serializing_if = "ServerFacts::is_empty")]
    pub mysql: ServerFacts,
    #[serde(skip_serializing_if = "ServerFacts::is_empty")]
    pub mongodb: ServerFacts,
    #[serde(skip_serializing_if = "ServerFacts::is_empty")]
    pub rabbitmq: ServerFacts,
    #[serde(skip_serializing_if = "ServerFacts::is_empty")]
    pub nfs: ServerFacts,
    #[serde(skip_serializing_if = "Transactions::is_empty")]
    pub packages: Transactions,
    #[serde(skip_serializing_if = "ReleaseFacts::is_empty")]
    pub release: ReleaseFacts,
    /// The kubeconfig of the operator's cluster the install used
    /// (`--skip-infra --kubeconfig FILE`, or `KUBECONFIG`): what `status`,
    /// `doctor`, `uninstall` and the renewal timer use. Unset: K3s's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// What a rewritten configuration file still waits for (a run killed
    /// between the write and the restart left it): done by the next run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Reload>,
}

/// What makes a server read its configuration file again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reload {
    /// `systemctl restart UNIT` (or its start).
    Restart(String),
    /// `exportfs -ra`: the kernel's table from `/etc/exports`.
    Reexport,
}

impl std::fmt::Display for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Restart(unit) => write!(f, "`{unit}` is restarted"),
            Self::Reexport => f.write_str("the exports are read again (`exportfs -ra`)"),
        }
    }
}

/// What the `packages` step's apt transactions added to the host, found by
/// comparing the host before and after each: exactly what `uninstall
/// --delete-db` purges and disables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transactions {
    /// The host before a transaction that has not been compared yet (the
    /// run that started it may have been killed during it).
    pub before: Option<HostPackages>,
    /// The packages the transactions added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added_packages: Vec<String>,
    /// The units their maintainer scripts enabled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enabled_units: Vec<String>,
}

/// The application's Helm release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseFacts {
    /// The last revision whose pods all came Ready (`wait` passed): what a
    /// revision that fails its wait is rolled back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub good_revision: Option<u64>,
}

impl ReleaseFacts {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl Transactions {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether the state lists what the transactions added (an older state
    /// does not: each server step then purges its own packages).
    pub fn listed(&self) -> bool {
        !self.added_packages.is_empty() || !self.enabled_units.is_empty()
    }
}

/// The installed packages and the enabled units of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostPackages {
    pub packages: Vec<String>,
    pub units: Vec<String>,
}

/// A program the install may have put on the host (Helm).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgramFacts {
    /// Whether it was there before the first install.
    pub preexisting: Option<bool>,
}

impl ProgramFacts {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// K3s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K3sFacts {
    /// Whether a Kubernetes was there before the first install.
    pub preexisting: Option<bool>,
    /// The SHA-256 of the copy of K3s's kubeconfig last written as root's
    /// `/root/.kube/config`.
    pub root_kubeconfig_sha256: Option<String>,
    /// The last restore of K3s's etcd here (`stackinstall restore`), by its
    /// stamp: a server that held the cluster's data before it joins again
    /// with a fresh datastore (the join file carries the stamp).
    pub restored: Option<String>,
}

impl K3sFacts {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Istio: its `istioctl` and its control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IstioFacts {
    /// Whether `istioctl` was there before the first install.
    pub istioctl_preexisting: Option<bool>,
    /// Whether Istio's control plane was there before the first install.
    pub control_plane_preexisting: Option<bool>,
}

impl IstioFacts {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A host server (MySQL, MongoDB, RabbitMQ, NFS) and its objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerFacts {
    /// Whether the server was there before the first install.
    pub preexisting: Option<bool>,
    /// The packages the install added for it (uninstall purges these).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, Origin>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, Origin>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vhosts: BTreeMap<String, Origin>,
    /// Its settings file (`/etc/mongod.conf`).
    pub config: Option<Origin>,
    /// Its key file (MongoDB's).
    pub key_file: Option<Origin>,
    /// Its block in `/etc/exports` (NFS).
    pub export_block: Option<Origin>,
    /// The export directory's `device:inode` (NFS): a path swapped after
    /// the install (a link to `/` in its place) is told by it.
    pub export_directory: Option<String>,
    /// The export directory's parent (NFS): made by the install, it is
    /// kept 0700 root:root; found, it is only checked.
    pub export_parent: Option<Origin>,
    /// Where its password in the credentials file came from: generated by
    /// the install (`created`), or given (imported from the bash
    /// installer's file, put in with `credentials set`, or in the file
    /// before the first install: `found`). A given one may be what a
    /// server the install never touched logs in with.
    pub password: Option<Origin>,
}

impl ServerFacts {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether the install put the server on the host.
    pub fn installed_by_us(&self) -> bool {
        self.preexisting == Some(false)
    }
}

/// A host server step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Mysql,
    Mongodb,
    Rabbitmq,
    Nfs,
}

impl Server {
    /// Every server, in install order.
    pub const ALL: [Self; 4] = [Self::Mysql, Self::Mongodb, Self::Rabbitmq, Self::Nfs];

    /// The step that sets it up.
    pub fn step(self) -> StepId {
        match self {
            Self::Mysql => StepId::Mysql,
            Self::Mongodb => StepId::Mongodb,
            Self::Rabbitmq => StepId::Rabbitmq,
            Self::Nfs => StepId::Nfs,
        }
    }

    /// The server step `step` is, if it is one.
    pub fn of(step: StepId) -> Option<Self> {
        Self::ALL.into_iter().find(|server| server.step() == step)
    }

    /// Its name, as the plan says it.
    pub fn name(self) -> &'static str {
        self.step().name()
    }
}

impl Facts {
    /// The facts of `server`.
    pub fn server(&self, server: Server) -> &ServerFacts {
        match server {
            Server::Mysql => &self.mysql,
            Server::Mongodb => &self.mongodb,
            Server::Rabbitmq => &self.rabbitmq,
            Server::Nfs => &self.nfs,
        }
    }

    fn server_mut(&mut self, server: Server) -> &mut ServerFacts {
        match server {
            Server::Mysql => &mut self.mysql,
            Server::Mongodb => &mut self.mongodb,
            Server::Rabbitmq => &mut self.rabbitmq,
            Server::Nfs => &mut self.nfs,
        }
    }

    /// Who made `object`, as recorded; `None` when the state does not say
    /// (written by an older stackinstall, or an object never looked at).
    pub fn origin(&self, object: &Object) -> Option<Origin> {
        let facts = self.server(object.server());
        match object {
            Object::Database(name) => facts.databases.get(name).copied(),
            Object::MysqlUser(name) | Object::MongodbUser(name) | Object::RabbitmqUser(name) => {
                facts.users.get(name).copied()
            }
            Object::Vhost(name) => facts.vhosts.get(name).copied(),
            Object::MongodbConfig => facts.config,
            Object::MongodbKeyFile => facts.key_file,
            Object::ExportBlock => facts.export_block,
            Object::ExportParent => facts.export_parent,
            Object::Password(_) => facts.password,
        }
    }

    /// Sets (or, with `None`, forgets) who made `object`.
    pub fn set_origin(&mut self, object: &Object, origin: Option<Origin>) {
        let facts = self.server_mut(object.server());
        let slot = |map: &mut BTreeMap<String, Origin>, name: &str| match origin {
            Some(origin) => {
                map.insert(name.to_string(), origin);
            }
            None => {
                map.remove(name);
            }
        };
        match object {
            Object::Database(name) => slot(&mut facts.databases, name),
            Object::MysqlUser(name) | Object::MongodbUser(name) | Object::RabbitmqUser(name) => {
                slot(&mut facts.users, name)
            }
            Object::Vhost(name) => slot(&mut facts.vhosts, name),
            Object::MongodbConfig => facts.config = origin,
            Object::MongodbKeyFile => facts.key_file = origin,
            Object::ExportBlock => facts.export_block = origin,
            Object::ExportParent => facts.export_parent = origin,
            Object::Password(_) => facts.password = origin,
        }
    }

    /// Records `fact`, unless one of its kind is recorded already (a fact
    /// is never overwritten, but the kubeconfig's digest, which follows each
    /// copy written); returns whether it changed anything.
    pub fn record(&mut self, fact: &Fact) -> bool {
        let before_record = self.clone();
        match fact {
            Fact::Preexisting(program, present) => {
                let slot = match program {
                    Preexisting::K3s => &mut self.k3s.preexisting,
                    Preexisting::Helm => &mut self.helm.preexisting,
                    Preexisting::Istioctl => &mut self.istio.istioctl_preexisting,
                    Preexisting::IstioControlPlane => &mut self.istio.control_plane_preexisting,
                    Preexisting::Server(server) => &mut self.server_mut(*server).preexisting,
                };
                slot.get_or_insert(*present);
            }
            Fact::PackagesAdded(server, packages) => {
                let recorded = &mut self.server_mut(*server).packages;
                if recorded.is_empty() {
                    recorded.clone_from(packages);
                }
            }
            Fact::Origin(object, origin) => {
                if self.origin(object).is_none() {
                    self.set_origin(object, Some(*origin));
                }
            }
            Fact::RootKubeconfig(digest) => {
                self.k3s.root_kubeconfig_sha256 = Some(digest.clone());
            }
            Fact::Kubeconfig(path) => self.kubeconfig.clone_from(path),
            Fact::ReloadPending(reload) => {
                if !self.pending.contains(reload) {
                    self.pending.push(reload.clone());
                }
            }
            Fact::Reloaded(reload) => self.pending.retain(|pending| pending != reload),
            Fact::ExportDirectory(identity) => {
                self.nfs.export_directory = Some(identity.clone());
            }
            Fact::GoodRevision(revision) => self.release.good_revision = Some(*revision),
            Fact::DatastoreRestored(stamp) => self.k3s.restored = Some(stamp.clone()),
            Fact::BeforeTransaction(host) => {
                self.packages.before.get_or_insert_with(|| host.clone());
            }
            Fact::AfterTransaction(host) => {
                let Some(before) = self.packages.before.take() else {
                    return *self != before_record;
                };
                let added = |now: &[String], before: &[String], list: &mut Vec<String>| {
                    for item in now.iter().filter(|item| !before.contains(item)) {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                };
                let transactions = &mut self.packages;
                added(
                    &host.packages,
                    &before.packages,
                    &mut transactions.added_packages,
                );
                added(&host.units, &before.units, &mut transactions.enabled_units);
            }
        }
        *self != before_record
    }

    /// Forgets what `step` created, once an uninstall removed it all, so
    /// that the next install looks at the host afresh; what was found stays
    /// recorded as found.
    pub fn forget_created(&mut self, step: StepId) {
        if step == StepId::Release {
            // The release and its history are gone with it.
            self.release = ReleaseFacts::default();
        }
        if step == StepId::Credentials {
            // The file is gone with the passwords it generated; given ones
            // stay recorded as given.
            for server in Server::ALL {
                let slot = &mut self.server_mut(server).password;
                if *slot == Some(Origin::Created) {
                    *slot = None;
                }
            }
        }
        let Some(server) = Server::of(step) else {
            return;
        };
        let facts = self.server_mut(server);
        let found = |origin: &Origin| *origin == Origin::Found;
        facts.databases.retain(|_, origin| found(origin));
        facts.users.retain(|_, origin| found(origin));
        facts.vhosts.retain(|_, origin| found(origin));
        for slot in [
            &mut facts.config,
            &mut facts.key_file,
            &mut facts.export_block,
            &mut facts.export_parent,
        ] {
            if *slot == Some(Origin::Created) {
                *slot = None;
            }
        }
        // The export is gone: the next install records its directory anew.
        facts.export_directory = None;
    }

    /// Forgets what the apt transactions added, once uninstall purged it
    /// (a later install records its own).
    pub fn forget_transactions(&mut self) {
        self.packages.added_packages.clear();
        self.packages.enabled_units.clear();
    }

    /// Reads the facts of a state file of format 1: `key = "value"` pairs
    /// (`mysql.preexisting = "true"`, `mysql.database.NAME = "created"`).
    /// A key it does not know is kept out, and named in the result.
    pub fn from_version_1(pairs: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let mut facts = Self::default();
        let mut unknown = Vec::new();
        for (key, value) in pairs {
            if !facts.read_version_1(key, value) {
                unknown.push(key.clone());
            }
        }
        (facts, unknown)
    }

    fn read_version_1(&mut self, key: &str, value: &str) -> bool {
        let flag = match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        let origin = match value {
            "created" => Some(Origin::Created),
            "found" => Some(Origin::Found),
            _ => None,
        };
        let (program, rest) = key.split_once('.').unwrap_or((key, ""));
        let server = match program {
            "mysql" => Some(Server::Mysql),
            "mongodb" => Some(Server::Mongodb),
            "rabbitmq" => Some(Server::Rabbitmq),
            "nfs" => Some(Server::Nfs),
            _ => None,
        };
        match (program, rest, server) {
            ("k3s", "preexisting", _) => self.k3s.preexisting = flag,
            ("k3s", "root_kubeconfig_sha256", _) => {
                self.k3s.root_kubeconfig_sha256 = Some(value.to_string())
            }
            ("helm", "preexisting", _) => self.helm.preexisting = flag,
            ("istioctl", "preexisting", _) => self.istio.istioctl_preexisting = flag,
            ("istio", "preexisting", _) => self.istio.control_plane_preexisting = flag,
            (_, "preexisting", Some(server)) => self.server_mut(server).preexisting = flag,
            (_, "packages", Some(server)) => {
                self.server_mut(server).packages =
                    value.split_whitespace().map(str::to_string).collect()
            }
            _ => {
                let Some(object) = server.and_then(|server| Object::from_version_1(server, rest))
                else {
                    return false;
                };
                self.set_origin(&object, origin);
                return origin.is_some();
            }
        }
        true
    }
}

/// An object a server step uses, whose origin the state records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A MySQL database.
    Database(String),
    MysqlUser(String),
    MongodbUser(String),
    RabbitmqUser(String),
    /// A RabbitMQ virtual host.
    Vhost(String),
    /// `/etc/mongod.conf`.
    MongodbConfig,
    /// MongoDB's key file.
    MongodbKeyFile,
    /// The managed block of `/etc/exports`.
    ExportBlock,
    /// The directory the export directory is in (`/data`).
    ExportParent,
    /// The server's password in the credentials file.
    Password(Server),
}

impl Object {
    /// The server whose step uses it.
    pub fn server(&self) -> Server {
        match self {
            Self::Database(_) | Self::MysqlUser(_) => Server::Mysql,
            Self::MongodbUser(_) | Self::MongodbConfig | Self::MongodbKeyFile => Server::Mongodb,
            Self::RabbitmqUser(_) | Self::Vhost(_) => Server::Rabbitmq,
            Self::ExportBlock | Self::ExportParent => Server::Nfs,
            Self::Password(server) => *server,
        }
    }

    fn from_version_1(server: Server, rest: &str) -> Option<Self> {
        let (kind, name) = rest.split_once('.').unwrap_or((rest, ""));
        let name = name.to_string();
        Some(match (server, kind) {
            (Server::Mysql, "database") => Self::Database(name),
            (Server::Mysql, "user") => Self::MysqlUser(name),
            (Server::Mongodb, "user") => Self::MongodbUser(name),
            (Server::Mongodb, "config") => Self::MongodbConfig,
            (Server::Mongodb, "key-file") => Self::MongodbKeyFile,
            (Server::Rabbitmq, "user") => Self::RabbitmqUser(name),
            (Server::Rabbitmq, "vhost") => Self::Vhost(name),
            (Server::Nfs, "export-block") => Self::ExportBlock,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Database(name) => write!(f, "MySQL database `{name}`"),
            Self::MysqlUser(name) => write!(f, "MySQL user `{name}`"),
            Self::MongodbUser(name) => write!(f, "MongoDB user `{name}`"),
            Self::RabbitmqUser(name) => write!(f, "RabbitMQ user `{name}`"),
            Self::Vhost(name) => write!(f, "RabbitMQ vhost `{name}`"),
            Self::MongodbConfig => f.write_str("`/etc/mongod.conf`"),
            Self::MongodbKeyFile => f.write_str("MongoDB's key file"),
            Self::ExportBlock => f.write_str("the export block in `/etc/exports`"),
            Self::ExportParent => f.write_str("the export directory's parent"),
            Self::Password(server) => write!(f, "the {} password", server.name()),
        }
    }
}

/// What may have been on the host before the first install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preexisting {
    /// K3s, or another Kubernetes.
    K3s,
    Helm,
    Istioctl,
    IstioControlPlane,
    Server(Server),
}

impl Preexisting {
    fn name(self) -> &'static str {
        match self {
            Self::K3s => "a Kubernetes",
            Self::Helm => "Helm",
            Self::Istioctl => "istioctl",
            Self::IstioControlPlane => "Istio's control plane",
            Self::Server(server) => server.name(),
        }
    }
}

/// One fact to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// Whether it was there before the first install.
    Preexisting(Preexisting, bool),
    /// The packages the install is about to add for a server.
    PackagesAdded(Server, Vec<String>),
    /// Who made an object (recorded as created before it is made, so that
    /// a run killed between making and recording still owns it).
    Origin(Object, Origin),
    /// The SHA-256 of the kubeconfig copy just written as root's.
    RootKubeconfig(String),
    /// The kubeconfig this install uses (`None`: K3s's); the last one
    /// given is kept.
    Kubeconfig(Option<PathBuf>),
    /// A configuration file is about to be rewritten: until `Reloaded`,
    /// its server must read it again (restarted, re-exported).
    ReloadPending(Reload),
    /// The server read its configuration again.
    Reloaded(Reload),
    /// The export directory's `device:inode`, as it was made or found.
    ExportDirectory(String),
    /// The host just before an apt transaction (kept until compared; the
    /// first one stays when a killed run left it).
    BeforeTransaction(HostPackages),
    /// The host after the transaction: what it added joins the lists.
    AfterTransaction(HostPackages),
    /// The release's revision passed its wait.
    GoodRevision(u64),
    /// K3s's etcd was restored here (the restore's stamp): the other
    /// servers join again.
    DatastoreRestored(String),
}

impl std::fmt::Display for Fact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Preexisting(what, true) => write!(
                f,
                "{} was already on the host: uninstall keeps it",
                what.name()
            ),
            Self::Preexisting(what, false) => write!(
                f,
                "{} is new on this host: uninstall may remove it",
                what.name()
            ),
            Self::PackagesAdded(server, packages) => write!(
                f,
                "the install adds {} for {}: uninstall --delete-db purges them",
                packages.join(" "),
                server.name()
            ),
            Self::Origin(Object::ExportParent, Origin::Created) => f.write_str(
                "the export directory's parent is made by the install: it is kept 0700 root:root, and uninstall keeps it with the data",
            ),
            Self::Origin(object, Origin::Created) => {
                write!(
                    f,
                    "{object} is made by the install: uninstall may remove it"
                )
            }
            Self::Origin(object, Origin::Found) => write!(
                f,
                "{object} was there before the install: uninstall keeps it"
            ),
            Self::RootKubeconfig(digest) => write!(
                f,
                "root's kubeconfig is the copy stackinstall wrote (sha256 {})",
                &digest[..digest.len().min(16)]
            ),
            Self::Kubeconfig(Some(path)) => write!(
                f,
                "the cluster is reached with the kubeconfig `{}`: status, doctor, uninstall and the renewal timer use it",
                path.display()
            ),
            Self::Kubeconfig(None) => f.write_str("the cluster is reached with K3s's kubeconfig"),
            Self::ReloadPending(reload) => write!(
                f,
                "the configuration file is about to change until {reload} (a run killed in between leaves that to the next run)"
            ),
            Self::Reloaded(reload) => write!(f, "{reload}: the new configuration is read"),
            Self::GoodRevision(revision) => write!(
                f,
                "revision {revision} of the release passed its wait: a later one that fails is rolled back to it"
            ),
            Self::DatastoreRestored(stamp) => write!(
                f,
                "K3s's etcd was restored here ({stamp}): the other servers join again, their datastore set aside"
            ),
            Self::ExportDirectory(identity) => write!(
                f,
                "the export directory is device:inode {identity} (verify, status and doctor compare it)"
            ),
            Self::BeforeTransaction(host) => write!(
                f,
                "the host has {} packages and {} enabled units before the apt transaction",
                host.packages.len(),
                host.units.len()
            ),
            Self::AfterTransaction(_) => f.write_str(
                "the apt transaction added what the host has now and did not have before (uninstall --delete-db purges it)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_format_1_are_read_whole() {
        let pairs: BTreeMap<String, String> = [
            ("k3s.preexisting", "false"),
            ("k3s.root_kubeconfig_sha256", "abc"),
            ("helm.preexisting", "true"),
            ("istioctl.preexisting", "false"),
            ("istio.preexisting", "false"),
            ("mysql.preexisting", "false"),
            ("mysql.packages", "mariadb-server galera-4"),
            ("mysql.database.stackbill", "created"),
            ("mysql.user.stackbill", "found"),
            ("mongodb.config", "found"),
            ("mongodb.key-file", "created"),
            ("mongodb.user.stackbill", "created"),
            ("rabbitmq.user.stackbill", "created"),
            ("rabbitmq.vhost./", "found"),
            ("nfs.export-block", "created"),
            ("nfs.whatever", "created"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        let (facts, unknown) = Facts::from_version_1(&pairs);
        assert_eq!(unknown, ["nfs.whatever"]);
        assert_eq!(facts.k3s.preexisting, Some(false));
        assert_eq!(facts.mysql.packages, ["mariadb-server", "galera-4"]);
        assert_eq!(
            facts.origin(&Object::MysqlUser("stackbill".into())),
            Some(Origin::Found)
        );
        assert_eq!(
            facts.origin(&Object::Vhost("/".into())),
            Some(Origin::Found)
        );
        assert_eq!(facts.mongodb.key_file, Some(Origin::Created));
        assert_eq!(facts.nfs.export_block, Some(Origin::Created));
        assert_eq!(facts.istio.istioctl_preexisting, Some(false));
    }

    #[test]
    fn a_recorded_fact_is_kept() {
        let mut facts = Facts::default();
        let user = Object::MysqlUser("stackbill".into());
        assert!(facts.record(&Fact::Origin(user.clone(), Origin::Found)));
        assert!(!facts.record(&Fact::Origin(user.clone(), Origin::Created)));
        assert_eq!(facts.origin(&user), Some(Origin::Found));
        let helm = Fact::Preexisting(Preexisting::Helm, false);
        assert!(facts.record(&helm));
        assert!(!facts.record(&Fact::Preexisting(Preexisting::Helm, true)));
        assert_eq!(facts.helm.preexisting, Some(false));
        facts.record(&Fact::Origin(Object::Database("x".into()), Origin::Created));
        facts.forget_created(StepId::Mysql);
        assert_eq!(facts.origin(&Object::Database("x".into())), None);
        assert_eq!(facts.origin(&user), Some(Origin::Found));
    }
}
