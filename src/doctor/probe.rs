//! End to end, as a browser would come in: HTTPS to the gateway's NodePort
//! on 127.0.0.1 with the domain as SNI and Host. The certificate served
//! must be the installed one, and each route prefix of the profile must
//! answer with something other than 404 or a gateway error such as 503
//! `no healthy upstream`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client, Response};

use super::{Check, Checked, Finding, Found, Inputs};
use crate::host;

/// The probe check.
pub fn checks(inputs: &Arc<Inputs>) -> Vec<Check> {
    vec![Check::on("probe.https", inputs, https)]
}

fn client(inputs: &Inputs, domain: &str) -> Result<Client, String> {
    let port = inputs.config.istio.https_node_port;
    Client::builder()
        .resolve(domain, SocketAddr::from(([127, 0, 0, 1], port)))
        // The installed certificate may be self-signed: what is served is
        // compared with the file instead of with a trust store.
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(inputs.limit.min(Duration::from_secs(10)))
        .build()
        .map_err(|error| error.to_string())
}

fn get(client: &Client, domain: &str, port: u16, path: &str) -> reqwest::Result<Response> {
    client
        .get(format!("https://{domain}:{port}{path}"))
        .header(reqwest::header::HOST, domain)
        .send()
}

fn https(inputs: &Inputs) -> Checked {
    let domain = inputs.domain.as_deref().ok_or_else(|| {
        "no domain is known (no `--domain`, none in the configuration, no Gateway): pass `--domain NAME`".to_string()
    })?;
    let port = inputs.config.istio.https_node_port;
    let client = client(inputs, domain)?;
    let first = inputs
        .config
        .routes
        .first()
        .map_or("/", |route| route.prefix.as_str());
    let response = match get(&client, domain, port, first) {
        Ok(response) => response,
        Err(error) => {
            let finding = Finding::error(
                "probe-unreachable",
                format!("nothing answers HTTPS for `{domain}` on 127.0.0.1:{port} (the gateway's HTTPS NodePort)"),
                "check the gateway Service's NodePort (`kubectl get svc istio-ingressgateway -n istio-system`) and the Gateway's HTTPS server (`mesh.gateway` above)",
            )
            .with(format!("GET https://{domain}:{port}{first} (SNI and Host {domain}): {}", error_chain(&error)));
            return Ok(vec![finding].into());
        }
    };
    let mut found = Found::default();
    found
        .findings
        .extend(served_certificate(inputs, domain, &response));
    for route in &inputs.config.routes {
        let answer = get(&client, domain, port, &route.prefix);
        found
            .findings
            .extend(route_finding(domain, &route.prefix, &route.service, answer));
    }
    if inputs.certificate.is_none() {
        found
            .notes
            .push("the served certificate was not compared: no certificate file is known".into());
    }
    Ok(found)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn served_certificate(inputs: &Inputs, domain: &str, response: &Response) -> Option<Finding> {
    let path = inputs.certificate.as_ref()?;
    let installed = host::fs::read_bytes(path)
        .ok()
        .and_then(|pem| super::tls::leaf(&pem))?;
    let served = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec));
    if served.as_deref() == Some(installed.as_slice()) {
        return None;
    }
    let served_line = served.as_deref().map_or("none".to_string(), |der| {
        format!(
            "sha256 {}, names {:?}",
            super::tls::fingerprint(der),
            super::tls::dns_names(der)
        )
    });
    Some(
        Finding::error(
            "served-certificate",
            format!("the gateway serves another certificate for `{domain}` than the installed one"),
            "put the installed certificate into the gateway's Secret: `sudo stackinstall install --redo tls` (and check the Gateway's `credentialName`)",
        )
        .with(format!("served: {served_line}"))
        .with(format!("installed `{}`: sha256 {}", path.display(), super::tls::fingerprint(&installed))),
    )
}

fn route_finding(
    domain: &str,
    prefix: &str,
    service: &str,
    answer: reqwest::Result<Response>,
) -> Option<Finding> {
    let request = format!("GET https://{domain}{prefix}");
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            return Some(
                Finding::error("route-unavailable", format!("`{prefix}` gets no answer"), format!("`kubectl logs -n istio-system deploy/istio-ingressgateway --tail 20`; the Service `{service}`'s pods"))
                    .with(format!("{request}: {}", error_chain(&error))),
            );
        }
    };
    let status = response.status().as_u16();
    // Envoy stamps what an upstream answered; its own 404 (no route) has no stamp.
    let from_application = response
        .headers()
        .contains_key("x-envoy-upstream-service-time");
    let body: String = response
        .text()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let evidence = format!("{request}: HTTP {status} {}", body.trim());
    match status {
        404 if from_application => Some(
            Finding::warning("route-not-found", format!("`{prefix}` answers 404 from `{service}` itself: the route works, the application has nothing at the prefix"), "nothing to fix in the mesh when the application serves only deeper paths; otherwise check the application's base path")
                .with(evidence),
        ),
        404 => Some(
            Finding::error("route-not-found", format!("`{prefix}` answers 404: no VirtualService route for it on the domain, or the application does not serve it"), "compare the VirtualService's `match` prefixes and `hosts` with the domain: `kubectl get virtualservice -A -o yaml`; `sudo stackinstall install --redo gateway` restores the install's")
                .with(evidence),
        ),
        502..=504 => Some(
            Finding::error("route-unavailable", format!("`{prefix}` answers {status}: the gateway reaches no ready pod of `{service}`"), format!("see the route's findings above (port, subset, sidecar, mTLS) and the pods: `kubectl get pods,endpoints -A | grep {service}`"))
                .with(evidence),
        ),
        _ => None,
    }
}
