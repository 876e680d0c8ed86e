//! The kubelet's image credential provider, wired by the `k3s` step before
//! K3s starts (K3s enables it only when it finds, at start, both
//! `/var/lib/rancher/credentialprovider/config.yaml` and the plugin
//! directory beside it): the installed binary `/usr/local/bin/stackinstall`,
//! a link to it as the plugin `stackinstall` in the plugin directory, and
//! the `CredentialProviderConfig` matching the profile's registry. When they
//! change under a running K3s, the step restarts it once. The `registry`
//! step's uninstall removes the link and the config (K3s then starts
//! without the provider); the installed binary is kept.

use std::path::{Path, PathBuf};

use crate::context::Context;
use crate::host;
use crate::host::installed::INSTALLED_BINARY;
use crate::provider::{self, BIN_DIR, KUBELET_CONFIG, PLUGIN};
use crate::steps::{Action, StepError};

/// The plugin's path on the host (before `Host::path`).
pub fn plugin_path() -> PathBuf {
    Path::new(BIN_DIR).join(PLUGIN)
}

/// The config file the kubelet reads, as this install renders it.
pub fn rendered_config(context: &Context) -> Result<String, StepError> {
    provider::kubelet_config(&context.config, provider::REFRESH_CONFIG).map_err(|error| {
        StepError::failed(
            error.to_string(),
            "this is a bug in stackinstall's templates; please report it",
        )
    })
}

/// What is left to do for the provider: the installed binary, the plugin
/// link, the config file, each only when it differs.
pub fn actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let mut actions: Vec<Action> = crate::steps::services::installed_binary_action(context)?
        .into_iter()
        .collect();
    let link = context.host.path(plugin_path());
    let target = provider::link_target(INSTALLED_BINARY);
    if host::fs::link_target(&link)?.as_deref() != Some(target.as_path()) {
        actions.push(Action::symlink(context.host.reached(link), target));
    }
    let config = rendered_config(context)?;
    let config_path = context.host.path(KUBELET_CONFIG);
    if host::fs::read_optional(&config_path)?.as_deref() != Some(config.as_str()) {
        actions.push(Action::write(
            context.host.reached(config_path),
            config.into_bytes(),
            0o644,
        ));
    }
    Ok(actions)
}

/// Fails when the provider is not (or no longer) as the step left it.
pub fn check(context: &Context) -> Result<(), StepError> {
    let left: Vec<String> = actions(context)?
        .into_iter()
        .map(|action| action.detail())
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    Err(StepError::failed(
        format!(
            "the kubelet's credential provider is not in place: still to do: {}",
            left.join("; ")
        ),
        "run `stackinstall install --redo k3s` (K3s is restarted once to read it)",
    ))
}

/// The plugin's entry of the config file on the host, as the kubelet reads it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KubeletConfig {
    providers: Vec<ProviderEntry>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProviderEntry {
    name: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvEntry>,
}

#[derive(serde::Deserialize)]
struct EnvEntry {
    name: String,
    value: String,
}

/// The answer of the plugin checked by `ask_as_kubelet`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    api_version: String,
    kind: String,
    cache_key_type: String,
    cache_duration: String,
    auth: std::collections::BTreeMap<String, Auth>,
}

#[derive(serde::Deserialize)]
struct Auth {
    username: String,
    password: crate::secret::Secret,
}

/// Asks the plugin for the registry's credentials exactly as the kubelet
/// would: the program, arguments and environment the config file on the
/// host names, a `CredentialProviderRequest` on stdin. Returns the cache
/// duration it answered with; `None` when the provider is not wired (K3s
/// not installed by this tool, `--skip-infra`).
pub fn ask_as_kubelet(context: &Context) -> Result<Option<String>, StepError> {
    let path = context.host.path(KUBELET_CONFIG);
    let Some(text) = host::fs::read_optional(&path)? else {
        return Ok(None);
    };
    let broken = |what: String| {
        StepError::failed(
            format!("the kubelet's credential provider `{KUBELET_CONFIG}` {what}"),
            "run `stackinstall install --redo k3s` to write it again",
        )
    };
    let parsed: KubeletConfig = serde_yaml_ng::from_str(&text)
        .map_err(|error| broken(format!("cannot be read: {error}")))?;
    let entry = parsed
        .providers
        .into_iter()
        .find(|entry| entry.name == PLUGIN)
        .ok_or_else(|| broken(format!("names no plugin `{PLUGIN}`")))?;
    let server = &context.config.registry.server;
    let mut command = host::Command::new(
        context
            .host
            .path(BIN_DIR)
            .join(&entry.name)
            .display()
            .to_string(),
    )
    .args(entry.args.iter().map(|arg| under_root(context, arg)))
    .stdin_text(provider::request_for(&format!(
        "{server}/stackinstall-probe:latest"
    )))
    .unlogged_stdout()
    .timeout(std::time::Duration::from_secs(60));
    for variable in &entry.env {
        command = command.env(&variable.name, under_root(context, &variable.value));
    }
    let output = command.run()?;
    let response: Response = serde_json::from_str(&output.stdout).map_err(|_| {
        StepError::failed(
            format!("the credential provider `{}` answered something that is not a CredentialProviderResponse", plugin_path().display()),
            format!("run it by hand: `echo '{}' | {} {}`", provider::request_for(&format!("{server}/app")), plugin_path().display(), entry.args.join(" ")),
        )
    })?;
    let auth = response.auth.get(server);
    let well_formed = response.api_version == provider::API_VERSION
        && response.kind == "CredentialProviderResponse"
        && response.cache_key_type == "Registry"
        && auth.is_some_and(|auth| auth.username == "AWS" && !auth.password.expose().is_empty());
    if !well_formed {
        return Err(StepError::failed(
            format!(
                "the credential provider `{}` gave no credentials for `{server}`",
                plugin_path().display()
            ),
            "look at `journalctl -u k3s | grep credential`; check the AWS credentials in `/root/.aws`",
        ));
    }
    Ok(Some(response.cache_duration))
}

/// A host path of the kubelet's config as it is under `--root` (the
/// kubelet of a host installed under a root sees that root as `/`); any
/// other value as it is.
fn under_root(context: &Context, value: &str) -> String {
    match value.starts_with('/') {
        true => context.host.path(value).display().to_string(),
        false => value.to_string(),
    }
}

/// The removals of the provider's link and config file (the `registry`
/// step's uninstall); the installed binary stays.
pub fn removals(context: &Context) -> Vec<Action> {
    [plugin_path(), PathBuf::from(KUBELET_CONFIG)]
        .into_iter()
        .map(|path| Action::remove(context.host.locate(&path)))
        .collect()
}
