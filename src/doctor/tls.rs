//! The installed certificate: its days left, and whether the Secret the
//! gateway serves holds the same certificate as the file (seed 003: a
//! renewed file does nothing until what serves it is renewed too).

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Checked, Finding, Found, Inputs};
use crate::certificate::{self, EXPIRY_WARNING_DAYS};
use crate::host::{self, kube};

/// The first certificate (DER) of a PEM chain.
pub fn leaf(pem: &[u8]) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .map(|der| der.as_ref().to_vec())
}

/// The DNS names of a DER certificate.
pub fn dns_names(der: &[u8]) -> Vec<String> {
    X509Certificate::from_der(der).map_or_else(
        |_| Vec::new(),
        |(_, parsed)| certificate::dns_names(&parsed),
    )
}

/// The DNS names of the first certificate in base64 PEM `data` (a Secret's `tls.crt`).
pub fn certificate_names(data: &str) -> Vec<String> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .unwrap_or_default();
    leaf(&pem).map_or_else(Vec::new, |leaf| dns_names(&leaf))
}

/// When a DER certificate expires.
pub fn not_after(der: &[u8]) -> Option<OffsetDateTime> {
    let (_, parsed) = X509Certificate::from_der(der).ok()?;
    Some(parsed.validity().not_after.to_datetime())
}

/// A short fingerprint for evidence lines.
pub fn fingerprint(der: &[u8]) -> String {
    crate::state::sha256_hex(der)[..16].to_string()
}

/// Days left, and the Secret in istio-system against the file.
pub fn certificate(inputs: &Inputs) -> Checked {
    let path = inputs.certificate.as_ref().ok_or_else(|| {
        "no certificate file is known: pass `--ssl-cert FILE` (a `--self-signed` install's is found by itself)".to_string()
    })?;
    let pem = host::fs::read_bytes(path).map_err(|error| error.to_string())?;
    let der = leaf(&pem).ok_or_else(|| format!("`{}` holds no PEM certificate", path.display()))?;
    let expiry = not_after(&der).ok_or_else(|| format!("`{}` cannot be parsed", path.display()))?;
    let now = OffsetDateTime::now_utc();
    let days_left = (expiry - now).whole_days();
    let mut found = Found::default();
    let verb = if expiry < now { "expired" } else { "expires" };
    let evidence = format!(
        "`{}`: {verb} {}, sha256 {}",
        path.display(),
        crate::ui::moment(expiry, now),
        fingerprint(&der)
    );
    let renew = "install a renewed certificate: `sudo stackinstall install --ssl-cert FILE --ssl-key FILE` (a self-signed one: `sudo stackinstall install --self-signed --redo tls`)";
    if days_left < 0 {
        found.findings.push(
            Finding::error(
                "certificate-expired",
                "the installed certificate has expired: browsers refuse the site",
                renew,
            )
            .with(evidence.clone()),
        );
    } else if days_left < EXPIRY_WARNING_DAYS {
        found.findings.push(
            Finding::warning(
                "certificate-expiring",
                format!("the installed certificate expires in {days_left} days"),
                renew,
            )
            .with(evidence.clone()),
        );
    }
    let secret = &inputs.config.istio.tls_secret;
    match kube::get_field("secret", secret, "istio-system", "{.data.tls\\.crt}") {
        Err(error) => found.notes.push(format!(
            "the Secret `istio-system/{secret}` was not compared: {error}"
        )),
        Ok(None) => found.notes.push(format!(
            "the Secret `istio-system/{secret}` does not exist (see `mesh.gateway`)"
        )),
        Ok(Some(data)) => {
            let served = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .ok()
                .and_then(|pem| leaf(&pem));
            if served.as_deref() != Some(der.as_slice()) {
                let served_line =
                    served
                        .as_deref()
                        .map_or("no readable certificate".to_string(), |s| {
                            format!(
                                "sha256 {}, expires {}",
                                fingerprint(s),
                                not_after(s).map_or("?".into(), |t| crate::ui::moment(t, now))
                            )
                        });
                found.findings.push(
                    Finding::error("certificate-secret-mismatch", format!("the Secret `istio-system/{secret}` holds another certificate than the file: the gateway serves the old one"), "put the file's certificate into the Secret: `sudo stackinstall install --redo tls`")
                        .with(evidence)
                        .with(format!("Secret istio-system/{secret} tls.crt: {served_line}")),
                );
            }
        }
    }
    Ok(found)
}
