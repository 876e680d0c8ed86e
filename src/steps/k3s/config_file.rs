//! K3s's configuration file `/etc/rancher/k3s/config.yaml`, which K3s reads
//! at every start (docs.k3s.io "Configuration File": each key is a server
//! flag without its `--`): written from the profile's `[cluster]` (the pod
//! and Service networks, the API server's port, extra TLS SANs) and this
//! install's fixed settings (the components Istio and the NodePorts
//! replace, the kubeconfig's mode), before the install script starts K3s.
//! A K3s that already runs reads a changed file at its next restart, which
//! the step does once. The networks cannot change once K3s made the
//! cluster: preflight refuses such a change before anything changes.

use crate::config::Config;
use crate::context::Context;
use crate::host;
use crate::steps::{Action, StepError};

/// Where K3s reads its configuration.
pub const PATH: &str = "/etc/rancher/k3s/config.yaml";
/// The components this install replaces: Traefik by Istio's gateway,
/// ServiceLB by the gateway's NodePorts.
const DISABLED: [&str; 2] = ["traefik", "servicelb"];
/// K3s's own networks when it is started without them (its
/// `--cluster-cidr` and `--service-cidr` defaults).
const K3S_DEFAULTS: [(&str, &str); 2] = [
    ("cluster-cidr", "10.42.0.0/16"),
    ("service-cidr", "10.43.0.0/16"),
];

/// The file for `config` (every value has passed its rule: networks,
/// a port, host names and addresses, none needing YAML escapes).
pub fn render(config: &Config) -> String {
    let cluster = &config.cluster;
    let mut text = format!(
        "# Written by stackinstall from the profile's [cluster]; K3s reads it at\n# every start. cluster-cidr and service-cidr cannot change once the\n# cluster is made.\ncluster-cidr: \"{}\"\nservice-cidr: \"{}\"\nhttps-listen-port: {}\n",
        cluster.pod_cidr, cluster.service_cidr, cluster.api_port
    );
    push_sans(&mut text, cluster);
    push_list(&mut text, "disable", &DISABLED);
    push_kubeconfig_mode(&mut text);
    text
}

/// The API certificate's extra names: the profile's and the fixed
/// registration address; nothing when there are none.
fn push_sans(text: &mut String, cluster: &crate::config::Cluster) {
    let sans: Vec<String> = (cluster.tls_san.iter())
        .chain(cluster.server_address.as_ref())
        .map(|name| format!("\"{name}\""))
        .collect();
    if !sans.is_empty() {
        push_list(text, "tls-san", &sans);
    }
}

/// `key:` and one `  - item` line per item.
fn push_list(text: &mut String, key: &str, items: &[impl std::fmt::Display]) {
    text.push_str(&format!("{key}:\n"));
    for item in items {
        text.push_str(&format!("  - {item}\n"));
    }
}

fn push_kubeconfig_mode(text: &mut String) {
    text.push_str(&format!(
        "write-kubeconfig-mode: \"{:04o}\"\n",
        super::kubeconfig::MODE
    ));
}

/// The file of this host: the profile's, or on a host joining a cluster
/// (`stackinstall join`) the joining one: the registration address, the
/// token's file (never the token), this host's address, and for a server
/// the flags every server shares as the cluster has them.
pub fn render_for(context: &Context) -> Result<String, StepError> {
    let Some(join) = &context.join else {
        let mut text = render(&context.config);
        if has_etcd(context) {
            text.push_str("# The datastore is embedded etcd (`stackinstall ha enable`).\ncluster-init: true\n");
        }
        return Ok(text);
    };
    let cluster = &context.config.cluster;
    let mut text = format!(
        "# Written by `stackinstall join` (a {} of {}); K3s reads it at every start.\nserver: \"{}\"\ntoken-file: \"{}\"\nnode-ip: \"{}\"\n",
        join.role.word(),
        join.server,
        join.server,
        crate::join::TOKEN_FILE,
        context.host_ip()?
    );
    let labels = crate::join::NODE_LABELS.map(|label| format!("\"{label}\""));
    push_list(&mut text, "node-label", &labels);
    if join.role == crate::join::Role::Agent {
        return Ok(text);
    }
    let flags = &join.flags;
    text.push_str(&format!(
        "cluster-cidr: \"{}\"\nservice-cidr: \"{}\"\ncluster-dns: \"{}\"\nhttps-listen-port: {}\n",
        flags.cluster_cidr, flags.service_cidr, flags.cluster_dns, cluster.api_port
    ));
    push_sans(&mut text, cluster);
    push_list(&mut text, "disable", &flags.disable);
    if flags.secrets_encryption {
        text.push_str("secrets-encryption: true\n");
    }
    push_kubeconfig_mode(&mut text);
    Ok(text)
}

/// Whether K3s keeps (or is to keep, `ha enable`) its data in embedded
/// etcd rather than SQLite.
pub fn has_etcd(context: &Context) -> bool {
    context.cluster_init || host::fs::exists(&context.host.path(host::backup::K3S_ETCD))
}

/// The flags every server shares, as the K3s of this host runs with them
/// (its file, and K3s's defaults for what it does not set): what a joining
/// server must use.
pub fn cluster_flags(context: &Context) -> Result<crate::join::ClusterFlags, StepError> {
    let text = host::fs::read_optional(&context.host.path(PATH))?.unwrap_or_default();
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_default();
    let text_of = |key: &str, default: &str| {
        (file.get(key).and_then(serde_yaml_ng::Value::as_str))
            .unwrap_or(default)
            .to_string()
    };
    let mut disable: Vec<String> = (file.get("disable").and_then(|d| d.as_sequence()))
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    disable.sort();
    Ok(crate::join::ClusterFlags {
        cluster_cidr: text_of("cluster-cidr", K3S_DEFAULTS[0].1),
        service_cidr: text_of("service-cidr", K3S_DEFAULTS[1].1),
        cluster_dns: text_of("cluster-dns", "10.43.0.10"),
        disable,
        secrets_encryption: (file.get("secrets-encryption"))
            .and_then(serde_yaml_ng::Value::as_bool)
            .unwrap_or(false),
    })
}

/// The write of the file, when it differs from the profile's (0644: it
/// holds no secret, and a plan without root reads it).
pub fn action(context: &Context) -> Result<Option<Action>, StepError> {
    let text = render_for(context)?;
    let path = context.host.path(PATH);
    if host::fs::read_optional(&path)?.as_deref() == Some(text.as_str()) {
        return Ok(None);
    }
    Ok(Some(Action::write(
        context.host.reached(path),
        text.into_bytes(),
        0o644,
    )))
}

/// Fails when the file is not the profile's (K3s would start with other
/// settings), or K3s was not restarted since it was rewritten.
pub fn check(context: &Context) -> Result<(), StepError> {
    crate::steps::services::check_restarted(context, super::unit(context))?;
    match action(context)? {
        None => Ok(()),
        Some(_) => Err(StepError::failed(
            format!("`{PATH}` is not the one the profile's `[cluster]` makes"),
            "run `stackinstall install` (K3s is restarted once to read it)",
        )),
    }
}

/// The networks the K3s on the host was made with: its configuration
/// file's, or K3s's defaults for those the file does not set.
fn made_with(context: &Context) -> Result<[(&'static str, String); 2], StepError> {
    let path = context.host.path(PATH);
    let text = host::fs::read_optional(&path)?.unwrap_or_default();
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_default();
    Ok(K3S_DEFAULTS.map(|(key, default)| {
        let set = file.get(key).and_then(serde_yaml_ng::Value::as_str);
        (key, set.unwrap_or(default).to_string())
    }))
}

/// For preflight, when K3s is on the host: a check that the profile's
/// networks are the ones its cluster was made with, or an input error
/// naming the one that changed and why K3s cannot follow.
pub fn check_networks(context: &Context) -> Result<Option<String>, StepError> {
    if !context.host.path(super::BINARY).exists() {
        return Ok(None);
    }
    let cluster = &context.config.cluster;
    let wanted = [
        ("pod_cidr", &cluster.pod_cidr),
        ("service_cidr", &cluster.service_cidr),
    ];
    for ((key, found), (setting, want)) in made_with(context)?.iter().zip(wanted) {
        if found != want {
            return Err(StepError::input(
                format!(
                    "`[cluster] {setting}` is {want}, but the K3s on this host made its cluster with {key} {found}: K3s cannot change a cluster's {key} once the cluster is made (its node's pod range, the Services' addresses and the network's routes keep the first), so nothing was changed"
                ),
                format!(
                    "set `[cluster] {setting} = \"{found}\"`, or remove K3s (`stackinstall uninstall --delete-infra`) and install again"
                ),
            ));
        }
    }
    Ok(Some(format!(
        "K3s's cluster was made with cluster-cidr {} and service-cidr {}, as the profile has them",
        cluster.pod_cidr, cluster.service_cidr
    )))
}

/// Whether this host joined a cluster (its K3s config names a `server:`
/// to register with), rather than being its first server.
pub fn is_joined(host: &crate::host::Host) -> Result<bool, StepError> {
    let config = crate::host::fs::read_optional(&host.path(PATH))?;
    Ok(config.is_some_and(|text| text.lines().any(|line| line.starts_with("server:"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cluster_setting_is_in_the_file() {
        let mut config = Config::default();
        config.cluster.pod_cidr = "10.50.0.0/16".into();
        config.cluster.service_cidr = "10.51.0.0/16".into();
        config.cluster.api_port = 7443;
        config.cluster.tls_san = vec!["api.example.com".into(), "192.0.2.7".into()];
        let text = render(&config);
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let expected = "{\"cluster-cidr\":\"10.50.0.0/16\",\"service-cidr\":\"10.51.0.0/16\",\"https-listen-port\":7443,\"tls-san\":[\"api.example.com\",\"192.0.2.7\"],\"disable\":[\"traefik\",\"servicelb\"],\"write-kubeconfig-mode\":\"0600\"}";
        assert_eq!(serde_json::to_string(&parsed).unwrap(), expected, "{text}");
    }
}
