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
//!
//! With `--self-signed` it first makes the pair under
//! `/etc/stackinstall/tls/` (a year's certificate for the domain), kept and
//! reused while it is valid for more than 30 days; uninstall leaves it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use std::path::PathBuf;

use time::OffsetDateTime;

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::certificate::{self, EXPIRY_WARNING_DAYS};
use crate::context::Context;
use crate::host::{self, cluster, kube};
use crate::secret::Secret;
use crate::state::{Fingerprint, sha256_hex};

/// The TLS step.
pub struct Tls;

/// The annotation holding the SHA-256 of the certificate and key.
const ANNOTATION: &str = cluster::TLS_SHA256;

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    needs: &[StepId::Istio, StepId::Namespace],
    inputs_from: &[StepId::Namespace, StepId::Istio],
    ..StepInfo::new(StepId::Tls, "Store the TLS certificate as Secrets")
};

impl Step for Tls {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        // A self-signed pair is this step's own work (it is made again
        // when it nears its end): the domain is the input, not the pair.
        match context.config.install.self_signed {
            true => fingerprint.add(
                "self-signed",
                context.config.install.domain.as_deref().unwrap_or_default(),
            ),
            // Preflight names a pair that cannot be read.
            false => fingerprint.add(
                "pair",
                read_pair(context).map_or_else(
                    |_| String::new(),
                    |(certificate, key)| pair_hash(&certificate, &key),
                ),
            ),
        };
        fingerprint.add("secret", &context.config.istio.tls_secret);
        fingerprint.add("namespace", &context.config.cluster.namespace);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = Vec::new();
        let hash = match self_signed_to_make(context) {
            Some(make) => {
                actions.extend(Action::change(make));
                None
            }
            None => {
                let (certificate, key) = read_pair(context)?;
                Some(pair_hash(&certificate, &key))
            }
        };
        let name = &context.config.istio.tls_secret;
        for namespace in namespaces(context) {
            let live = live_hash(name, &namespace)?;
            if live.is_some() && live == hash {
                actions.push(Action::check(format!(
                    "Secret {name} in {namespace} holds the current certificate"
                )));
                continue;
            }
            actions.extend(Action::change(ApplySecret {
                name: name.clone(),
                namespace,
                hash: hash.clone(),
            }));
        }
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        if self_signed_to_make(context).is_some() {
            return Err(StepError::failed(
                "the self-signed certificate is missing, not for the domain, or near its end",
                "run `stackinstall install --redo tls` to make a new one",
            ));
        }
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
                "check --ssl-cert and --ssl-key (a self-signed pair is made by the `tls` step)",
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
    let snapshot = cluster::snapshot()?;
    Ok((snapshot.secret_annotation(namespace, name, ANNOTATION)).map(str::to_string))
}

/// With `--self-signed`, the pair to make when the one kept is missing,
/// not for the domain, or within 30 days of its end; `None` when there is
/// nothing to make.
fn self_signed_to_make(context: &Context) -> Option<MakeSelfSigned> {
    let install = &context.config.install;
    if !install.self_signed {
        return None;
    }
    let domain = install.domain.clone()?;
    let (certificate, key) = context.tls_paths()?;
    let current = (
        host::fs::read_bytes(&certificate),
        host::fs::read_bytes(&key),
    );
    if let (Ok(certificate), Ok(key)) = current {
        let now = OffsetDateTime::now_utc();
        let valid = certificate::check_pair(&certificate, &key, &domain, now);
        if valid.is_ok_and(|info| info.days_left >= EXPIRY_WARNING_DAYS) {
            return None;
        }
    }
    Some(MakeSelfSigned {
        domain,
        shown: (context.shown(&certificate), context.shown(&key)),
        paths: (certificate, key),
    })
}

/// Makes a self-signed certificate for the domain, valid for a year, and
/// its key, and keeps them (the key 0600) for this and later installs.
struct MakeSelfSigned {
    domain: crate::config::Domain,
    /// The certificate's and the key's paths.
    paths: (PathBuf, PathBuf),
    shown: (PathBuf, PathBuf),
}

impl Change for MakeSelfSigned {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        let (certificate, key) = &self.shown;
        vec![format!(
            "write {} (mode 0600) and {} (mode 0644): a new self-signed certificate for {}, valid for a year",
            key.display(),
            certificate.display(),
            self.domain
        )]
    }

    fn apply(self: Box<Self>, _context: &mut Context) -> Result<bool, StepError> {
        let (certificate, key) = certificate::self_signed_for_a_year(&self.domain);
        let (certificate_path, key_path) = &self.paths;
        if let Some(parent) = key_path.parent().filter(|parent| !parent.exists()) {
            host::fs::ensure_dir(parent, 0o700)?;
        }
        host::fs::ensure_file(key_path, key.as_bytes(), 0o600)?;
        host::fs::ensure_file(certificate_path, certificate.as_bytes(), 0o644)?;
        Ok(true)
    }
}

/// Applies the TLS Secret with the pair in `namespace`, the key on
/// kubectl's stdin.
struct ApplySecret {
    name: String,
    namespace: String,
    /// The pair's hash, as the look read it; `None` for a pair this step
    /// makes before.
    hash: Option<String>,
}

impl Change for ApplySecret {
    fn kind(&self) -> ActionKind {
        ActionKind::Kubernetes
    }

    fn lines(&self) -> Vec<String> {
        let certificate = match &self.hash {
            Some(hash) => format!("certificate sha256 {}", &hash[..16]),
            None => "the new self-signed certificate".into(),
        };
        vec![format!(
            "{} (kubernetes.io/tls Secret {} in {}, {certificate})",
            kube::apply_secret(Secret::new(String::new())),
            self.name,
            self.namespace,
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let (certificate, key) = read_pair(context)?;
        let hash = pair_hash(&certificate, &key);
        let manifest = secret_manifest(
            &self.name,
            &self.namespace,
            &hash,
            &certificate,
            key.expose(),
        );
        kube::apply_secret(manifest).run()?;
        Ok(true)
    }
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
