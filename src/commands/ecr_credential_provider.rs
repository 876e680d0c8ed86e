//! `stackinstall ecr-credential-provider`: the kubelet's image credential
//! provider. It reads one `CredentialProviderRequest` on stdin, and for an
//! image of the profile's registry writes a `CredentialProviderResponse`
//! with a fresh ECR token on stdout (for any other image, an empty `auth`).
//! The configuration is the one `ecr-refresh` reads (`--config`, the
//! profile, `STACKINSTALL_*`). Errors go to stderr with a non-zero exit, as
//! the kubelet expects; the token is only ever written to stdout.
//!
//! The request is read and parsed before anything else is set up (no
//! runtime, no AWS client), so a bad request fails at once.

use std::io::{Read, Write};

use super::Result;
use anyhow::Context as _;
use time::OffsetDateTime;

use crate::cli::EcrCredentialProviderArgs;
use crate::ecr;
use crate::provider;

/// Runs `ecr-credential-provider`.
pub fn run(args: EcrCredentialProviderArgs) -> Result<()> {
    let mut text = Vec::new();
    std::io::stdin()
        .take(provider::MAX_REQUEST)
        .read_to_end(&mut text)
        .context("cannot read the request on stdin")?;
    let request = provider::parse_request(&text).map_err(anyhow::Error::from)?;
    let flags = super::aws_profile_flags(args.aws_profile.as_ref());
    let config = super::load_config(&args.config, flags)?;
    let server = &config.registry.server;
    let answer = if provider::serves(server, &request.image) {
        let token = ecr::fetch_once(&config)?;
        let now = now();
        let cache = provider::cache_duration(token.expires_at, now);
        if cache.is_zero() {
            crate::errln!(
                "warning: the ECR token for `{server}` is reported to expire at {}, not after now ({now}): the credentials are given but not cached; check the host clock",
                (token.expires_at).map_or("an unknown time".to_string(), |at| at.to_string())
            );
        }
        provider::response(server, &token, cache)
            .expose()
            .to_string()
    } else {
        provider::empty_response()
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{answer}").context("cannot write the response on stdout")?;
    stdout
        .flush()
        .context("cannot write the response on stdout")?;
    Ok(())
}

/// The time the cache duration is counted from. Debug builds only:
/// `STACKINSTALL_TEST_NOW` (RFC 3339) sets it, so tests can give moto's
/// fixed token expiry a clock before or after it. Release builds read no
/// such variable.
fn now() -> OffsetDateTime {
    #[cfg(debug_assertions)]
    if let Some(now) = std::env::var("STACKINSTALL_TEST_NOW")
        .ok()
        .and_then(|text| {
            OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()
        })
    {
        return now;
    }
    OffsetDateTime::now_utc()
}
