//! ECR pull credentials: an authorization token fetched with aws-sdk-ecr
//! through the standard AWS credential chain, kept in the cluster as a
//! `kubernetes.io/dockerconfigjson` Secret stamped with when it was fetched
//! and when it expires, and renewed once half of its validity has passed.
//!
//! The token goes to `kubectl` on stdin only; no AWS key or token is ever
//! put in argv, a plan, a log line or an error. The time is always passed in
//! (`now`), so the expiry rules are tested without waiting twelve hours.

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::config::Config;
use crate::context::Context;
use crate::error::StepError;
use crate::host::{CommandError, cluster, kube};
use crate::secret::Secret;

/// How long an ECR token is valid (AWS documents 12 hours).
pub const TOKEN_VALIDITY: Duration = Duration::hours(12);

/// How much before half way through its validity a token is renewed.
pub const RENEWAL_SLACK: Duration = Duration::minutes(30);

/// The Secret annotations that record when its token was fetched and expires.
pub const FETCHED_AT: &str = cluster::ECR_FETCHED_AT;
pub const EXPIRES_AT: &str = cluster::ECR_EXPIRES_AT;

/// The ways to give the host AWS credentials that the kubelet's provider
/// and the renewal timer see too (a key in the shell's environment alone is
/// refused, so no `sudo -E`): every error without credentials says this.
pub const NO_CREDENTIALS_HINT: &str = "give the host an instance role allowed `ecr:GetAuthorizationToken`, or put a key in \
`/root/.aws/credentials` (`sudo aws configure`) and pass `--aws-profile NAME` if it is not the default";

/// Where the AWS SDK looked for credentials, for the error that says so.
pub const CREDENTIAL_SOURCES: &str = "the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), \
the shared files (`~/.aws/credentials`, `~/.aws/config`), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`), \
the ECS container endpoint and the EC2 instance metadata (instance role)";

/// An ECR authorization token.
pub struct Token {
    /// The docker password (the token decoded, without `AWS:`).
    pub password: Secret,
    /// The token as ECR returned it: base64 of `AWS:password`.
    pub authorization: Secret,
    /// The expiry ECR reported.
    pub expires_at: Option<OffsetDateTime>,
}

/// When the token in the Secret was fetched and when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub fetched_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl Stamp {
    /// The stamp of a token fetched at `fetched_at`; an expiry that is not
    /// after the fetch (a test server's, or a skewed clock's) is replaced by
    /// the documented validity.
    pub fn new(fetched_at: OffsetDateTime, reported_expiry: Option<OffsetDateTime>) -> Self {
        let expires_at = reported_expiry
            .filter(|expiry| *expiry > fetched_at)
            .unwrap_or(fetched_at + TOKEN_VALIDITY);
        Self {
            fetched_at,
            expires_at,
        }
    }

    /// When the token is due for renewal: half way through its validity,
    /// less a little slack so that a timer running every half validity
    /// never finds it a minute short of due (and lets it run on to expiry).
    pub fn renewal_due(&self) -> OffsetDateTime {
        self.fetched_at + (self.expires_at - self.fetched_at) / 2 - RENEWAL_SLACK
    }

    /// Whether the token should be renewed at `now` (also when the clock
    /// says it was fetched in the future: the clock was wrong then or now).
    pub fn needs_renewal(&self, now: OffsetDateTime) -> bool {
        now >= self.renewal_due() || now < self.fetched_at - Duration::minutes(5)
    }

    /// Whether the token no longer works at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }

    /// The stamp as the Secret's annotations.
    pub fn annotations(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            (FETCHED_AT, rfc3339(self.fetched_at)),
            (EXPIRES_AT, rfc3339(self.expires_at)),
        ])
    }

    /// Parses the two annotation values; `None` unless both are timestamps.
    pub fn parse(fetched_at: &str, expires_at: &str) -> Option<Self> {
        let parse = |text: &str| OffsetDateTime::parse(text.trim(), &Rfc3339).ok();
        Some(Self {
            fetched_at: parse(fetched_at)?,
            expires_at: parse(expires_at)?,
        })
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339)
        .expect("a UTC time formats as RFC 3339")
}

/// The stamp of the pull Secret: `None` when the Secret is missing or has no
/// (readable) stamp. Reads only the two annotations (from the run's
/// snapshot of the cluster), never the Secret's data.
pub fn read_stamp(config: &Config) -> Result<Option<Stamp>, CommandError> {
    let snapshot = cluster::snapshot()?;
    let annotation =
        |key| snapshot.secret_annotation(&config.cluster.namespace, &config.registry.secret, key);
    Ok(match (annotation(FETCHED_AT), annotation(EXPIRES_AT)) {
        (Some(fetched_at), Some(expires_at)) => Stamp::parse(fetched_at, expires_at),
        _ => None,
    })
}

/// The pull Secret's manifest (JSON), whole, as a secret.
pub fn secret_manifest(config: &Config, token: &Token, stamp: &Stamp) -> Secret {
    let registry = &config.registry;
    let docker_config = serde_json::json!({
        "auths": { &registry.server: {
            "username": "AWS",
            "password": token.password.expose(),
            "auth": token.authorization.expose(),
        }}
    });
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": registry.secret,
            "namespace": config.cluster.namespace,
            "labels": { "app.kubernetes.io/managed-by": "stackinstall" },
            "annotations": stamp.annotations(),
        },
        "data": { ".dockerconfigjson": BASE64.encode(docker_config.to_string()) },
    });
    Secret::new(manifest.to_string())
}

/// The command that creates or replaces the pull Secret: server-side apply,
/// so no copy of the data lands in a `last-applied-configuration` annotation.
pub fn apply_command(manifest: Secret) -> crate::host::Command {
    kube::kubectl([
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=stackinstall",
        "-f",
        "-",
    ])
    .stdin_secret(manifest)
}

/// Fetches a token and creates or replaces the pull Secret; returns its stamp.
pub fn renew(context: &Context, now: OffsetDateTime) -> Result<Stamp, StepError> {
    let token = fetch(context)?;
    let stamp = Stamp::new(now, token.expires_at);
    apply_command(secret_manifest(&context.config, &token, &stamp)).run()?;
    tracing::info!(
        "pull secret `{}` renewed; valid until {}",
        context.config.registry.secret,
        rfc3339(stamp.expires_at)
    );
    Ok(stamp)
}

/// Renews the pull Secret when it is missing or due at `now`; returns the
/// new stamp, or `None` when there was nothing to do.
pub fn renew_if_due(context: &Context, now: OffsetDateTime) -> Result<Option<Stamp>, StepError> {
    match read_stamp(&context.config)? {
        Some(stamp) if !stamp.needs_renewal(now) => Ok(None),
        _ => renew(context, now).map(Some),
    }
}

/// Fetches an ECR authorization token through the AWS credential chain.
pub fn fetch(context: &Context) -> Result<Token, StepError> {
    context.block_on(fetch_async(&context.config))?
}

/// `fetch` without a `Context`: for the credential provider, which needs
/// no state and starts its runtime only once the request is read.
pub fn fetch_once(config: &Config) -> Result<Token, StepError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            StepError::failed(
                format!("cannot start the AWS client: {error}"),
                "run again; the host may be out of memory or file descriptors",
            )
        })?
        .block_on(fetch_async(config))
}

async fn fetch_async(config: &Config) -> Result<Token, StepError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // One HTTPS client for every AWS call (credentials, IMDS, ECR):
        // hyper 1 and rustls on ring, the TLS stack of the rest of the binary.
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .region(Region::new(config.registry.region.clone()));
    if let Some(profile) = &config.install.aws_profile {
        loader = loader.profile_name(profile);
    }
    let sdk_config = loader.load().await;
    let provider = sdk_config
        .credentials_provider()
        .ok_or_else(|| no_credentials("no credential provider is configured", config))?;
    provider
        .provide_credentials()
        .await
        .map_err(|error| match error {
            CredentialsError::CredentialsNotLoaded(_) => no_credentials("", config),
            other => no_credentials(&chain(&other), config),
        })?;
    let mut builder = aws_sdk_ecr::config::Builder::from(&sdk_config);
    if let Some(endpoint) = &config.registry.endpoint_url {
        builder = builder.endpoint_url(endpoint);
    }
    let client = aws_sdk_ecr::Client::from_conf(builder.build());
    let output = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|error| request_failed(error.code(), &chain(&error), config))?;
    let data = output
        .authorization_data()
        .first()
        .ok_or_else(|| empty_answer(config))?;
    let authorization = data
        .authorization_token()
        .ok_or_else(|| empty_answer(config))?;
    let expires_at = data
        .expires_at()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok());
    token(authorization, expires_at).ok_or_else(|| empty_answer(config))
}

/// The token from ECR's `authorizationToken` (base64 of `AWS:password`).
fn token(authorization: &str, expires_at: Option<OffsetDateTime>) -> Option<Token> {
    let authorization = Secret::new(authorization);
    let decoded = BASE64.decode(authorization.expose()).ok()?;
    let decoded = Secret::new(String::from_utf8(decoded).ok()?);
    let password = Secret::new(decoded.expose().split_once(':')?.1);
    Some(Token {
        password,
        authorization,
        expires_at,
    })
}

/// An error and its causes on one line, each said once (`dispatch failure:
/// io error: Connection refused (os error 111)`): the SDK's
/// `DisplayErrorContext` adds a `Debug` dump of the whole chain, which is
/// no sentence for an operator (nor for the kubelet's log).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        let text = error.to_string().replace('\n', " ");
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

fn no_credentials(detail: &str, config: &Config) -> StepError {
    let profile = config
        .install
        .aws_profile
        .as_deref()
        .map_or(String::new(), |p| format!(" (profile `{p}`)"));
    let detail = if detail.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", detail.trim())
    };
    StepError::input(
        format!("no AWS credentials were found{profile}; tried {CREDENTIAL_SOURCES}{detail}"),
        NO_CREDENTIALS_HINT,
    )
}

/// Error codes with which AWS rejects the credentials themselves.
const REJECTED: [&str; 7] = [
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDeniedException",
    "AccessDenied",
];

fn request_failed(code: Option<&str>, detail: &str, config: &Config) -> StepError {
    let region = &config.registry.region;
    match code {
        Some(code) if REJECTED.contains(&code) => StepError::input(
            format!(
                "AWS rejected the credentials found in the credential chain ({CREDENTIAL_SOURCES}) with `{code}`"
            ),
            "check that the key is current and allowed `ecr:GetAuthorizationToken` (`aws sts get-caller-identity`), \
             or pick another with `--aws-profile NAME`",
        ),
        _ => StepError::failed(
            format!(
                "cannot get an ECR authorization token in `{region}`: {}",
                detail.trim()
            ),
            format!(
                "check the network to AWS (`curl -sI https://api.ecr.{region}.amazonaws.com`), then run again"
            ),
        ),
    }
}

fn empty_answer(config: &Config) -> StepError {
    StepError::failed(
        format!(
            "ECR in `{}` answered without a usable authorization token",
            config.registry.region
        ),
        "run again; if it persists, check the endpoint (`registry.endpoint_url`)",
    )
}

/// Where the AWS credentials come from for what runs without the
/// operator's shell (the kubelet's credential provider, the renewal timer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A profile in root's `~/.aws` (the `install.aws_profile`, else
    /// `default`).
    Profile(String),
    /// A key in this shell's environment only: the kubelet and the timer
    /// never see it.
    EnvironmentOnly,
    /// No profile and no key: the instance role, if the host has one.
    InstanceRole(String),
    /// Root's `~/.aws` cannot be read: this run has no root (a plan), and
    /// the install, as root, looks.
    NotReadable,
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Profile(profile) => write!(f, "shared profile `{profile}` in `/root/.aws`"),
            Self::EnvironmentOnly => f.write_str(
                "this shell's environment only (the kubelet and the timer do not see it)",
            ),
            Self::InstanceRole(profile) => write!(
                f,
                "no profile `{profile}` in `/root/.aws`: the instance role, if the host has one"
            ),
            Self::NotReadable => f.write_str(
                "not checked: `/root/.aws` is root's alone and this run has no root (the install, as root, checks it)",
            ),
        }
    }
}

/// Why a key in this shell's environment alone does not do (the install
/// stops with it unless the operator has it written on a terminal).
pub fn environment_only_error(profile: &str) -> StepError {
    StepError::input(
        "the AWS credentials come from this shell's environment only: neither the kubelet's image credential provider nor the renewal timer will see them, and pulls fail once the first token expires (12 hours)",
        format!(
            "give the host an instance role, or write the key as profile `{profile}` in `/root/.aws/credentials` (`sudo aws configure --profile {profile}`) and name it with --aws-profile; on a terminal the install offers to write it; `registry.refresh_hours = 0` in the profile installs without renewal"
        ),
    )
}

/// The profile the kubelet's provider and the timer read.
pub fn profile_name(config: &Config) -> &str {
    config.install.aws_profile.as_deref().unwrap_or("default")
}

/// Where the AWS credentials come from for what runs without the
/// operator's shell: a profile in root's `~/.aws`, else the instance role;
/// and whether this shell's environment holds a key those never see.
pub fn credential_source(
    config: &Config,
    host: &crate::host::Host,
) -> Result<CredentialSource, StepError> {
    let profile = profile_name(config);
    let credentials = host.path(AWS_CREDENTIALS);
    let shared = host.path("/root/.aws/config");
    let section = |text: Option<String>, header: &str| {
        text.is_some_and(|text| text.lines().any(|line| line.trim() == header))
    };
    let config_header = match profile {
        "default" => "[default]".to_string(),
        name => format!("[profile {name}]"),
    };
    // Without root, root's files may be out of reach: say so rather than
    // stop (a plan needs no root).
    let read = |path: &std::path::Path| match crate::host::fs::read_optional(path) {
        Err(error)
            if error.source.kind() == std::io::ErrorKind::PermissionDenied
                && !crate::host::system::is_root() =>
        {
            Ok(None)
        }
        other => other.map(Some),
    };
    let (Some(credentials_text), Some(shared_text)) = (read(&credentials)?, read(&shared)?) else {
        return Ok(CredentialSource::NotReadable);
    };
    let in_profile =
        section(credentials_text, &format!("[{profile}]")) || section(shared_text, &config_header);
    let environment = std::env::var_os("AWS_ACCESS_KEY_ID").is_some_and(|value| !value.is_empty());
    Ok(match (in_profile, environment) {
        (true, _) => CredentialSource::Profile(profile.into()),
        (false, true) => CredentialSource::EnvironmentOnly,
        (false, false) => CredentialSource::InstanceRole(profile.into()),
    })
}

/// The instance role the EC2 instance metadata service names (IMDSv2, as
/// the SDK asks it: a session token, then the role list), within a short
/// time limit: `Err` says why there is none. The endpoint is the SDK's:
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else `http://169.254.169.254`;
/// `AWS_EC2_METADATA_DISABLED=true` turns it off.
pub fn instance_role() -> Result<String, String> {
    let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|value| value.eq_ignore_ascii_case("true"));
    if disabled {
        return Err("not asked: `AWS_EC2_METADATA_DISABLED=true`".into());
    }
    let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| "http://169.254.169.254".into());
    let endpoint = endpoint.trim_end_matches('/');
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .timeout(std::time::Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| error.to_string())?;
    let failed = |error: reqwest::Error| {
        let cause = crate::host::download::root_cause(&error);
        format!("`{endpoint}` did not answer: {cause}")
    };
    let token = client
        .put(format!("{endpoint}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .map_err(failed)?;
    if !token.status().is_success() {
        return Err(format!(
            "`{endpoint}` refused a session token ({})",
            token.status()
        ));
    }
    let token = token.text().map_err(failed)?;
    let roles = client
        .get(format!(
            "{endpoint}/latest/meta-data/iam/security-credentials/"
        ))
        .header("X-aws-ec2-metadata-token", token.trim())
        .send()
        .map_err(failed)?;
    if !roles.status().is_success() {
        return Err(format!(
            "the instance has no role (`{endpoint}` answered {})",
            roles.status()
        ));
    }
    let roles = roles.text().map_err(failed)?;
    (roles.lines().map(str::trim).find(|role| !role.is_empty()))
        .map(String::from)
        .ok_or_else(|| "the instance has no role".to_string())
}

/// Root's shared credentials file, where the kubelet's provider and the
/// timer look.
pub const AWS_CREDENTIALS: &str = "/root/.aws/credentials";

/// Root's shared credentials file with this shell's AWS key added as
/// `profile` (a section appended to what the file holds), for the
/// operator's yes on a terminal. The key never reaches argv or a
/// stackinstall file.
pub fn write_environment_profile(
    host: &crate::host::Host,
    profile: &str,
) -> Result<std::path::PathBuf, StepError> {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let (Some(key_id), Some(secret)) = (
        variable("AWS_ACCESS_KEY_ID"),
        variable("AWS_SECRET_ACCESS_KEY"),
    ) else {
        return Err(StepError::input(
            "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            "export both, or write the profile with `aws configure`",
        ));
    };
    let token = variable("AWS_SESSION_TOKEN");
    // One line each: a line break in a value would add lines root then
    // obeys (`credential_process = ...` runs a program as root).
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", Some(&key_id)),
        ("AWS_SECRET_ACCESS_KEY", Some(&secret)),
        ("AWS_SESSION_TOKEN", token.as_ref()),
    ] {
        if value.is_some_and(|value| value.chars().any(char::is_control)) {
            return Err(StepError::input(
                format!(
                    "`{name}` holds a control character (a line break?): written to `{AWS_CREDENTIALS}` it would add lines root then obeys; nothing was written"
                ),
                format!("export `{name}` again as the one line AWS gave you, then run again"),
            ));
        }
    }
    let path = host.path(AWS_CREDENTIALS);
    // Root's own file: never read through a link.
    let mut text = crate::host::fs::read_own_optional(&path)?.unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("[{profile}]\n"));
    let entries = [
        ("aws_access_key_id", Some(key_id)),
        ("aws_secret_access_key", Some(secret)),
        ("aws_session_token", token),
    ];
    for (name, value) in entries {
        if let Some(value) = value {
            text.push_str(&format!("{name} = {value}\n"));
        }
    }
    crate::host::fs::ensure_dir(&host.path("/root/.aws"), 0o700)?;
    crate::host::fs::write_atomic(&path, text.as_bytes(), 0o600)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const FETCHED: OffsetDateTime = datetime!(2024-05-01 00:00 UTC);

    #[test]
    fn renewal_is_due_half_way_through_the_validity() {
        let stamp = Stamp::new(FETCHED, Some(FETCHED + Duration::hours(12)));
        assert!(!stamp.needs_renewal(FETCHED + Duration::hours(5)));
        assert!(stamp.needs_renewal(FETCHED + Duration::minutes(5 * 60 + 30)));
        assert!(stamp.needs_renewal(FETCHED + Duration::hours(6)));
        assert!(!stamp.is_expired(FETCHED + Duration::hours(11)));
        assert!(stamp.is_expired(FETCHED + Duration::hours(12)));
    }

    #[test]
    fn an_expiry_before_the_fetch_falls_back_to_twelve_hours() {
        let moto_expiry = datetime!(2015-01-01 00:00 UTC);
        let stamp = Stamp::new(FETCHED, Some(moto_expiry));
        assert_eq!(stamp.expires_at, FETCHED + Duration::hours(12));
        assert!(!stamp.needs_renewal(FETCHED + Duration::minutes(1)));
        assert_eq!(Stamp::new(FETCHED, None), stamp);
    }

    #[test]
    fn a_token_from_the_future_is_renewed() {
        let stamp = Stamp::new(FETCHED, None);
        assert!(stamp.needs_renewal(FETCHED - Duration::hours(1)));
    }

    #[test]
    fn stamp_round_trips_through_annotations() {
        let stamp = Stamp::new(FETCHED, Some(FETCHED + Duration::hours(12)));
        let annotations = stamp.annotations();
        assert_eq!(annotations[FETCHED_AT], "2024-05-01T00:00:00Z");
        assert_eq!(
            Stamp::parse(&annotations[FETCHED_AT], &annotations[EXPIRES_AT]),
            Some(stamp)
        );
        assert_eq!(Stamp::parse("yesterday", &annotations[EXPIRES_AT]), None);
    }

    #[test]
    fn token_is_decoded_to_the_docker_password() {
        let decoded = token("QVdTOnMzY3JldC1wYXNzd29yZA==", None).unwrap();
        assert_eq!(decoded.password.expose(), "s3cret-password");
        assert!(token("not base64!", None).is_none());
    }

    #[test]
    fn rejected_credentials_are_told_apart_from_other_failures() {
        let config = Config::default();
        let rejected = request_failed(Some("UnrecognizedClientException"), "", &config);
        assert!(rejected.is_input());
        assert!(
            rejected.to_string().contains("instance metadata"),
            "{rejected}"
        );
        let other = request_failed(Some("ServerException"), "boom", &config);
        assert!(!other.is_input());
    }
}
