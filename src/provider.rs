//! The kubelet's image credential provider: `stackinstall
//! ecr-credential-provider` answers the kubelet's `CredentialProviderRequest`
//! (`credentialprovider.kubelet.k8s.io/v1`, on stdin) with a
//! `CredentialProviderResponse` holding a fresh ECR token for the profile's
//! registry, so pulls never depend on a Secret that a timer must renew.
//!
//! K3s enables the provider when it starts and finds both its config file
//! and its plugin directory (its defaults, below); the `k3s` step puts them
//! there before K3s starts. The plugin in that directory is a link to the
//! installed binary, `/usr/local/bin/stackinstall`. Nothing here touches the
//! host: the parsing, the answer and the rendered config are pure, and the
//! time is passed in.

use std::collections::BTreeMap;
use std::path::Path;

use time::{Duration, OffsetDateTime};

use crate::config::Config;
use crate::ecr::{TOKEN_VALIDITY, Token};
use crate::render::{self, RenderError};
use crate::secret::Secret;

/// The effective configuration `ecr-refresh` and the kubelet's provider
/// run with (written by the `registry` step).
pub const REFRESH_CONFIG: &str = "/etc/stackinstall/ecr-refresh.toml";

/// K3s's default `--image-credential-provider-bin-dir`.
pub const BIN_DIR: &str = "/var/lib/rancher/credentialprovider/bin";
/// K3s's default `--image-credential-provider-config`.
pub const KUBELET_CONFIG: &str = "/var/lib/rancher/credentialprovider/config.yaml";
/// The plugin's name: the file in `BIN_DIR` the kubelet runs.
pub const PLUGIN: &str = "stackinstall";
/// The subcommand the kubelet runs.
pub const SUBCOMMAND: &str = "ecr-credential-provider";
/// The version of the exec plugin API spoken both ways.
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// How long before the token expires the kubelet must stop using it.
pub const CACHE_MARGIN: Duration = Duration::minutes(30);
/// The home whose `.aws/` the plugin reads (the kubelet runs with none).
pub const PLUGIN_HOME: &str = "/root";
/// The most of stdin the plugin reads: a request is a few hundred bytes.
pub const MAX_REQUEST: u64 = 1024 * 1024;

/// A request that is not a `CredentialProviderRequest` the plugin understands.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the request on stdin is not JSON: {0}")]
    NotJson(String),
    #[error(
        "the request on stdin is a `{kind}` of `{api_version}`, not a `CredentialProviderRequest` of `{API_VERSION}`"
    )]
    WrongKind { kind: String, api_version: String },
    #[error("the request on stdin names no image")]
    NoImage,
}

/// What the kubelet asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The image being pulled, e.g. `123.dkr.ecr.ap-south-1.amazonaws.com/app:1.0`.
    pub image: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestDocument {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    image: String,
}

/// Parses the kubelet's request.
pub fn parse_request(text: &[u8]) -> Result<Request, RequestError> {
    let document: RequestDocument =
        serde_json::from_slice(text).map_err(|error| RequestError::NotJson(error.to_string()))?;
    if document.kind != "CredentialProviderRequest" || document.api_version != API_VERSION {
        return Err(RequestError::WrongKind {
            kind: document.kind,
            api_version: document.api_version,
        });
    }
    if document.image.trim().is_empty() {
        return Err(RequestError::NoImage);
    }
    Ok(Request {
        image: document.image,
    })
}

/// Whether `image` is pulled from `server` (the registry host, with its
/// port when it has one; compared without case, as DNS names are).
pub fn serves(server: &str, image: &str) -> bool {
    let host = image.split('/').next().unwrap_or_default();
    image.contains('/') && host.eq_ignore_ascii_case(server.trim_end_matches('/'))
}

/// How long the kubelet may keep a token that expires at `expires_at`, at
/// `now`: until `CACHE_MARGIN` before it expires; zero (not cached, the
/// kubelet asks again at its next pull) when that is past, as when the
/// clock is wrong.
pub fn cache_duration(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> Duration {
    match expires_at {
        Some(expiry) => (expiry - now - CACHE_MARGIN).max(Duration::ZERO),
        None => Duration::ZERO,
    }
}

/// A duration as the kubelet reads it (Go's `time.ParseDuration`).
pub fn go_duration(duration: Duration) -> String {
    format!("{}s", duration.whole_seconds().max(0))
}

/// The response with `token` for `server`, cached for `cache`; the whole
/// JSON is a secret (it holds the password).
pub fn response(server: &str, token: &Token, cache: Duration) -> Secret {
    let document = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": go_duration(cache),
        "auth": { server: { "username": "AWS", "password": token.password.expose() } },
    });
    Secret::new(document.to_string())
}

/// The response for an image of another registry: no credentials (the API
/// says a plugin that has none for the image returns an empty `auth`), not
/// cached.
pub fn empty_response() -> String {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": go_duration(Duration::ZERO),
        "auth": {},
    })
    .to_string()
}

/// How the kubelet runs the plugin: its arguments and environment, with
/// the paths they have on the host (never a `--root`: the file is read by
/// the host's kubelet).
pub struct Invocation {
    pub args: Vec<String>,
    pub env: BTreeMap<&'static str, String>,
}

/// The plugin's invocation: the subcommand with the configuration
/// `ecr-refresh` reads, and the home whose `.aws/` holds a profile.
pub fn invocation(refresh_config: &str) -> Invocation {
    let aws = Path::new(PLUGIN_HOME).join(".aws");
    Invocation {
        args: vec![
            SUBCOMMAND.to_string(),
            "--config".to_string(),
            refresh_config.to_string(),
        ],
        env: BTreeMap::from([
            ("HOME", PLUGIN_HOME.to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                aws.join("credentials").display().to_string(),
            ),
            ("AWS_CONFIG_FILE", aws.join("config").display().to_string()),
        ]),
    }
}

/// The kubelet's `CredentialProviderConfig` for the profile's registry.
pub fn kubelet_config(config: &Config, refresh_config: &str) -> Result<String, RenderError> {
    let invocation = invocation(refresh_config);
    render::template(
        "credential-provider.yaml",
        minijinja::context! {
            plugin => PLUGIN,
            server => config.registry.server,
            default_cache => go_duration(TOKEN_VALIDITY - CACHE_MARGIN),
            api_version => API_VERSION,
            args => invocation.args,
            env => invocation.env,
        },
    )
}

/// The link target of the plugin: the installed binary, relative to
/// `BIN_DIR`, so that the link resolves under any `--root`.
pub fn link_target(installed_binary: &str) -> std::path::PathBuf {
    let depth = Path::new(BIN_DIR).components().count() - 1;
    let mut target = std::path::PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.join(installed_binary.trim_start_matches('/'))
}

/// A request as the kubelet sends it, for an image of `server`.
pub fn request_for(image: &str) -> String {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": image,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SERVER: &str = "730335576030.dkr.ecr.ap-south-1.amazonaws.com";

    #[test]
    fn a_request_is_parsed_and_checked() {
        let request = parse_request(request_for(&format!("{SERVER}/app:1")).as_bytes()).unwrap();
        assert_eq!(request.image, format!("{SERVER}/app:1"));
        let old = r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","kind":"CredentialProviderRequest","image":"x/y"}"#;
        assert!(matches!(
            parse_request(old.as_bytes()),
            Err(RequestError::WrongKind { .. })
        ));
        assert!(matches!(
            parse_request(b"{nope"),
            Err(RequestError::NotJson(_))
        ));
        let empty = request_for("");
        assert!(matches!(
            parse_request(empty.as_bytes()),
            Err(RequestError::NoImage)
        ));
    }

    #[test]
    fn only_images_of_the_registry_are_served() {
        assert!(serves(SERVER, &format!("{SERVER}/app:1")));
        assert!(serves(
            SERVER,
            &format!("{}/a/b@sha256:00", SERVER.to_uppercase())
        ));
        assert!(!serves(SERVER, "docker.io/library/nginx:1"));
        assert!(!serves(SERVER, "nginx"));
        assert!(!serves(SERVER, &format!("{SERVER}.evil.example/app")));
    }

    #[test]
    fn the_cache_ends_before_the_token_does() {
        let now = datetime!(2024-05-01 00:00 UTC);
        let expiry = now + Duration::hours(12);
        assert_eq!(
            cache_duration(Some(expiry), now),
            Duration::minutes(11 * 60 + 30)
        );
        assert_eq!(cache_duration(Some(expiry), expiry), Duration::ZERO);
        assert_eq!(cache_duration(None, now), Duration::ZERO);
        assert_eq!(go_duration(Duration::minutes(90)), "5400s");
    }

    #[test]
    fn the_link_resolves_to_the_installed_binary_from_the_bin_dir() {
        let target = link_target("/usr/local/bin/stackinstall");
        assert_eq!(
            target,
            Path::new("../../../../../usr/local/bin/stackinstall")
        );
        let resolved = Path::new(BIN_DIR).join(&target);
        let normal: std::path::PathBuf =
            resolved
                .components()
                .fold(std::path::PathBuf::new(), |mut path, part| {
                    match part {
                        std::path::Component::ParentDir => {
                            path.pop();
                        }
                        other => path.push(other),
                    }
                    path
                });
        assert_eq!(normal, Path::new("/usr/local/bin/stackinstall"));
    }
}
