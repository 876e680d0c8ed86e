//! The cluster's members, as K3s keeps them, for several hosts (several
//! worlds, each with its own `--root` and units) sharing one cluster: the
//! worlds' `Config::cluster_state` names one directory where the cluster's
//! objects (`kube/`), its server token, its critical configuration and
//! its datastore kind live. A world without it is a cluster of its own
//! (its `record/state`).
//!
//! Modelled on K3s v1.29 (k3s-io/k3s):
//! - the server token `K10<sha256 of the cluster CA>::server:<password>`
//!   (`pkg/clientaccess/token.go`: a "secure" token names the CA's hash,
//!   which a joining node compares with the CA the server sends at
//!   `/cacerts`), written by the first server to
//!   `/var/lib/rancher/k3s/server/token`;
//! - bootstrap tokens (`k3s token create [--ttl DURATION]`, docs.k3s.io
//!   "token"; `pkg/cli/token/token.go`): `<id>.<secret>` kept as the
//!   Kubernetes bootstrap token Secret `bootstrap-token-<id>` in
//!   `kube-system` with its `expiration`, printed in the secure form
//!   `K10<ca hash>::<id>.<secret>`; they join agents only (a server joins
//!   with the server token);
//! - a server that joins compares its critical configuration (cluster and
//!   service CIDR, cluster DNS, disabled components, secrets encryption)
//!   with the cluster's and refuses to start on a difference
//!   (`pkg/cluster/bootstrap.go`, "critical configuration value
//!   mismatch"), and joins only a cluster whose datastore is embedded etcd
//!   (a SQLite server has no etcd to join; docs.k3s.io "High Availability
//!   Embedded etcd": the first server starts with `cluster-init`);
//! - an existing SQLite server restarted with `cluster-init` moves its data
//!   into a new embedded etcd (docs.k3s.io "Converting from SQLite to
//!   embedded etcd", K3s v1.22.2 and later);
//! - each K3s registers its Node (with the `node-label`s of its config
//!   file, and labels `node-role.kubernetes.io/
//!   control-plane`, `master` and, with etcd, `etcd`: `pkg/node`,
//!   `pkg/etcd/etcd.go` `setNodeLabelsAndAnnotations`), Ready while its
//!   host's unit runs (`k3s` for a server, `k3s-agent` for an agent); an
//!   etcd member is a server Node with the `etcd` label, and deleting the
//!   Node removes its member (`pkg/etcd/member_controller.go`), refused
//!   here as etcd refuses a removal that leaves no quorum;
//! - a cluster reset (`k3s server --cluster-reset`, docs.k3s.io
//!   "etcd-snapshot") makes a new etcd cluster of one member from a
//!   snapshot: every other server's etcd data names the old cluster, and
//!   etcd refuses a peer of another cluster ("request cluster ID
//!   mismatch"), so such a server is not Ready and fails to start until
//!   its `server/db` is deleted and it joins again (K3s's log at the
//!   reset: "Backup and delete ${datadir}/server/db on each peer etcd
//!   server and rejoin the nodes"). Here the cluster's etcd is a
//!   generation number in the cluster directory, and each server's
//!   `server/db/etcd` keeps the generation it belongs to.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::systemctl::Units;
use crate::Fake;
use crate::store::{Resource, Store};

/// The fake cluster's CA bundle, as a server sends it at `/cacerts`.
pub const CA_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nZmFrZSBrM3MgY2x1c3RlciBDQQ==\n-----END CERTIFICATE-----\n";

/// The hash of the fake cluster's CA (`sha256` of its PEM bundle), the
/// part of every secure token after `K10`.
pub fn ca_hash() -> String {
    use sha2::Digest;
    sha2::Sha256::digest(CA_PEM.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
/// The server token's password part: one value for every fake cluster.
const SERVER_PASSWORD: &str = "5e3c7a1d9b2f4e6a8c0d1f3b5a7e9c2d";
/// The annotation of a Node naming its host's state directory (where its
/// units are), which makes it Ready while that host's K3s runs.
pub const HOST_STATE: &str = "fake.stackinstall/host-state";
/// The annotation of a Node naming its host's root (where its etcd data
/// is).
pub const HOST_ROOT: &str = "fake.stackinstall/host-root";
/// The etcd cluster a server's etcd data belongs to (under its root).
pub const MEMBER_OF: &str = "/var/lib/rancher/k3s/server/db/etcd/fake-cluster-generation";

/// The cluster's etcd generation: a new one at each cluster reset.
fn generation(cluster: &std::path::Path) -> u64 {
    std::fs::read_to_string(cluster.join("etcd-generation"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1)
}

/// The etcd cluster a host's data belongs to; `None` without etcd data.
fn member_of(root: &std::path::Path) -> Option<u64> {
    let path = root.join(MEMBER_OF.trim_start_matches('/'));
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A cluster reset on this host: a new etcd cluster of which this
/// server's data is the only member.
pub fn reset(fake: &Fake) {
    let dir = cluster_dir(fake);
    std::fs::create_dir_all(&dir).unwrap();
    let next = generation(&dir) + 1;
    std::fs::write(dir.join("etcd-generation"), next.to_string()).unwrap();
    let marker = fake.host_path(MEMBER_OF);
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(marker, next.to_string()).unwrap();
}

/// The etcd role label.
pub const ETCD_LABEL: &str = "node-role.kubernetes.io/etcd";
/// The control plane role label.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// The cluster's server token.
pub fn server_token() -> String {
    format!("K10{}::server:{SERVER_PASSWORD}", ca_hash())
}

/// Where the cluster's shared state is: the world's `cluster_state`, or
/// its own state directory.
pub fn cluster_dir(fake: &Fake) -> PathBuf {
    fake.config
        .cluster_state
        .clone()
        .unwrap_or_else(|| fake.state.clone())
}

fn node_resource() -> Resource {
    Resource::of_kind("Node").expect("nodes are a kind")
}

/// The node name of this host: the world's, or `node1`.
pub fn node_name(fake: &Fake) -> String {
    fake.config.node_name.clone()
}

/// The datastore of the cluster: `etcd` once a server started with
/// `cluster-init`, else `sqlite` (or nothing before its first server).
pub fn datastore(fake: &Fake) -> Option<String> {
    std::fs::read_to_string(cluster_dir(fake).join("datastore"))
        .ok()
        .map(|text| text.trim().to_string())
}

fn set_datastore(fake: &Fake, kind: &str) {
    std::fs::write(cluster_dir(fake).join("datastore"), kind).unwrap();
}

/// What a joining K3s is told: the server's config keys that must match
/// (its critical configuration), as the first server started with them.
const CRITICAL: [(&str, &str); 5] = [
    ("cluster-cidr", "10.42.0.0/16"),
    ("service-cidr", "10.43.0.0/16"),
    ("cluster-dns", "10.43.0.10"),
    ("disable", "[]"),
    ("secrets-encryption", "false"),
];

/// The critical configuration of a server's config file.
pub fn critical(config: &serde_yaml_ng::Value) -> Vec<(String, String)> {
    CRITICAL
        .iter()
        .map(|(key, default)| {
            let value = match config.get(*key) {
                Some(serde_yaml_ng::Value::String(text)) => text.clone(),
                Some(serde_yaml_ng::Value::Sequence(items)) => {
                    let mut names: Vec<String> = (items.iter())
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect();
                    names.sort();
                    format!("[{}]", names.join(","))
                }
                Some(other) => serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                None => default.to_string(),
            };
            (key.to_string(), value)
        })
        .collect()
}

/// K3s starting on this host with `config` (its config file) and the
/// `exec` words of the install script or unit (`server`, `agent`): joins
/// or makes the cluster and registers the host's Node. An error is what
/// K3s logs as it exits.
pub fn start(
    fake: &Fake,
    config: &serde_yaml_ng::Value,
    agent: bool,
    version: &str,
) -> Result<(), String> {
    let dir = cluster_dir(fake);
    std::fs::create_dir_all(&dir).unwrap();
    let url = config.get("server").and_then(|value| value.as_str());
    let cluster_init = config
        .get("cluster-init")
        .and_then(serde_yaml_ng::Value::as_bool)
        .unwrap_or(false);
    let critical_file = dir.join("critical.json");
    match url {
        None if agent => return Err("--server is required to run an agent".into()),
        None => {
            let mine = critical(config);
            if let Ok(text) = std::fs::read_to_string(&critical_file) {
                let theirs: Vec<(String, String)> = serde_json::from_str(&text).unwrap();
                if theirs != mine && fake.config.cluster_state.is_some() {
                    return Err(mismatch(&theirs, &mine));
                }
            }
            std::fs::write(&critical_file, serde_json::to_string(&mine).unwrap()).unwrap();
            match (datastore(fake).as_deref(), cluster_init) {
                (Some("etcd"), _) | (_, true) => set_datastore(fake, "etcd"),
                _ => set_datastore(fake, "sqlite"),
            }
        }
        Some(_) => {
            let token = read_token(fake, config)?;
            check_token(fake, &token, agent)?;
            if !agent {
                let mine = member_of(&fake.host_path("/"));
                if mine.is_some_and(|mine| mine != generation(&dir)) {
                    return Err("starting kubernetes: preparing server: start managed database: etcdserver: request cluster ID mismatch (this server's etcd data is from before a cluster reset: delete server/db and join again)".into());
                }
                if datastore(fake).as_deref() != Some("etcd") {
                    return Err("starting kubernetes: preparing server: failed to join cluster: the server's datastore is not embedded etcd; start the first server with --cluster-init".into());
                }
                let theirs: Vec<(String, String)> = std::fs::read_to_string(&critical_file)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or_default();
                let mine = critical(config);
                if theirs != mine {
                    return Err(mismatch(&theirs, &mine));
                }
            }
        }
    }
    register(fake, agent, version, config);
    if !agent && datastore(fake).as_deref() == Some("etcd") {
        let data = fake.host_path("/var/lib/rancher/k3s/server/db/etcd/member/snap/db");
        if !data.exists() {
            std::fs::create_dir_all(data.parent().unwrap()).unwrap();
            std::fs::write(&data, b"bbolt (the fake cluster's etcd)\n").unwrap();
        }
        let marker = fake.host_path(MEMBER_OF);
        if !marker.exists() {
            std::fs::write(marker, generation(&dir).to_string()).unwrap();
        }
    }
    Ok(())
}

fn mismatch(theirs: &[(String, String)], mine: &[(String, String)]) -> String {
    let differing = (theirs.iter().zip(mine))
        .find(|(a, b)| a != b)
        .map(|((key, _), _)| key.clone())
        .unwrap_or_default();
    format!(
        "starting kubernetes: preparing server: failed to validate server configuration: critical configuration value mismatch between servers: {differing}"
    )
}

/// The token of the config file: `token-file` (a host path) or `token`.
fn read_token(fake: &Fake, config: &serde_yaml_ng::Value) -> Result<String, String> {
    if let Some(file) = config.get("token-file").and_then(|value| value.as_str()) {
        return std::fs::read_to_string(fake.host_path(file))
            .map(|text| text.trim().to_string())
            .map_err(|error| format!("failed to read token file {file}: {error}"));
    }
    match config.get("token").and_then(|value| value.as_str()) {
        Some(token) => Ok(token.to_string()),
        None => Err("--token is required".into()),
    }
}

/// Whether the cluster accepts `token` for an agent or a server.
fn check_token(fake: &Fake, token: &str, agent: bool) -> Result<(), String> {
    let Some((hash, credential)) = token
        .strip_prefix("K10")
        .and_then(|rest| rest.split_once("::"))
    else {
        return Err("failed to parse token: token is not in the secure format".into());
    };
    if hash != ca_hash() {
        return Err(
            "failed to get CA certs: token CA hash does not match the Cluster CA certificate hash"
                .into(),
        );
    }
    if credential == format!("server:{SERVER_PASSWORD}") {
        return Ok(());
    }
    let unauthorized = || "failed to get CA certs: 401 Unauthorized".to_string();
    let (id, secret) = credential.split_once('.').ok_or_else(unauthorized)?;
    if !agent {
        return Err(unauthorized());
    }
    let store = Store::new(&cluster_dir(fake));
    let secrets = Resource::of_kind("Secret").unwrap();
    let stored = store
        .get(
            secrets,
            Some("kube-system"),
            &format!("bootstrap-token-{id}"),
        )
        .ok_or_else(unauthorized)?;
    if stored["stringData"]["token-secret"] != secret {
        return Err(unauthorized());
    }
    let expiration = stored["stringData"]["expiration"].as_u64().unwrap_or(0);
    if expiration != 0 && expiration < now() {
        return Err(unauthorized());
    }
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `k3s token create [--ttl DURATION]`: a new bootstrap token, printed in
/// the secure form. A TTL is `NhNmNs` (Go's `time.ParseDuration`), 24h by
/// default, `0` for one that never expires.
pub fn create_token(fake: &Fake, ttl: Option<&str>) -> Result<String, String> {
    let seconds = parse_duration(ttl.unwrap_or("24h"))?;
    let stamp = now();
    let id = format!(
        "{:06x}",
        (stamp ^ u64::from(std::process::id())) & 0xff_ffff
    );
    let secret = format!("{:016x}", stamp.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let expiration = if seconds == 0 { 0 } else { stamp + seconds };
    let object = json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": { "name": format!("bootstrap-token-{id}"), "namespace": "kube-system" },
        "type": "bootstrap.kubernetes.io/token",
        "stringData": { "token-id": id, "token-secret": secret, "expiration": expiration,
            "usage-bootstrap-authentication": "true" },
    });
    Store::new(&cluster_dir(fake)).put(&object)?;
    Ok(format!("K10{}::{id}.{secret}", ca_hash()))
}

/// Go's durations as `k3s token create --ttl` takes them: `90m`, `1h30m`,
/// `45s`, `0`.
fn parse_duration(text: &str) -> Result<u64, String> {
    if text == "0" {
        return Ok(0);
    }
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' if !number.is_empty() => {
                let n: u64 = number.parse().unwrap();
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return Err(format!("time: invalid duration \"{text}\"")),
        }
    }
    if !number.is_empty() {
        return Err(format!("time: missing unit in duration \"{text}\""));
    }
    Ok(total)
}

/// Registers (or updates) this host's Node.
fn register(fake: &Fake, agent: bool, version: &str, config: &serde_yaml_ng::Value) {
    let name = node_name(fake);
    let address = (config.get("node-ip").and_then(|value| value.as_str()))
        .map_or_else(|| fake.config.node_address.clone(), str::to_string);
    let mut labels = json!({ "kubernetes.io/hostname": name });
    // `node-label` (`--node-label`): labels the kubelet registers with.
    for label in (config.get("node-label").and_then(|l| l.as_sequence()))
        .into_iter()
        .flatten()
        .filter_map(|label| label.as_str())
    {
        if let Some((key, value)) = label.split_once('=') {
            labels[key] = json!(value);
        }
    }
    if !agent {
        labels[CONTROL_PLANE_LABEL] = json!("true");
        labels["node-role.kubernetes.io/master"] = json!("true");
        if datastore(fake).as_deref() == Some("etcd") {
            labels[ETCD_LABEL] = json!("true");
        }
    }
    let node = json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": { "name": name, "labels": labels,
            "annotations": { HOST_STATE: fake.state.display().to_string(),
                HOST_ROOT: fake.host_path("/").display().to_string() } },
        "status": {
            "nodeInfo": { "kubeletVersion": version },
            "addresses": [{ "type": "InternalIP", "address": address }],
        },
    });
    Store::new(&cluster_dir(fake)).put(&node).unwrap();
}

/// Every stored Node with its Ready condition: Ready while its host's K3s
/// unit runs and, for a server with etcd data, that data is of the
/// cluster's etcd (`cluster`: the cluster's directory).
pub fn with_readiness(mut node: Value, cluster: &std::path::Path) -> Value {
    if node["status"].get("conditions").is_some() {
        return node;
    }
    let Some(state) = node["metadata"]["annotations"][HOST_STATE].as_str() else {
        return node;
    };
    let units = Units::load_from(std::path::Path::new(state));
    let running = ["k3s", "k3s-agent"]
        .iter()
        .any(|unit| units.known(unit).is_some_and(|unit| unit.active));
    let root = node["metadata"]["annotations"][HOST_ROOT].as_str();
    let running = running
        && root
            .and_then(|root| member_of(std::path::Path::new(root)))
            .is_none_or(|member| member == generation(cluster));
    let status = if running { "True" } else { "Unknown" };
    node["status"]["conditions"] = json!([{ "type": "Ready", "status": status }]);
    node
}

/// Deleting a Node: an etcd member's removal is refused when the members
/// left would have no quorum of the members before (etcd's
/// `ErrNotEnoughStartedMembers`), and the last member cannot go.
pub fn may_delete(store: &Store, name: &str) -> Result<(), String> {
    let nodes = store.list(node_resource(), None);
    let members: Vec<&Value> = (nodes.iter())
        .filter(|node| node["metadata"]["labels"][ETCD_LABEL] == "true")
        .collect();
    let leaving = members.iter().any(|node| node["metadata"]["name"] == name);
    if !leaving {
        return Ok(());
    }
    let healthy = (members.iter())
        .filter(|node| node["metadata"]["name"] != name)
        .filter(|node| {
            with_readiness((**node).clone(), store.state_dir())["status"]["conditions"][0]["status"]
                == "True"
        })
        .count();
    // etcd's strict reconfiguration check (`isReadyToRemoveVotingMember`):
    // the started members left must be a quorum of the smaller cluster.
    let left = members.len() - 1;
    if left == 0 || healthy < left / 2 + 1 {
        return Err("etcdserver: re-configuration failed due to not enough started members".into());
    }
    Ok(())
}

/// The kubeconfig a joining server's `join` uses before its own K3s runs:
/// the cluster's address and a ServiceAccount token (`kubectl create
/// token`), for the join lock only.
pub const LOCK_KUBECONFIG: &str = "/etc/stackinstall/join-lock.kubeconfig";

/// A ServiceAccount token for `namespace/account`, kept in the cluster.
pub fn issue_account_token(fake: &Fake, namespace: &str, account: &str) -> String {
    let file = cluster_dir(fake).join("account-tokens.json");
    let mut tokens: std::collections::BTreeMap<String, String> = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let token = format!(
        "eyJhbGciOiJSUzI1NiJ9.{namespace}-{account}-{:x}",
        now() ^ u64::from(std::process::id())
    );
    tokens.insert(
        token.clone(),
        format!("system:serviceaccount:{namespace}:{account}"),
    );
    std::fs::write(&file, serde_json::to_string(&tokens).unwrap()).unwrap();
    token
}

/// A call with `KUBECONFIG` naming the join lock's kubeconfig: `None` for
/// any other call (the host's own K3s answers it), else whether the API
/// (some server of the shared cluster) accepts its token (the API's
/// `Unauthorized` for a token it did not issue).
pub fn remote_access(fake: &Fake) -> Option<Result<(), String>> {
    if fake.env.get("KUBECONFIG").map(String::as_str) != Some(LOCK_KUBECONFIG) {
        return None;
    }
    let text = std::fs::read_to_string(fake.host_path(LOCK_KUBECONFIG)).unwrap_or_default();
    let token = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("token:"))
        .map(|token| token.trim().trim_matches('"').to_string())
        .unwrap_or_default();
    let tokens: std::collections::BTreeMap<String, String> =
        std::fs::read(cluster_dir(fake).join("account-tokens.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
    Some(match tokens.contains_key(&token) {
        true => Ok(()),
        false => Err("error: You must be logged in to the server (Unauthorized)\n".into()),
    })
}
