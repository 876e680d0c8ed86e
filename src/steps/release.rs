//! Release: `helm pull` of the profile's chart into a root-only directory,
//! checked against its pin in `[downloads.pins]` (see `release/chart.rs`),
//! then `helm upgrade --install` of that file into the
//! application's namespace, with the pull secret's name, the host's
//! database endpoints and the service credentials in a values file of mode
//! 0600 under `/var/lib/stackinstall` that is removed as soon as Helm is done
//! (also when it fails). No secret is ever passed with `--set`.
//!
//! Done when the newest revision in `helm history` is `deployed` with the
//! description `stackinstall <fingerprint>`, the fingerprint covering the
//! chart, the values and a hash of the credentials. A release left
//! `pending-install` by an interrupted run is uninstalled and installed
//! again; one left `pending-upgrade` or `pending-rollback` is rolled back to
//! its last deployed revision, as Helm's documentation advises. Uninstall
//! runs `helm uninstall`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::Context;
use crate::credentials::Credentials;
use crate::host::download::ReleaseBinary;
use crate::host::kube::{self, Revision};
use crate::host::{self, Command};
use crate::state::Fingerprint;

mod chart;

/// The release step.
pub struct Release;

/// Where the values file lives while Helm runs.
const VALUES_DIR: &str = "/var/lib/stackinstall";

/// The release's values; passwords only when `credentials` are given.
pub fn values(
    config: &Config,
    host_ip: &str,
    credentials: Option<&Credentials>,
) -> serde_json::Value {
    let password = |service: &str| {
        credentials
            .and_then(|c| c.account(service))
            .map(|account| account.password.expose().to_string())
    };
    let mut values = json!({
        "domain": config.install.domain,
        "imagePullSecrets": [{ "name": config.registry.secret }],
        "mysql": { "host": host_ip, "port": config.mysql.port, "username": config.mysql.username, "databases": config.mysql.databases },
        "mongodb": { "host": host_ip, "port": config.mongodb.port, "username": config.mongodb.username },
        "rabbitmq": { "host": host_ip, "port": config.rabbitmq.port, "managementPort": config.rabbitmq.management_port,
                      "username": config.rabbitmq.username, "vhost": config.rabbitmq.vhost },
        "nfs": { "server": host_ip, "path": config.nfs.path, "storageClass": config.nfs.storage_class },
    });
    for service in ["mysql", "mongodb", "rabbitmq"] {
        if let Some(password) = password(service) {
            values[service]["password"] = password.into();
        }
    }
    values
}

/// The values without secrets, as `render` writes them for review.
pub fn values_for_review(config: &Config) -> String {
    let host_ip = config.host_ip().unwrap_or_else(|| "HOST_IP".into());
    let yaml = serde_yaml_ng::to_string(&values(config, &host_ip, None)).expect("values serialize");
    format!(
        "# Helm values of the release `{}`; the install adds each service's `password`\n# from the credentials file.\n{yaml}",
        config.chart.release
    )
}

/// The description the release is deployed with: it says which inputs.
fn marker(context: &Context) -> Result<String, StepError> {
    let config = &context.config;
    let mut fingerprint = Fingerprint::default();
    fingerprint.add("reference", &config.chart.reference).add(
        "version",
        config.chart.version.as_deref().unwrap_or_default(),
    );
    if let Some(pin) = chart::download(config).pin {
        fingerprint.add("pin", pin.sha256);
    }
    fingerprint
        .add(
            "values",
            values(config, &context.host_ip()?, None).to_string(),
        )
        .add("credentials", credentials_hash(context.credentials().ok()));
    Ok(format!("stackinstall {}", &fingerprint.finish()[..16]))
}

fn credentials_hash(credentials: Option<&Credentials>) -> String {
    let Some(credentials) = credentials else {
        return "none".into();
    };
    let mut fingerprint = Fingerprint::default();
    for (service, account) in &credentials.accounts {
        fingerprint.add(
            service,
            format!("{}:{}", account.username, account.password.expose()),
        );
    }
    fingerprint.finish()
}

/// The application release's revisions.
fn application_history(config: &Config) -> Result<Vec<Revision>, StepError> {
    Ok(kube::history(
        &config.chart.release,
        &config.cluster.namespace,
    )?)
}

/// The `helm upgrade --install` command of the chart file `file` with the
/// values file at `values`.
fn upgrade_command(context: &Context, file: &Path, values: &Path, description: &str) -> Command {
    let chart = &context.config.chart;
    let timeout = format!("{}s", chart.timeout_seconds);
    let file = file.display().to_string();
    let values = values.display().to_string();
    let mut args = vec!["upgrade", "--install"];
    args.extend([
        "--namespace",
        &context.config.cluster.namespace,
        "--values",
        &values,
    ]);
    args.extend(["--description", description, "--timeout", &timeout]);
    args.extend(["--", &chart.release, &file]);
    kube::helm(args).timeout(Duration::from_secs(chart.timeout_seconds + 60))
}

fn values_path(context: &Context) -> PathBuf {
    context
        .host
        .path(VALUES_DIR)
        .join(format!("{}-values.yaml", context.config.chart.release))
}

/// Pulls and checks the chart, writes the values file (0600), runs Helm,
/// and removes both files whatever happened. The plan shows the commands
/// with the paths as the operator knows them.
struct Upgrade {
    pull: Command,
    /// What the chart is checked against.
    check: String,
    upgrade: Command,
}

impl Change for Upgrade {
    fn kind(&self) -> ActionKind {
        ActionKind::Command
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "{} (into a directory only root reads; the chart {}), then {} (values file mode 0600 with the credentials; both files removed afterwards)",
            self.pull, self.check, self.upgrade
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let file = chart::pull(context)?;
        let result = upgrade_from(context, &file);
        let removed = chart::remove(context);
        result?;
        removed?;
        Ok(true)
    }
}

/// Writes the values file (0600), runs Helm with the chart `file`, and
/// removes the values file whatever happened.
fn upgrade_from(context: &Context, file: &Path) -> Result<(), StepError> {
    let config = &context.config;
    let path = values_path(context);
    if let Some(parent) = path.parent().filter(|parent| !parent.exists()) {
        host::fs::ensure_dir(parent, 0o700)?;
    }
    let values = values(config, &context.host_ip()?, Some(context.credentials()?));
    let yaml = serde_yaml_ng::to_string(&values).expect("values serialize");
    host::fs::write_atomic(&path, yaml.as_bytes(), 0o600)?;
    let result = upgrade_command(context, file, &path, &marker(context)?).run();
    let removed = host::fs::remove_file(&path);
    result?;
    removed?;
    Ok(())
}

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    rendered: Some(rendered),
    downloads: Some(release_files),
    needs: &[
        StepId::Credentials,
        StepId::Mysql,
        StepId::Mongodb,
        StepId::Rabbitmq,
        StepId::Storage,
        StepId::Namespace,
        StepId::Registry,
        StepId::Tls,
        StepId::Helm,
    ],
    inputs_from: &[
        StepId::Credentials,
        StepId::Helm,
        StepId::Namespace,
        StepId::Registry,
    ],
    ..StepInfo::new(
        StepId::Release,
        "Install or upgrade the application's Helm release",
    )
};

impl Step for Release {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let config = &context.config;
        fingerprint
            .add("release", &config.chart.release)
            .add("namespace", &config.cluster.namespace)
            .add("marker", marker(context).unwrap_or_default());
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let config = &context.config;
        let revisions = application_history(config)?;
        let recovered =
            kube::recovery(&config.chart.release, &config.cluster.namespace, &revisions);
        // What a run killed while Helm had them left: the chart and the
        // values file (which holds the passwords).
        let mut actions: Vec<Action> = [chart::file(context), values_path(context)]
            .into_iter()
            .filter(|leftover| host::fs::exists(leftover))
            .map(|leftover| Action::remove(context.host.reached(leftover)))
            .collect();
        let marker = marker(context)?;
        let current = revisions
            .last()
            .is_some_and(|r| r.status == "deployed" && r.description == marker);
        if current && recovered.is_none() {
            return Ok(actions);
        }
        actions.extend(recovered.map(Action::run));
        let shown = context.shown(&values_path(context));
        let file = context.shown(&chart::file(context));
        actions.extend(Action::change(Upgrade {
            pull: chart::pull_command(config, &context.shown(&chart::directory(context))),
            check: chart::check(config),
            upgrade: upgrade_command(context, &file, &shown, &marker),
        }));
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let (release, namespace) = (
            &context.config.chart.release,
            &context.config.cluster.namespace,
        );
        let revisions = application_history(&context.config)?;
        let marker = marker(context)?;
        match revisions.last() {
            Some(latest) if latest.status == "deployed" && latest.description == marker => Ok(()),
            Some(latest) => Err(StepError::failed(
                format!(
                    "the release `{release}` is at revision {} `{}`, not the one this install deployed",
                    latest.revision, latest.status
                ),
                format!(
                    "look at `helm history {release} -n {namespace}`, then run `sudo stackinstall install --redo release`"
                ),
            )),
            None => Err(StepError::failed(
                format!("there is no release `{release}` in `{namespace}`"),
                "run `sudo stackinstall install --redo release`",
            )),
        }
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let config = &context.config;
        if application_history(config)?.is_empty() {
            return Ok(Vec::new());
        }
        let uninstall = kube::helm([
            "uninstall",
            "--namespace",
            &config.cluster.namespace,
            "--wait",
            "--",
            &config.chart.release,
        ]);
        Ok(vec![Action::run(uninstall)])
    }
}

/// The values without the passwords, for review.
fn rendered(config: &Config) -> Result<Vec<(String, String)>, crate::render::RenderError> {
    Ok(vec![(
        "release-values.yaml".into(),
        values_for_review(config),
    )])
}

fn release_files(context: &Context) -> Vec<ReleaseBinary> {
    vec![chart::download(&context.config)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::load(&crate::config::Sources::default()).unwrap()
    }

    #[test]
    fn values_without_credentials_hold_no_password() {
        let values = values(&config(), "10.0.0.5", None);
        assert_eq!(values["mysql"]["host"], "10.0.0.5");
        assert_eq!(values["imagePullSecrets"][0]["name"], "awscred");
        assert!(!values.to_string().contains("password"));
    }
}
