//! Sidecars and mutual TLS as the runbooks found them broken: a namespace
//! without the injection label and pods running `1/1` without their sidecar
//! (seed 004), clients without a sidecar under a STRICT PeerAuthentication,
//! DestinationRules whose TLS mode is not `ISTIO_MUTUAL` under STRICT, and
//! subsets whose labels select no pod (seed 000).

use serde_json::Value;

use super::pods::{has_ended, has_sidecar, ready_count, workload};
use super::snapshot::{Scoped, name};
use super::{Checked, Finding};

const PEER_AUTHENTICATIONS: &str = "peerauthentications.security.istio.io";
const DESTINATION_RULES: &str = "destinationrules.networking.istio.io";

/// Whether the pod (or its template) asked for no sidecar.
fn opted_out(pod: &Value) -> bool {
    let metadata = &pod["metadata"];
    metadata["annotations"]["sidecar.istio.io/inject"] == "false"
        || metadata["labels"]["sidecar.istio.io/inject"] == "false"
}

/// The application's pods that run (or wait to) without a sidecar.
fn without_sidecar(scoped: &Scoped) -> Vec<&Value> {
    scoped
        .snapshot
        .in_namespace("pods", scoped.namespace())
        .filter(|pod| !has_ended(pod) && !has_sidecar(pod))
        .collect()
}

fn pod_line(scoped: &Scoped, pod: &Value) -> String {
    format!(
        "pod {}/{} ({}) READY {}, containers: {}",
        scoped.namespace(),
        name(pod),
        workload(pod),
        ready_count(pod),
        pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The injection label, and pods without a sidecar in a labelled namespace.
pub fn sidecars(scoped: &Scoped) -> Checked {
    let namespace = scoped.namespace();
    let Some(object) = scoped
        .snapshot
        .items("namespaces")
        .iter()
        .find(|n| name(n) == namespace)
    else {
        return Err(format!("the namespace `{namespace}` does not exist yet"));
    };
    let labels = &object["metadata"]["labels"];
    let enabled = labels["istio-injection"] == "enabled" || labels["istio.io/rev"].is_string();
    let bare = without_sidecar(scoped);
    if !enabled {
        let mut finding = Finding::error(
            "injection-label",
            format!("namespace `{namespace}` lacks the `istio-injection=enabled` label: its pods start without a sidecar, outside the mesh"),
            format!("`kubectl label namespace {namespace} istio-injection=enabled`, then `kubectl rollout restart deployment -n {namespace}` (pods get their sidecar when they start)"),
        )
        .with(format!("namespace {namespace} labels: {labels}"));
        finding
            .evidence
            .extend(bare.iter().map(|pod| pod_line(scoped, pod)));
        return Ok(vec![finding].into());
    }
    let findings = bare
        .into_iter()
        .filter(|pod| !opted_out(pod))
        .map(|pod| {
            Finding::error(
                "pod-without-sidecar",
                format!("pod `{}` runs without the istio-proxy sidecar ({} instead of one more container): it started before injection was on", name(pod), ready_count(pod)),
                format!("restart it so it gets its sidecar: `kubectl rollout restart {} -n {namespace}` (then `kubectl get pods -n {namespace}` shows 2/2)", workload(pod)),
            )
            .with(pod_line(scoped, pod))
        })
        .collect::<Vec<_>>();
    Ok(findings.into())
}

/// The PeerAuthentication that makes the namespace STRICT, if one does.
fn strict_policy(scoped: &Scoped) -> Option<String> {
    let wide = |namespace: &str| {
        scoped
            .snapshot
            .in_namespace(PEER_AUTHENTICATIONS, namespace)
            .find(|policy| policy["spec"]["selector"].is_null())
            .map(|policy| {
                (
                    format!("{namespace}/{}", name(policy)),
                    policy["spec"]["mtls"]["mode"]
                        .as_str()
                        .unwrap_or("UNSET")
                        .to_string(),
                )
            })
    };
    let (policy, mode) = wide(scoped.namespace()).or_else(|| wide("istio-system"))?;
    (mode == "STRICT").then_some(policy)
}

/// Clients without a sidecar and non-mutual DestinationRules under STRICT.
pub fn mtls(scoped: &Scoped) -> Checked {
    if !scoped.snapshot.listed(PEER_AUTHENTICATIONS) {
        return Err(
            "Istio's PeerAuthentication resource cannot be listed (is Istio installed?)".into(),
        );
    }
    let Some(policy) = strict_policy(scoped) else {
        return Ok(Vec::new().into());
    };
    let namespace = scoped.namespace();
    let mut findings: Vec<Finding> = without_sidecar(scoped)
        .into_iter()
        .map(|pod| {
            Finding::error(
                "strict-client-without-sidecar",
                format!("pod `{}` has no sidecar but PeerAuthentication `{policy}` is STRICT: its plain-text calls to meshed Services are reset (`connection reset by peer`, `filter_chain_not_found`)", name(pod)),
                format!("give it a sidecar: drop `sidecar.istio.io/inject: \"false\"` from {} and `kubectl rollout restart {} -n {namespace}`; if it must stay outside the mesh, let the Services it calls accept plain text with a PeerAuthentication of `mtls.mode: PERMISSIVE` selecting them", workload(pod), workload(pod)),
            )
            .with(pod_line(scoped, pod))
            .with(format!("PeerAuthentication {policy}: mtls.mode STRICT"))
        })
        .collect();
    for rule in scoped.snapshot.in_namespace(DESTINATION_RULES, namespace) {
        findings.extend(rule_tls(namespace, &policy, rule));
    }
    Ok(findings.into())
}

fn rule_tls(namespace: &str, policy: &str, rule: &Value) -> Option<Finding> {
    let policy_of_rule = &rule["spec"]["trafficPolicy"];
    let fix = format!(
        "`kubectl patch destinationrule {} -n {namespace} --type=merge -p '{{\"spec\":{{\"trafficPolicy\":{{\"tls\":{{\"mode\":\"ISTIO_MUTUAL\"}}}}}}}}'`",
        name(rule)
    );
    let evidence = format!(
        "DestinationRule {namespace}/{} host {}: trafficPolicy.tls {}",
        name(rule),
        rule["spec"]["host"],
        policy_of_rule["tls"]
    );
    let under = format!("PeerAuthentication {policy}: mtls.mode STRICT");
    match policy_of_rule["tls"]["mode"].as_str() {
        Some("ISTIO_MUTUAL") => None,
        Some(mode) => Some(
            Finding::error("destination-rule-tls", format!("DestinationRule `{}` sends with TLS mode {mode}, but its Service is STRICT: the sidecar rejects the calls (503)", name(rule)), fix)
                .with(evidence)
                .with(under),
        ),
        None if policy_of_rule.is_object() => Some(
            Finding::warning("destination-rule-tls", format!("DestinationRule `{}` sets a traffic policy without `tls.mode: ISTIO_MUTUAL` under STRICT mTLS: its clients may call in plain text (503)", name(rule)), fix)
                .with(evidence)
                .with(under),
        ),
        None => None,
    }
}

/// A route's subset: defined by a DestinationRule of the Service, and its
/// labels (with the Service's selector) select at least one pod.
pub fn subset_finding(
    scoped: &Scoped,
    route: &str,
    namespace: &str,
    service: &Value,
    subset: &str,
    remove_fix: String,
) -> Option<Finding> {
    let service_name = name(service);
    let rules: Vec<&Value> = scoped
        .snapshot
        .in_namespace(DESTINATION_RULES, namespace)
        .filter(|rule| {
            rule["spec"]["host"]
                .as_str()
                .and_then(|host| service_of(host, namespace))
                .is_some_and(|(ns, svc)| ns == namespace && svc == service_name)
        })
        .collect();
    let defined = rules.iter().find_map(|rule| {
        rule["spec"]["subsets"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == subset)
            .map(|s| (*rule, s.clone()))
    });
    let Some((rule, definition)) = defined else {
        return Some(
            Finding::error("subset-undefined", format!("{route} routes to subset `{subset}` of `{service_name}`, which no DestinationRule defines: Envoy has no such cluster (503, `cluster_not_found`, flag NC)"), format!("remove the subset from the route: {remove_fix}"))
                .with(format!("{route}: subset {subset}; DestinationRules for {service_name}: {:?}", rules.iter().map(|r| name(r)).collect::<Vec<_>>())),
        );
    };
    let mut wanted = definition["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    wanted.extend(
        service["spec"]["selector"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let selects = |pod: &&Value| {
        wanted
            .iter()
            .all(|(key, value)| pod["metadata"]["labels"][key] == *value)
    };
    let pods: Vec<&Value> = scoped
        .snapshot
        .in_namespace("pods", namespace)
        .filter(|pod| !has_ended(pod))
        .collect();
    if pods.iter().any(selects) {
        return None;
    }
    let selector = service["spec"]["selector"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let sample = pods.iter().find(|pod| {
        selector
            .iter()
            .all(|(k, v)| pod["metadata"]["labels"][k] == *v)
    });
    Some(
        Finding::error("subset-no-pods", format!("subset `{subset}` of DestinationRule `{}` selects no pod of `{service_name}`: its cluster has no endpoints (503, `cluster_not_found` / `no healthy upstream`)", name(rule)), format!("remove the subsets: `kubectl patch destinationrule {} -n {namespace} --type=json -p='[{{\"op\": \"remove\", \"path\": \"/spec/subsets\"}}]'` and the subset from the route: {remove_fix}; or add the labels to the pod template", name(rule)))
            .with(format!("DestinationRule {namespace}/{} subset {subset} labels: {}", name(rule), definition["labels"]))
            .with(match sample {
                Some(pod) => format!("pod {namespace}/{} labels: {}", name(pod), pod["metadata"]["labels"]),
                None => format!("no pod matches Service {service_name}'s selector {}", service["spec"]["selector"]),
            }),
    )
}

/// A route destination's Service: `(namespace, name)` for an in-cluster host.
pub(super) fn service_of(host: &str, namespace: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [service] => Some((namespace.to_string(), (*service).to_string())),
        [service, in_namespace] => Some(((*in_namespace).to_string(), (*service).to_string())),
        [service, in_namespace, "svc", ..] => {
            Some(((*in_namespace).to_string(), (*service).to_string()))
        }
        _ => None,
    }
}
