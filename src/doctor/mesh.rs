//! Istio's routing as the runbooks found it broken: Gateway servers on the
//! gateway container's ports 8080/8443 instead of the Service's 80/443
//! (seed 004), a `credentialName` missing from istio-system or not for the
//! domain, VirtualService routes to a Service or port that does not exist,
//! and subsets no DestinationRule defines or whose labels select no pod
//! (seed 000, `cluster_not_found`). Sidecars and mTLS are in [`super::mtls`].

use std::sync::Arc;

use serde_json::Value;

use super::snapshot::{Scoped, Snapshot, name};
use super::{Check, Checked, Finding};
use crate::config::Config;
use crate::host::kube;

/// The gateway container's ports, which a Gateway server must not use.
const CONTAINER_PORTS: [u64; 2] = [8080, 8443];

/// The mesh checks (with those of [`super::mtls`]).
pub fn checks(scoped: &Arc<Scoped>) -> Vec<Check> {
    vec![
        Check::on("mesh.gateway", scoped, gateway),
        Check::on("mesh.routes", scoped, routes),
        Check::on("mesh.sidecars", scoped, super::mtls::sidecars),
        Check::on("mesh.mtls", scoped, super::mtls::mtls),
    ]
}

/// The domain of the live Gateway's HTTPS server (the profile's Gateway first).
pub fn gateway_domain(snapshot: &Snapshot, config: &Config) -> Option<String> {
    let mut gateways: Vec<&Value> = snapshot
        .items("gateways.networking.istio.io")
        .iter()
        .collect();
    gateways.sort_by_key(|gateway| name(gateway) != config.istio.gateway);
    gateways
        .iter()
        .find_map(|gateway| crate::steps::gateway::https_host(gateway))
}

fn gateway(scoped: &Scoped) -> Checked {
    if !scoped.snapshot.listed("gateways.networking.istio.io") {
        return Err("Istio's Gateway resource cannot be listed (is Istio installed?)".into());
    }
    let service_ports: Vec<u64> = scoped
        .snapshot
        .find("services", "istio-system", "istio-ingressgateway")
        .and_then(|service| service["spec"]["ports"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|port| port["port"].as_u64())
        .collect();
    let mut findings = Vec::new();
    for gateway in scoped.snapshot.items("gateways.networking.istio.io") {
        let namespace = gateway["metadata"]["namespace"].as_str().unwrap_or("?");
        let servers = gateway["spec"]["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (index, server) in servers.iter().enumerate() {
            let where_ = format!("Gateway {namespace}/{} server {index}", name(gateway));
            findings.extend(server_port(&where_, server, &service_ports));
            if server["port"]["protocol"] == "HTTPS" {
                findings.extend(credential(scoped, &where_, server));
            }
        }
    }
    Ok(findings.into())
}

fn server_port(where_: &str, server: &Value, service_ports: &[u64]) -> Option<Finding> {
    let number = server["port"]["number"].as_u64()?;
    let wanted = if server["port"]["protocol"] == "HTTPS" {
        443
    } else {
        80
    };
    let fix = format!(
        "set the server's `port.number` to {wanted} (`kubectl edit gateway`, or `sudo stackinstall install --redo gateway` for the install's own)"
    );
    if CONTAINER_PORTS.contains(&number) {
        return Some(
            Finding::error(
                "gateway-container-port",
                format!("{where_} listens on {number}, the gateway container's port: a Gateway names the Service's port ({wanted}), so requests answer 404 or 503"),
                fix,
            )
            .with(format!("{where_}: port.number {number}, protocol {}", server["port"]["protocol"]))
            .with(format!("Service istio-system/istio-ingressgateway ports: {service_ports:?}")),
        );
    }
    (!service_ports.is_empty() && !service_ports.contains(&number)).then(|| {
        Finding::error(
            "gateway-port",
            format!(
                "{where_} listens on {number}, which the ingress gateway Service does not expose"
            ),
            fix,
        )
        .with(format!(
            "Service istio-system/istio-ingressgateway ports: {service_ports:?}"
        ))
    })
}

fn credential(scoped: &Scoped, where_: &str, server: &Value) -> Vec<Finding> {
    let Some(secret) = server["tls"]["credentialName"].as_str() else {
        return Vec::new();
    };
    let tls_secret = &scoped.inputs.config.istio.tls_secret;
    let fix_secret = format!(
        "create it in istio-system (where the gateway looks): `sudo stackinstall install --redo tls`, or `kubectl create secret tls {secret} -n istio-system --cert=CERT --key=KEY`"
    );
    let read = kube::get_field("secret", secret, "istio-system", "{.data.tls\\.crt}");
    let certificate = match read {
        Err(error) => {
            return vec![
                Finding::warning(
                    "credential-missing",
                    format!("the Secret `istio-system/{secret}` could not be read"),
                    fix_secret,
                )
                .with(error.to_string()),
            ];
        }
        Ok(None) => {
            let finding = Finding::error("credential-missing", format!("{where_} uses credentialName `{secret}`, which does not exist in istio-system: HTTPS handshakes fail"), fix_secret)
                .with(format!("kubectl get secret {secret} -n istio-system: not found; the install's TLS Secret is `{tls_secret}`"));
            return vec![finding];
        }
        Ok(Some(data)) => data,
    };
    let Some(domain) = scoped.inputs.domain.as_deref() else {
        return Vec::new();
    };
    let hosts: Vec<&str> = server["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut findings = Vec::new();
    if !hosts
        .iter()
        .any(|host| crate::certificate::covers(host.rsplit('/').next().unwrap_or(host), domain))
    {
        findings.push(
            Finding::error("credential-domain", format!("{where_} serves hosts {hosts:?}, not the domain `{domain}`"), "set the server's `hosts` to the domain: `sudo stackinstall install --redo gateway`")
                .with(format!("{where_}: hosts {hosts:?}")),
        );
    }
    let names = super::tls::certificate_names(&certificate);
    if !names
        .iter()
        .any(|name| crate::certificate::covers(name, domain))
    {
        findings.push(
            Finding::error("credential-domain", format!("the certificate in `istio-system/{secret}` is not for `{domain}`"), format!("install a certificate for `{domain}`: `sudo stackinstall install --domain {domain} --ssl-cert FILE --ssl-key FILE` (or `--self-signed`)"))
                .with(format!("Secret istio-system/{secret} tls.crt names: {names:?}")),
        );
    }
    findings
}

fn routes(scoped: &Scoped) -> Checked {
    if !scoped
        .snapshot
        .listed("virtualservices.networking.istio.io")
    {
        return Err(
            "Istio's VirtualService resource cannot be listed (is Istio installed?)".into(),
        );
    }
    let mut findings = Vec::new();
    for service in scoped
        .snapshot
        .in_namespace("virtualservices.networking.istio.io", scoped.namespace())
    {
        let http = service["spec"]["http"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (route_index, route) in http.iter().enumerate() {
            let destinations = route["route"].as_array().cloned().unwrap_or_default();
            for (index, destination) in destinations.iter().enumerate() {
                let at = format!("/spec/http/{route_index}/route/{index}/destination");
                findings.extend(destination_findings(
                    scoped,
                    service,
                    &at,
                    &destination["destination"],
                ));
            }
        }
    }
    Ok(findings.into())
}

fn destination_findings(
    scoped: &Scoped,
    virtual_service: &Value,
    at: &str,
    destination: &Value,
) -> Vec<Finding> {
    let own_namespace = virtual_service["metadata"]["namespace"]
        .as_str()
        .unwrap_or("?");
    let host = destination["host"].as_str().unwrap_or("");
    let Some((namespace, service_name)) = super::mtls::service_of(host, own_namespace) else {
        return Vec::new();
    };
    let vs = format!("VirtualService {own_namespace}/{}", name(virtual_service));
    let patch = |op: &str| {
        format!(
            "`kubectl patch virtualservice {} -n {own_namespace} --type=json -p='[{op}]'`",
            name(virtual_service)
        )
    };
    let Some(service) = scoped.snapshot.find("services", &namespace, &service_name) else {
        return vec![Finding::error("route-service-missing", format!("{vs} routes to `{host}`, but Service `{namespace}/{service_name}` does not exist: requests answer 503"), format!("point `{at}/host` at an existing Service (`kubectl get svc -n {namespace}`), or deploy `{service_name}`"))
            .with(format!("{vs} {at}: host {host}"))];
    };
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    let mut findings = Vec::new();
    if let Some(port) = destination["port"]["number"]
        .as_u64()
        .filter(|port| !ports.contains(port))
    {
        let value = ports.first().map_or("PORT".to_string(), u64::to_string);
        findings.push(
            Finding::error("route-port", format!("{vs} routes to `{service_name}` port {port}, which the Service does not have: requests answer 503"), patch(&format!("{{\"op\": \"replace\", \"path\": \"{at}/port/number\", \"value\": {value}}}")))
                .with(format!("{vs} {at}: host {host}, port.number {port}"))
                .with(format!("Service {namespace}/{service_name} ports: {ports:?}")),
        );
    }
    if let Some(subset) = destination["subset"].as_str() {
        let remove = patch(&format!(
            "{{\"op\": \"remove\", \"path\": \"{at}/subset\"}}"
        ));
        findings.extend(super::mtls::subset_finding(
            scoped, &vs, &namespace, service, subset, remove,
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::mtls::service_of;

    #[test]
    fn route_hosts_resolve_to_a_service_and_its_namespace() {
        let service = |namespace: &str, name: &str| Some((namespace.to_string(), name.to_string()));
        assert_eq!(
            service_of("sb-core", "sb-apps"),
            service("sb-apps", "sb-core")
        );
        assert_eq!(
            service_of("sb-core.other", "sb-apps"),
            service("other", "sb-core")
        );
        let full = "sb-core.sb-apps.svc.cluster.local";
        assert_eq!(service_of(full, "elsewhere"), service("sb-apps", "sb-core"));
        assert_eq!(service_of("api.example.com", "sb-apps"), None);
    }
}
