//! `istioctl` 1.20 (istio/istio `istioctl/cmd`, `operator/cmd/mesh`):
//! `install -y -f OVERLAY` makes istiod (its environment from the overlay's
//! `values.pilot.env`, available) and the ingress gateway (its Deployment,
//! available, and its Service, type and ports from the overlay) in the fake
//! cluster; `uninstall --purge -y`
//! takes the Deployments and Services of `istio-system` away; `version`,
//! `analyze`, `proxy-status` and `x precheck` (`istioctl/pkg/precheck`:
//! its "safe to install or upgrade" line) answer as for a healthy mesh.
//! Cobra's messages for an unknown command or flag.

use serde_json::{Value, json};

use super::cluster::Cluster;
use super::kubectl::REFUSED;
use crate::flags::{self, Refused, Spec};
use crate::store::Resource;
use crate::{Fake, Reply};

const SPEC: Spec = Spec {
    values: &[
        &["-f", "--filename"],
        &["--set", "-s"],
        &["-r", "--revision"],
        &["-o", "--output"],
        &["--kubeconfig", "-c"],
        &["--context"],
        &["-i", "--istioNamespace"],
    ],
    switches: &[
        &["-y", "--skip-confirmation"],
        &["--purge"],
        &["--remote"],
        &["-A", "--all-namespaces"],
        &["--short"],
    ],
};

pub fn run(fake: &Fake) -> Reply {
    let parsed = match flags::parse(&fake.args, &SPEC) {
        Ok(parsed) => parsed,
        Err(Refused::Unknown(flag)) => {
            return Reply::fail(1, format!("Error: unknown flag: {flag}\n"));
        }
        Err(Refused::Shorthand(letter, word)) => {
            return Reply::fail(
                1,
                format!("Error: unknown shorthand flag: '{letter}' in {word}\n"),
            );
        }
        Err(Refused::MissingValue(flag)) => {
            return Reply::fail(1, format!("Error: flag needs an argument: {flag}\n"));
        }
    };
    let cluster = Cluster::new(fake);
    let command = parsed.positional.first().map(String::as_str).unwrap_or("");
    if command == "version" {
        return Reply::out("1.20.3\n");
    }
    let second = parsed.positional.get(1).map(String::as_str);
    if command == "x" && second != Some("precheck") {
        return Reply::fail(
            1,
            format!(
                "Error: unknown command \"{}\" for \"istioctl experimental\"\n",
                second.unwrap_or("")
            ),
        );
    }
    if !["install", "uninstall", "analyze", "proxy-status", "x"].contains(&command) {
        return Reply::fail(
            1,
            format!("Error: unknown command \"{command}\" for \"istioctl\"\n"),
        );
    }
    if !cluster.up() {
        return Reply::fail(1, format!("Error: {REFUSED}"));
    }
    match command {
        "install" => install(&cluster, parsed.value("-f")),
        "uninstall" => {
            if !parsed.switch("--purge") {
                return Reply::fail(
                    1,
                    "Error: at least one of the --revision (or --set revision=<revision>), --filename or --purge flags should be set\n",
                );
            }
            for kind in ["Deployment", "Service"] {
                let resource = Resource::of_kind(kind).unwrap();
                for object in cluster.store.list(resource, Some("istio-system")) {
                    let name = object["metadata"]["name"].as_str().unwrap_or("");
                    cluster.store.delete(resource, Some("istio-system"), name);
                }
            }
            Reply::out("✔ Uninstall complete\n")
        }
        "analyze" => Reply::out("✔ No validation issues found when analyzing all namespaces.\n"),
        "x" => Reply::out(
            "✔ No issues found when checking the cluster. Istio is safe to install or upgrade!\n  To get started, check out https://istio.io/latest/docs/setup/getting-started/\n",
        ),
        _ => Reply::out(
            "NAME     CLUSTER     CDS     LDS     EDS     RDS     ECDS     ISTIOD     VERSION\n",
        ),
    }
}

fn install(cluster: &Cluster, overlay: Option<&str>) -> Reply {
    let Some(file) = overlay else {
        return Reply::fail(
            1,
            "Error: this fake installs from an overlay file (-f) only\n",
        );
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            return Reply::fail(1, format!("Error: open {file}: {error}\n"));
        }
    };
    let overlay: Value = match serde_yaml_ng::from_str(&text) {
        Ok(overlay) => overlay,
        Err(error) => {
            return Reply::fail(1, format!("Error: could not unmarshal {file}: {error}\n"));
        }
    };
    let service = &overlay["spec"]["components"]["ingressGateways"][0]["k8s"]["service"];
    let mut env: Vec<Value> = (overlay["spec"]["values"]["pilot"]["env"].as_object())
        .map(|env| {
            env.iter()
                .map(|(name, value)| {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    json!({ "name": name, "value": value })
                })
                .collect()
        })
        .unwrap_or_default();
    env.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let istiod = json!({ "kind": "Deployment", "metadata": { "name": "istiod", "namespace": "istio-system" },
        "spec": { "template": { "spec": { "containers": [{ "name": "discovery", "env": env }] } } },
        "status": { "replicas": 1, "readyReplicas": 1, "availableReplicas": 1 } });
    let gateway = json!({ "kind": "Deployment", "metadata": { "name": "istio-ingressgateway", "namespace": "istio-system" },
        "spec": { "template": { "spec": { "containers": [{ "name": "istio-proxy" }] } } },
        "status": { "replicas": 1, "readyReplicas": 1, "availableReplicas": 1 } });
    let service = json!({ "kind": "Service", "metadata": { "name": "istio-ingressgateway", "namespace": "istio-system" },
        "spec": { "type": service["type"], "ports": service["ports"] } });
    for object in [istiod, gateway, service] {
        if let Err(error) = cluster.store.put(&object) {
            return Reply::fail(1, format!("Error: {error}\n"));
        }
    }
    Reply::out(
        "✔ Istio core installed\n✔ Istiod installed\n✔ Ingress gateways installed\n✔ Installation complete\n",
    )
}
