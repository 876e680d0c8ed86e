//! The files a run writes or applies, rendered from `templates/` (embedded
//! in the binary) with minijinja.

use include_dir::{Dir, include_dir};
use minijinja::Environment;

use crate::config::Config;

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// A template that failed to render.
#[derive(Debug, thiserror::Error)]
#[error("cannot render template `{name}`: {source}")]
pub struct RenderError {
    pub name: String,
    #[source]
    pub source: minijinja::Error,
}

/// Renders `templates/<name>` with `values`.
pub fn template(name: &str, values: impl serde::Serialize) -> Result<String, RenderError> {
    let error = |source| RenderError {
        name: name.into(),
        source,
    };
    let mut environment = Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    environment.set_keep_trailing_newline(true);
    // `{{ value | quoted }}`: a YAML double-quoted scalar (JSON's string
    // syntax is YAML's), so no value can end its line or start another key.
    environment.add_filter("quoted", |value: String| {
        serde_json::to_string(&value).expect("strings serialize")
    });
    let text = TEMPLATES
        .get_file(name)
        .and_then(|file| file.contents_utf8())
        .ok_or_else(|| {
            error(minijinja::Error::new(
                minijinja::ErrorKind::TemplateNotFound,
                "not embedded",
            ))
        })?;
    environment.add_template(name, text).map_err(error)?;
    environment
        .get_template(name)
        .and_then(|t| t.render(values))
        .map_err(error)
}

/// The IstioOperator overlay `istioctl install -f` takes: the profile and
/// the ingress gateway's NodePorts.
pub fn istio_operator(config: &Config) -> Result<String, RenderError> {
    let istio = &config.istio;
    template(
        "istio-operator.yaml",
        minijinja::context! {
            version => config.versions.istio,
            profile => istio.profile,
            http_node_port => istio.http_node_port,
            https_node_port => istio.https_node_port,
        },
    )
}

/// The application's namespace with sidecar injection and Helm ownership.
pub fn namespace(config: &Config) -> Result<String, RenderError> {
    template(
        "namespace.yaml",
        minijinja::context! { namespace => config.cluster.namespace, release => config.chart.release },
    )
}

/// The Gateway; `certificate_sha256` (of the certificate it serves, when
/// known) is recorded as an annotation.
pub fn gateway(config: &Config, certificate_sha256: Option<&str>) -> Result<String, RenderError> {
    template(
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
/// reach it at, then the profile's prefixes routed to the Services' ports.
pub fn virtual_service(config: &Config) -> Result<String, RenderError> {
    template(
        "virtual-service.yaml",
        minijinja::context! {
            name => config.istio.virtual_service,
            namespace => config.cluster.namespace,
            gateway => config.istio.gateway,
            domain => config.install.domain,
            routes => config.routes,
            https_port => config.istio.https_port_for_clients(),
        },
    )
}
