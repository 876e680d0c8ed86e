//! TLS: the certificate and key as a `kubernetes.io/tls` Secret (named by
//! the profile's `istio.tls_secret`) in `istio-system`, where the ingress
//! gateway resolves `credentialName`, and in the application's namespace.
//! The manifest goes to `kubectl apply --server-side` on stdin as a secret:
//! the key is never in argv, a plan or a log, and server-side apply keeps no
//! `last-applied-configuration` copy of it. Each Secret carries the SHA-256
//! of the pair as an annotation; done when both carry the current one (so a
//! new certificate is applied again, the same one is left alone), read back
//! with a jsonpath that never returns the Secret's data. Uninstall deletes
//! both Secrets.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Action, ActionKind, Step, StepError};
use crate::context::Context;
use crate::host::{self, kube};
use crate::secret::Secret;
use crate::state::{Fingerprint, sha256_hex};

/// The TLS step.
pub struct Tls;

/// The annotation holding the SHA-256 of the certificate and key.
const ANNOTATION: &str = "stackinstall.io/tls-sha256";

impl Step for Tls {
    fn id(&self) -> &'static str {
        "tls"
    }

    fn title(&self) -> &'static str {
        "Store the TLS certificate as Secrets"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["istio", "namespace"]
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["namespace", "istio"]
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        // The self-signed pair may not exist before preflight makes it.
        let pair = read_pair(context).ok();
        fingerprint.add(
            "pair",
            pair.map_or_else(String::new, |(certificate, key)| {
                pair_hash(&certificate, &key)
            }),
        );
        fingerprint.add("secret", &context.config.istio.tls_secret);
        fingerprint.add("namespace", &context.config.cluster.namespace);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let (certificate, key) = read_pair(context)?;
        let hash = pair_hash(&certificate, &key);
        let name = &context.config.istio.tls_secret;
        let mut actions = Vec::new();
        for namespace in namespaces(context) {
            if live_hash(name, &namespace)?.as_deref() == Some(hash.as_str()) {
                actions.push(Action::check(format!(
                    "Secret {name} in {namespace} holds the current certificate"
                )));
            } else {
                let detail = format!(
                    "{} (kubernetes.io/tls Secret {name} in {namespace}, certificate sha256 {})",
                    apply_shown(),
                    &hash[..16]
                );
                actions.push(Action::call(
                    ActionKind::Kubernetes,
                    detail,
                    move |context| apply_secret(context, &namespace),
                ));
            }
        }
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let (certificate, key) = read_pair(context)?;
        let hash = pair_hash(&certificate, &key);
        let name = &context.config.istio.tls_secret;
        for namespace in namespaces(context) {
            if live_hash(name, &namespace)?.as_deref() != Some(hash.as_str()) {
                return Err(StepError::failed(
                    format!(
                        "the Secret `{name}` in `{namespace}` does not hold the current certificate"
                    ),
                    "run `stackinstall install --redo tls`",
                ));
            }
        }
        Ok(())
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let name = &context.config.istio.tls_secret;
        Ok(namespaces(context)
            .iter()
            .map(|namespace| Action::run(kube::delete("secret", name, Some(namespace))))
            .collect())
    }
}

/// `istio-system` (where `credentialName` is resolved) and the app's namespace.
fn namespaces(context: &Context) -> Vec<String> {
    vec![
        "istio-system".to_string(),
        context.config.cluster.namespace.clone(),
    ]
}

/// The certificate (public) and the key (a secret) the install uses.
fn read_pair(context: &Context) -> Result<(String, Secret), StepError> {
    let Some((certificate_path, key_path)) = context.tls_paths() else {
        return Err(StepError::input(
            "no certificate given",
            "pass --ssl-cert FILE and --ssl-key FILE, or --self-signed for a test install",
        ));
    };
    let read = |path: &std::path::Path| -> Result<String, StepError> {
        host::fs::read_optional(path)?.ok_or_else(|| {
            StepError::failed(
                format!("`{}` does not exist", context.shown(path).display()),
                "run the `preflight` step first, or check --ssl-cert and --ssl-key",
            )
        })
    };
    let certificate = read(&certificate_path)?;
    let key = Secret::new(read(&key_path)?);
    Ok((certificate, key))
}

/// The SHA-256 of the certificate and key together (no secret: a hash).
pub fn pair_hash(certificate: &str, key: &Secret) -> String {
    let halves = format!(
        "{}{}",
        sha256_hex(certificate.as_bytes()),
        sha256_hex(key.expose().as_bytes())
    );
    sha256_hex(halves.as_bytes())
}

/// The pair hash the live Secret carries; `None` when it has none.
fn live_hash(name: &str, namespace: &str) -> Result<Option<String>, StepError> {
    let path = format!(
        "{{.metadata.annotations.{}}}",
        ANNOTATION.replace('.', "\\.")
    );
    Ok(kube::get_field("secret", name, namespace, &path)?)
}

/// Applies the TLS Secret with the current pair in `namespace`, the key on
/// kubectl's stdin.
fn apply_secret(context: &mut Context, namespace: &str) -> Result<bool, StepError> {
    let (certificate, key) = read_pair(context)?;
    let hash = pair_hash(&certificate, &key);
    let name = &context.config.istio.tls_secret;
    let manifest = secret_manifest(name, namespace, &hash, &certificate, key.expose());
    kube::apply_secret(manifest).run()?;
    Ok(true)
}

fn apply_shown() -> String {
    kube::apply_secret(Secret::new(String::new())).to_string()
}

/// The Secret's manifest (JSON); it holds the key, so it is a secret itself.
fn secret_manifest(
    name: &str,
    namespace: &str,
    hash: &str,
    certificate: &str,
    key: &str,
) -> Secret {
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/managed-by": "stackinstall" },
            "annotations": { ANNOTATION: hash },
        },
        "data": {
            "tls.crt": STANDARD.encode(certificate),
            "tls.key": STANDARD.encode(key),
        },
    });
    Secret::new(manifest.to_string())
}
