//! More nodes on a K3s cluster: the join file `join-command` writes on a
//! server and `join` reads on the new host, and the checks `join` makes
//! before anything changes.
//!
//! The join file holds the token (for an agent a short-lived bootstrap
//! token from `k3s token create --ttl`, for a server the cluster's server
//! token) and what the new host must agree with, read from the cluster
//! when the file was made: the registration address, the K3s version, the
//! flags every server must share (docs.k3s.io "Server configuration":
//! cluster and service CIDR, cluster DNS, disabled components, secrets
//! encryption; K3s refuses a server whose "critical configuration" differs),
//! the node names taken, and the addresses the NFS export serves. It is
//! root's, mode 0600, and never on a command line. The live checks
//! (the API answers, its CA is the token's, the clocks agree) ask the
//! server itself at join time: `GET /cacerts`, which K3s serves to any
//! client, its SHA-256 compared with the token's `K10<hash>::` part
//! (`pkg/clientaccess/token.go`), and the response's `Date`.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use std::path::Path;

use crate::error::StepError;
use crate::host;
use crate::secret::Secret;

/// Where the node keeps the token K3s reads (`token-file` in its
/// config file), root's, 0600.
pub const TOKEN_FILE: &str = "/etc/stackinstall/k3s-join-token";
/// Where `join-command` writes the join file for `role`.
pub fn join_file_path(role: Role) -> String {
    format!("/etc/stackinstall/join-{}.toml", role.word())
}
/// The Lease in `kube-system` a server holds while it joins: servers join
/// one at a time (etcd adds one learner member at a time).
pub const LOCK_LEASE: &str = "stackinstall-server-join";
/// The ServiceAccount whose token may take the lock.
pub const LOCK_ACCOUNT: &str = "stackinstall-joiner";
/// The kubeconfig `join` takes the lock with (the registration address, the
/// cluster's CA and the lock token), root's 0600, removed after the join.
pub const LOCK_KUBECONFIG: &str = "/etc/stackinstall/join-lock.kubeconfig";
/// How long a lock is held without its holder finishing before another
/// server may take it (a join killed midway).
pub const LOCK_SECONDS: u64 = 900;

/// The labels a joined node's kubelet registers with (`node-label` in its
/// K3s config file): the join put the credential provider and the NFS
/// client in place before K3s started, and checks both.
pub const NODE_LABELS: [&str; 2] = [
    "stackinstall.io/credential-provider=true",
    "stackinstall.io/nfs-client=true",
];

/// The clocks of a node and its server may differ by this much (etcd and
/// the certificates K3s issues are time-bound).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What a joined node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The kubelet and the pods: `k3s agent`.
    Agent,
    /// A control plane with an etcd member: `k3s server`.
    Server,
}

impl Role {
    /// `agent` or `server`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Server => "server",
        }
    }

    /// K3s's systemd unit for the role (install.sh: `k3s-agent` for agents).
    pub fn unit(self) -> &'static str {
        match self {
            Self::Agent => "k3s-agent",
            Self::Server => "k3s",
        }
    }
}

/// The flags every server of a cluster must share, as the cluster has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFlags {
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: String,
    pub disable: Vec<String>,
    pub secrets_encryption: bool,
}

/// The join file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinFile {
    /// The registration address: `https://HOST:PORT`.
    pub server: String,
    pub role: Role,
    /// The token (bootstrap or server): redacted from every log once read.
    pub token: String,
    /// The cluster's K3s version.
    pub k3s_version: String,
    /// The API server's port.
    pub api_port: u16,
    pub flags: ClusterFlags,
    /// The names of the cluster's nodes when the file was made.
    pub nodes: Vec<String>,
    /// Their addresses (InternalIP) by name: a host that comes back under
    /// another name at the address of a node still listed would leave a
    /// stale etcd member beside its new one.
    #[serde(default)]
    pub node_addresses: std::collections::BTreeMap<String, String>,
    /// The clients the NFS export serves (addresses or networks).
    pub export_clients: Vec<String>,
    /// The export's path on the first host.
    pub export_path: String,
    /// For a server: a ServiceAccount token that may take the join lock
    /// (the Lease [`LOCK_LEASE`]) before this host's K3s runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_token: Option<String>,
    /// The stamp of the last restore of the cluster's etcd on the server
    /// that made the file: a server that held the cluster's data before
    /// it joins again with its datastore set aside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<String>,
}

impl JoinFile {
    /// Parses the file; its token is registered for redaction first thing.
    pub fn parse(text: &str) -> Result<Self, StepError> {
        let file: Self = toml::from_str(text).map_err(|error| {
            StepError::input(
                format!("the join file is not one `stackinstall join-command` wrote: {error}"),
                "run `sudo stackinstall join-command --role agent|server` on a server of the cluster and copy its file here",
            )
        })?;
        let _ = Secret::new(file.token.clone());
        if let Some(token) = &file.lock_token {
            let _ = Secret::new(token.clone());
        }
        Ok(file)
    }

    /// The file's text, with a comment saying what it is.
    pub fn render(&self) -> String {
        format!(
            "# stackinstall join file for a new {} of {}: it holds the cluster's token.\n# Root's, mode 0600; copy it to the new host over a private channel\n# (scp), use it with `stackinstall join --token-file`, then delete it.\n{}",
            self.role.word(),
            self.server,
            toml::to_string(self).expect("the join file serializes")
        )
    }

    /// The token's CA hash (`K10<hash>::...`), `None` for a token without
    /// one (K3s's "insecure" short form).
    pub fn ca_hash(&self) -> Option<&str> {
        let rest = self.token.strip_prefix("K10")?;
        rest.split_once("::").map(|(hash, _)| hash)
    }
}

/// What the K3s step makes of a joining host.
#[derive(Debug, Clone)]
pub struct Joining {
    pub role: Role,
    pub server: String,
    pub flags: ClusterFlags,
    /// The cluster's last restore (the join file's `restored`).
    pub restored: Option<String>,
}

/// Whether the address `address` is one of `clients` (an address, or a
/// network `A.B.C.D/N` holding it) of an NFS export.
pub fn export_covers(clients: &[String], address: &str) -> bool {
    let Ok(address) = address.parse::<Ipv4Addr>() else {
        return clients
            .iter()
            .any(|client| client == address || client == "*");
    };
    clients.iter().any(|client| {
        if client == "*" {
            return true;
        }
        match client.split_once('/') {
            None => client.parse::<Ipv4Addr>() == Ok(address),
            Some((network, bits)) => {
                let (Ok(network), Ok(bits)) = (network.parse::<Ipv4Addr>(), bits.parse::<u32>())
                else {
                    return false;
                };
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << 32u32.saturating_sub(bits)
                };
                u32::from(network) & mask == u32::from(address) & mask
            }
        }
    })
}

/// The clients of the export line for `path` in `/etc/exports`' text.
pub fn export_clients(exports: &str, path: &str) -> Vec<String> {
    exports
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(path)).then(|| {
                words
                    .map(|word| word.split('(').next().unwrap_or("").to_string())
                    .filter(|client| !client.is_empty())
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect()
}

/// The live checks against the server: its `/cacerts` answers, hashes to
/// the token's CA hash, and its clock is within [`CLOCK_SKEW`] of this
/// host's. A description of what was checked, and the CA the server sent.
pub fn check_server(file: &JoinFile) -> Result<(String, Vec<u8>), StepError> {
    let url = format!("{}/cacerts", file.server.trim_end_matches('/'));
    let answer = crate::host::download::fetch_with_date(&url, Duration::from_secs(10))
        .map_err(|error| {
            StepError::input(
                format!("the cluster's API at `{}` does not answer: {error}", file.server),
                "check the address (`[cluster] server_address` on the first host), the firewall (the API port) and that K3s runs there (`systemctl status k3s`)",
            )
        })?;
    let found = hex::encode(sha2::Sha256::digest(&answer.body));
    if let Some(expected) = file.ca_hash()
        && expected != found
    {
        return Err(StepError::input(
            format!(
                "the server at `{}` sends a CA certificate (sha256 {found}) that is not the cluster's of the token ({expected}): another server answers at that address",
                file.server
            ),
            "check `--server`; the join file names the address it was made for",
        ));
    }
    let Some(date) = answer.date else {
        return Ok((
            "the API answers and its CA is the token's (it sent no Date)".into(),
            answer.body,
        ));
    };
    let now = time::OffsetDateTime::now_utc();
    let skew = (now - date).unsigned_abs();
    if skew > CLOCK_SKEW {
        return Err(StepError::input(
            format!(
                "this host's clock is {} s off the server's (more than {} s): etcd and K3s's certificates need agreeing clocks",
                skew.as_secs(),
                CLOCK_SKEW.as_secs()
            ),
            "set both hosts to synchronize with NTP (`timedatectl set-ntp true`), then run again",
        ));
    }
    Ok((
        format!(
            "the API at {} answers, its CA is the token's, clocks within {} s",
            file.server,
            skew.as_secs()
        ),
        answer.body,
    ))
}

/// The lock's kubeconfig: the server, its CA, the lock token.
pub fn lock_kubeconfig(server: &str, ca: &[u8], token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n    server: \"{server}\"\n    certificate-authority-data: {ca}\nusers:\n- name: joiner\n  user:\n    token: \"{token}\"\ncontexts:\n- name: join\n  context:\n    cluster: cluster\n    user: joiner\ncurrent-context: join\n"
    )
}

/// The Lease of the join lock, held by `holder` from `now` (RFC 3339).
pub fn lock_lease(holder: &str, now: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {LOCK_LEASE}\n  namespace: kube-system\nspec:\n  holderIdentity: \"{holder}\"\n  leaseDurationSeconds: {LOCK_SECONDS}\n  acquireTime: \"{now}\"\n  renewTime: \"{now}\"\n"
    )
}

/// The RBAC of the lock: a ServiceAccount that may read, take and let go
/// of Leases in `kube-system` (nothing else).
pub fn lock_rbac() -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {LOCK_ACCOUNT}\n  namespace: kube-system\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {LOCK_ACCOUNT}\n  namespace: kube-system\nrules:\n- apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n  verbs: [\"get\", \"create\", \"delete\"]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {LOCK_ACCOUNT}\n  namespace: kube-system\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {LOCK_ACCOUNT}\nsubjects:\n- kind: ServiceAccount\n  name: {LOCK_ACCOUNT}\n  namespace: kube-system\n"
    )
}

/// The node name K3s registers: the host's name.
pub fn node_name(host: &host::Host) -> String {
    host::fs::read_optional(&host.path("/etc/hostname"))
        .ok()
        .flatten()
        .map(|text| text.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| {
            host::fs::read_optional(Path::new("/proc/sys/kernel/hostname"))
                .ok()
                .flatten()
                .map(|text| text.trim().to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_addresses_cover() {
        let clients = vec!["10.0.0.5".to_string(), "192.168.1.0/24".to_string()];
        assert!(export_covers(&clients, "10.0.0.5"));
        assert!(export_covers(&clients, "192.168.1.77"));
        assert!(!export_covers(&clients, "10.0.0.6"));
        assert!(!export_covers(&clients, "192.168.2.1"));
    }

    #[test]
    fn clients_are_read_from_the_export_line() {
        let exports =
            "# comment\n/data/stackbill 10.0.0.5(rw,sync) 10.0.0.6(rw)\n/other 1.2.3.4(ro)\n";
        assert_eq!(
            export_clients(exports, "/data/stackbill"),
            vec!["10.0.0.5", "10.0.0.6"]
        );
    }
}
