//! Registry: fetches an ECR authorization token with aws-sdk-ecr through
//! the standard AWS credential chain and creates or replaces the
//! docker-registry Secret (`registry.secret`) in the application's
//! namespace, through kubectl on stdin. Because ECR tokens expire after 12
//! hours, it also installs a systemd timer running `stackinstall
//! ecr-refresh` every `registry.refresh_hours`, with the effective
//! configuration in `/etc/stackinstall/ecr-refresh.toml`. The timer runs
//! `/usr/local/bin/stackinstall`, a root-owned copy of the running binary
//! this step installs (replaced when the running one differs), never the
//! path the installer was started from.
//!
//! Pulls themselves do not depend on that Secret: the `k3s` step wired the
//! kubelet's credential provider (`stackinstall ecr-credential-provider`,
//! which reads the same configuration file), and this step's verification
//! asks it for a token exactly as the kubelet would.
//!
//! Done when the Secret carries a stamp (annotations) saying its token is
//! not yet half way to expiry, the unit files are as rendered with the
//! timer enabled and active (a timer whose files changed is restarted once
//! systemd reloaded them, pending in the state until it is), and the
//! credential provider (when K3s is ours) answers with a token. Uninstall
//! stops and disables the timer first (so a renewal cannot bring the Secret
//! back) and removes its files, then deletes the Secret and removes the
//! credential provider's link and config (K3s starts without it from then
//! on); the installed binary is kept.

use time::OffsetDateTime;

use super::k3s::credential_provider;
use super::services::{self, OwnTimer, UnitFile};
use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::Context;
use crate::ecr;
use crate::host::installed::INSTALLED_BINARY;
use crate::host::{self, kube, service};
use crate::provider;
use crate::render::RenderError;
use crate::state::Fingerprint;

/// The registry step.
pub struct Registry;

/// The systemd timer that renews the pull Secret.
pub const TIMER: &str = "stackinstall-ecr-refresh.timer";

/// The timer, its service and the configuration they run with (which the
/// kubelet's credential provider reads too).
const OWN_TIMER: OwnTimer = OwnTimer {
    unit: TIMER,
    runs: "stackinstall ecr-refresh",
    config_file: provider::REFRESH_CONFIG,
    config_mode: 0o644,
};

/// The renewal's files: the service, the timer and the configuration they
/// run the installed binary with.
fn renewal_files(config: &Config) -> Result<Vec<UnitFile>, RenderError> {
    let values = minijinja::context! {
        secret => config.registry.secret,
        namespace => config.cluster.namespace,
        hours => config.registry.refresh_hours,
    };
    OWN_TIMER.files(config, values)
}

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    rendered: Some(rendered),
    preflight: Some(check_credentials),
    needs: &[StepId::Namespace],
    inputs_from: &[StepId::Namespace],
    ..StepInfo::new(
        StepId::Registry,
        "Create the ECR pull secret and its renewal",
    )
};

impl Step for Registry {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config = &context.config;
        let registry = &config.registry;
        fingerprint
            .add("server", &registry.server)
            .add("region", &registry.region)
            .add("secret", &registry.secret)
            .add("refresh_hours", registry.refresh_hours.to_string())
            .add(
                "endpoint_url",
                registry.endpoint_url.as_deref().unwrap_or_default(),
            )
            .add("namespace", &config.cluster.namespace)
            .add(
                "aws_profile",
                config.install.aws_profile.as_deref().unwrap_or(""),
            );
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = Vec::new();
        let config = &context.config;
        match ecr::read_stamp(config)? {
            Some(stamp) if !stamp.needs_renewal(OffsetDateTime::now_utc()) => {}
            _ => actions.extend(Action::change(Renew {
                registry: config.registry.clone(),
                namespace: config.cluster.namespace.clone(),
            })),
        }
        actions.extend(unit_actions(context)?);
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let config = &context.config;
        let (secret, namespace) = (&config.registry.secret, &config.cluster.namespace);
        let stamp = ecr::read_stamp(config)?.ok_or_else(|| {
            StepError::failed(
                format!(
                    "the pull secret `{secret}` in `{namespace}` is missing or has no token stamp"
                ),
                "run `sudo stackinstall ecr-refresh` to create it",
            )
        })?;
        if stamp.is_expired(OffsetDateTime::now_utc()) {
            return Err(StepError::failed(
                format!("the ECR token in `{secret}` expired; pods cannot pull images"),
                format!("run `sudo stackinstall ecr-refresh`; check `systemctl status {TIMER}`"),
            ));
        }
        if config.registry.refresh_hours == 0 {
            // No renewal wanted: the token lasts its 12 hours, and the
            // provider may have no credentials to ask with.
            return Ok(());
        }
        services::check_restarted(context, TIMER)?;
        if !service::is_enabled(TIMER)? || !service::is_active(TIMER)? {
            return Err(StepError::failed(
                format!("the renewal timer `{TIMER}` is not enabled and running"),
                format!("run `sudo systemctl enable --now {TIMER}`"),
            ));
        }
        credential_provider::ask_as_kubelet(context)?;
        Ok(())
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let config = &context.config;
        // The timer stopped first, so that a renewal cannot bring the
        // Secret back.
        let mut actions = services::own_unit_removals(context, TIMER, &OWN_TIMER.paths());
        actions.push(Action::run(kube::kubectl([
            "delete",
            "secret",
            &config.registry.secret,
            "-n",
            &config.cluster.namespace,
            "--ignore-not-found",
        ])));
        actions.extend(credential_provider::removals(context));
        if host::fs::exists(&context.host.path(INSTALLED_BINARY)) {
            actions.push(Action::check(format!(
                "{INSTALLED_BINARY}, the installed stackinstall: remove it by hand when you no longer need it"
            )));
        }
        Ok(actions)
    }
}

/// The renewal's service and timer, and the configuration it runs with
/// (`ecr-refresh.toml`), for `render`.
fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    Ok(services::by_file_name(renewal_files(config)?))
}

/// The installed binary and the renewal's files, then the timer enabled
/// and running with them (`services::own_unit_actions`); with
/// `refresh_hours = 0` no timer, and the configuration file alone (the
/// credential provider reads it).
fn unit_actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let files = renewal_files(&context.config).map_err(super::template_bug)?;
    let mut actions: Vec<Action> = services::installed_binary_action(context)?
        .into_iter()
        .collect();
    if context.config.registry.refresh_hours > 0 {
        actions.extend(services::own_unit_actions(context, TIMER, files)?);
        return Ok(actions);
    }
    for file in (files.into_iter()).filter(|file| !services::is_unit_file(&file.path)) {
        actions.extend(file.write_action(context)?);
    }
    Ok(actions)
}

/// Fetches a token and applies the pull Secret; the timer renews it later.
struct Renew {
    registry: crate::config::Registry,
    namespace: String,
}

impl Change for Renew {
    fn kind(&self) -> ActionKind {
        ActionKind::Kubernetes
    }

    fn lines(&self) -> Vec<String> {
        let registry = &self.registry;
        vec![format!(
            "fetch an ECR token for `{}` (region {}, AWS credential chain) and apply Secret `{}` in `{}` with kubectl on stdin",
            registry.server, registry.region, registry.secret, self.namespace
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let stamp = ecr::renew(context, OffsetDateTime::now_utc())?;
        context.ui.note(&format!(
            "pull secret `{}` renewed; `{TIMER}` renews it before it expires",
            self.registry.secret
        ));
        tracing::info!("token stamp: {:?}", stamp.annotations());
        Ok(true)
    }
}

/// Preflight, whenever this step is part of the run: the AWS credentials
/// the kubelet's provider and the renewal timer will use, asked of every
/// source the SDK would ask (the environment, root's profile, the instance
/// role within a short time), before anything changes. None: the install
/// stops (exit 2) naming the sources tried and the ways to give one; a plan
/// shows every step and then stops the same way.
fn check_credentials(context: &Context) -> Result<Option<Action>, StepError> {
    if !context.included.contains(&StepId::Registry) {
        return Ok(None);
    }
    let found = match crate::ecr::credential_source(&context.config, &context.host)? {
        // The install itself handles a key found in the environment only
        // (it asks on a terminal, else stops; `refresh_hours = 0` takes it).
        source @ crate::ecr::CredentialSource::Profile(_) => source.to_string(),
        source @ crate::ecr::CredentialSource::EnvironmentOnly => {
            // A plan without a terminal to ask on stops as the run would.
            let stops = context.config.registry.refresh_hours != 0 && !crate::ask::can_ask();
            if context.plan && stops {
                let profile = crate::ecr::profile_name(&context.config);
                context.plan_stops_with(crate::ecr::environment_only_error(profile));
                format!("{source}: the install will stop here")
            } else {
                source.to_string()
            }
        }
        source @ crate::ecr::CredentialSource::NotReadable => source.to_string(),
        crate::ecr::CredentialSource::InstanceRole(profile) => match named_files_hold(&profile) {
            Some(file) => format!("profile `{profile}` in `{file}`"),
            None => match crate::ecr::instance_role() {
                Ok(role) => format!("the instance role `{role}`"),
                Err(why) => {
                    let error = StepError::input(
                        format!(
                            "no AWS credentials for the `registry` step: tried the environment (no `AWS_ACCESS_KEY_ID`), profile `{profile}` in `/root/.aws/credentials` and `/root/.aws/config` (not there), and the instance role from the EC2 instance metadata ({why})"
                        ),
                        crate::ecr::NO_CREDENTIALS_HINT,
                    );
                    if !context.plan {
                        return Err(error);
                    }
                    context.ui.warn(
                        "no AWS credentials for the `registry` step: the install will stop here",
                    );
                    context.plan_stops_with(error);
                    "NONE FOUND, the install will stop here".to_string()
                }
            },
        },
    };
    Ok(Some(Action::check(format!(
        "AWS credentials for the ECR token: {found}"
    ))))
}

/// The file named by `AWS_SHARED_CREDENTIALS_FILE` or `AWS_CONFIG_FILE`
/// (which the SDK reads instead of root's `~/.aws` files) that holds
/// `profile`, if one does.
fn named_files_hold(profile: &str) -> Option<String> {
    let headers = [
        ("AWS_SHARED_CREDENTIALS_FILE", format!("[{profile}]")),
        (
            "AWS_CONFIG_FILE",
            match profile {
                "default" => "[default]".to_string(),
                name => format!("[profile {name}]"),
            },
        ),
    ];
    headers.into_iter().find_map(|(variable, header)| {
        let file = std::env::var(variable)
            .ok()
            .filter(|file| !file.is_empty())?;
        let text = std::fs::read_to_string(&file).ok()?;
        text.lines()
            .any(|line| line.trim() == header)
            .then_some(file)
    })
}
