//! Gateway: the Istio Gateway (HTTPS on the ingress gateway's Service port
//! 443 with `tls.mode: SIMPLE` and the TLS Secret as `credentialName`, HTTP
//! on port 80, hosts = the domain) and the VirtualService that redirects
//! HTTP to `https://DOMAIN:PORT` (`[istio] public_https_port`, else the
//! HTTPS NodePort) and routes each profile prefix to its Service's own port,
//! both rendered from `templates/` and applied with `kubectl apply` on
//! stdin. The Gateway records the SHA-256 of the certificate it serves, so a
//! new certificate applies it again. Done when both live objects carry every
//! rendered field. Uninstall deletes both.

use serde_json::Value;

use super::{Action, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::Context;
use crate::host::{self, cluster, kube};
use crate::render::{self, RenderError};
use crate::state::{Fingerprint, sha256_hex};

/// The gateway step.
pub struct Gateway;

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    rendered: Some(rendered),
    needs: &[StepId::Release, StepId::Tls],
    inputs_from: &[StepId::Tls],
    ..StepInfo::new(
        StepId::Gateway,
        "Route the domain through the Istio Gateway",
    )
};

impl Step for Gateway {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("gateway", gateway_manifest(&context.config, None)?);
        fingerprint.add(
            "virtual-service",
            virtual_service_manifest(&context.config)?,
        );
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = Vec::new();
        for (manifest, object, live) in with_live(context)? {
            let (kind, name, namespace) = identity(&object);
            if live.is_some_and(|live| kube::has_fields(&live, &object)) {
                actions.push(Action::check(format!(
                    "{kind} {name} in {namespace} is as rendered"
                )));
            } else {
                let note = format!("{kind} {name} in {namespace}");
                actions.push(Action::run_noting(kube::apply(&manifest), &note));
            }
        }
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        for (_, object, live) in with_live(context)? {
            let (kind, name, namespace) = identity(&object);
            if !live.is_some_and(|live| kube::has_fields(&live, &object)) {
                return Err(StepError::failed(
                    format!(
                        "the {kind} `{name}` in `{namespace}` is missing or differs from the rendered one"
                    ),
                    "run `stackinstall install --redo gateway`",
                ));
            }
        }
        Ok(())
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let namespace = &context.config.cluster.namespace;
        Ok(vec![
            Action::run(kube::delete(
                "virtualservice",
                &context.config.istio.virtual_service,
                Some(namespace),
            )),
            Action::run(kube::delete(
                "gateway",
                &context.config.istio.gateway,
                Some(namespace),
            )),
        ])
    }
}

fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    Ok(vec![
        ("gateway.yaml".into(), gateway_manifest(config, None)?),
        (
            "virtual-service.yaml".into(),
            virtual_service_manifest(config)?,
        ),
    ])
}

/// The Gateway and the VirtualService, each manifest with its object and
/// the live one (`None`: not in the cluster), both read with one `kubectl
/// get` in the application's namespace (where both are rendered).
fn with_live(context: &Context) -> Result<Vec<(String, Value, Option<Value>)>, StepError> {
    let manifests = manifests(context)?;
    let identities = manifests.each_ref().map(|(_, object)| identity(object));
    let asked = identities
        .each_ref()
        .map(|(kind, name, _)| (kind.as_str(), name.as_str()));
    let snapshot = cluster::snapshot()?;
    let namespace = &context.config.cluster.namespace;
    let live = asked.map(|(kind, name)| snapshot.object(kind, Some(namespace), name).cloned());
    Ok((manifests.into_iter().zip(live))
        .map(|((manifest, object), live)| (manifest, object, live))
        .collect())
}

/// The Gateway and the VirtualService: each manifest with its parsed object.
fn manifests(context: &Context) -> Result<[(String, Value); 2], StepError> {
    let certificate_hash = match context.tls_paths() {
        Some((certificate, _)) => {
            host::fs::read_optional(&certificate)?.map(|text| sha256_hex(text.as_bytes()))
        }
        None => None,
    };
    let gateway = gateway_manifest(&context.config, certificate_hash.as_deref())?;
    let virtual_service = virtual_service_manifest(&context.config)?;
    Ok([parsed(gateway)?, parsed(virtual_service)?])
}

/// A rendered manifest with its one object.
fn parsed(manifest: String) -> Result<(String, Value), StepError> {
    let object = kube::manifest_objects(&manifest)
        .ok()
        .and_then(|objects| objects.into_iter().next())
        .ok_or_else(|| {
            StepError::failed(
                "a rendered Istio manifest is not one YAML object",
                "check the profile's domain and routes; `stackinstall render` shows the files",
            )
        })?;
    Ok((manifest, object))
}

/// `(kind, name, namespace)` of an object, as kubectl names them.
fn identity(object: &Value) -> (String, String, String) {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    (
        text(&object["kind"]).to_ascii_lowercase(),
        text(&object["metadata"]["name"]),
        text(&object["metadata"]["namespace"]),
    )
}

/// The Gateway; `certificate_sha256` (of the certificate it serves, when
/// known) is recorded as an annotation.
pub fn gateway_manifest(
    config: &Config,
    certificate_sha256: Option<&str>,
) -> Result<String, RenderError> {
    render::template(
        "gateway.yaml",
        minijinja::context! {
            name => config.istio.gateway,
            namespace => config.cluster.namespace,
            tls_secret => config.istio.tls_secret,
            domain => config.install.domain,
            certificate_sha256 => certificate_sha256.unwrap_or_default(),
        },
    )
}

/// The VirtualService: plain HTTP redirected to HTTPS at the port clients
/// reach it at, `/` to the home route, then the profile's prefixes routed
/// to the Services' ports.
pub fn virtual_service_manifest(config: &Config) -> Result<String, RenderError> {
    render::template(
        "virtual-service.yaml",
        minijinja::context! {
            name => config.istio.virtual_service,
            namespace => config.cluster.namespace,
            gateway => config.istio.gateway,
            domain => config.install.domain,
            routes => config.routes,
            home => config.istio.home,
            https_port => config.istio.https_port_for_clients(),
        },
    )
}

/// The domain a Gateway object serves over HTTPS: its first HTTPS
/// server's first host that is not a wildcard, without the
/// `namespace/` prefix Istio allows.
pub fn https_host(gateway: &serde_json::Value) -> Option<String> {
    let servers = gateway["spec"]["servers"].as_array()?;
    (servers.iter())
        .filter(|server| server["port"]["protocol"] == "HTTPS")
        .flat_map(|server| server["hosts"].as_array().into_iter().flatten())
        .filter_map(|host| host.as_str())
        .map(|host| host.rsplit('/').next().unwrap_or(host))
        .find(|host| !host.contains('*'))
        .map(str::to_string)
}
