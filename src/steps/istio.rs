//! Istio: installs the pinned `istioctl` (from the Istio release tarball,
//! checked against its published `.sha256`) to `/usr/local/bin/istioctl`,
//! refuses a Kubernetes version outside the pinned Istio's support matrix
//! (the pinned K3s's in preflight, the cluster's once it answers),
//! writes the IstioOperator overlay rendered from `templates/` to
//! `/etc/stackinstall/istio-operator.yaml` (profile, ingress gateway as a
//! NodePort Service, native sidecars so that Jobs' pods finish) and runs
//! `istioctl install -y -f` with it. Done when the overlay on disk is the
//! rendered one, istiod is ready and injects native sidecars
//! (`ENABLE_NATIVE_SIDECARS=true` in its environment), and the ingress
//! gateway Service has the profile's NodePorts. Before it changes anything
//! it records whether istio-system or istiod was already in the cluster
//! (`istio.preexisting`); uninstall runs `istioctl uninstall --purge` only
//! when it was not, and removes the overlay (and the binary we put there).

use std::time::Duration;

use serde_json::Value;

use super::{Action, ActionKind, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::{Context, Origin, kept_because};
use crate::host::download::{self, ReleaseBinary};
use crate::host::{self, Command, cluster, kube};
use crate::render::{self, RenderError};
use crate::state::{Fact, Fingerprint, Preexisting};
use crate::steps::k3s::version as k3s_version;

/// The Istio step.
pub struct Istio;

/// Where `istioctl` goes.
pub const BINARY: &str = "/usr/local/bin/istioctl";
/// Where the IstioOperator overlay is kept.
pub const OVERLAY: &str = "/etc/stackinstall/istio-operator.yaml";
const NAMESPACE: &str = "istio-system";

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    preflight: Some(preflight),
    rendered: Some(rendered),
    downloads: Some(downloads),
    needs: &[StepId::K3s],
    ..StepInfo::infra(StepId::Istio, "Install Istio and its ingress gateway")
};

impl Step for Istio {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("version", &context.config.versions.istio);
        fingerprint.add("overlay", overlay(&context.config)?);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let mut actions = Vec::new();
        let pinned = &context.config.versions.istio;
        let installed = installed_version(context)?;
        let upgrade_from = installed.clone().filter(|found| found != pinned);
        if let Some(from) = &upgrade_from {
            actions.extend(Action::change(super::k3s::BackupFirst::new(
                context,
                &format!("Istio {from} → {pinned}"),
                &format!("istio-{pinned}"),
            )));
        }
        if installed.is_none() || upgrade_from.is_some() {
            actions.push(Action::install_release(release(context), BINARY));
        }
        actions.push(check_support(context)?);
        if upgrade_from.is_some() {
            // istio.io "Upgrade with istioctl": check the cluster first.
            let precheck = kube::istioctl(["x", "precheck"]).timeout(Duration::from_secs(300));
            actions.push(Action::run_as(ActionKind::Check, precheck));
        }
        let overlay = overlay(&context.config)?;
        let overlay_path = context.host.path(OVERLAY);
        let same_overlay =
            crate::host::fs::read_optional(&overlay_path)?.as_deref() == Some(overlay.as_str());
        if same_overlay && upgrade_from.is_none() && cluster_problem(context)?.is_none() {
            actions.push(Action::check(
                "istiod is ready; the ingress gateway has the profile's NodePorts",
            ));
            return Ok(actions);
        }
        actions.push(Action::write(
            context.host.reached(overlay_path),
            overlay.into_bytes(),
            0o644,
        ));
        let overlay_argument = context.host.path(OVERLAY).display().to_string();
        let install = kube::istioctl(["install", "-y", "-f", &overlay_argument]);
        actions.push(Action::run(install.timeout(Duration::from_secs(900))));
        actions.push(Action::run_as(ActionKind::Wait, wait_command(context)));
        record_first(context, &mut actions)?;
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        match installed_version(context)? {
            None => {
                return Err(StepError::failed(
                    format!("`{BINARY}` is missing"),
                    "run `stackinstall install --redo istio`",
                ));
            }
            Some(found) if found != context.config.versions.istio => {
                return Err(StepError::failed(
                    format!(
                        "istioctl is still {found}, not {}",
                        context.config.versions.istio
                    ),
                    "run `stackinstall install --redo istio`",
                ));
            }
            Some(_) => {}
        }
        match cluster_problem(context)? {
            None => Ok(()),
            Some(problem) => Err(StepError::failed(
                problem,
                "look at `kubectl get pods -n istio-system`, then run `stackinstall install --redo istio`",
            )),
        }
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let overlay = context.host.path(OVERLAY);
        let facts = &context.facts().istio;
        let origin = facts
            .control_plane_preexisting
            .map(Origin::from_preexisting);
        let mut actions = match kept_because(origin, "Istio's control plane (istio-system, istiod)")
        {
            Some(kept) => vec![Action::check(kept)],
            None => vec![
                Action::run(
                    kube::istioctl(["uninstall", "--purge", "-y"])
                        .timeout(Duration::from_secs(600)),
                ),
                Action::run(kube::delete("namespace", NAMESPACE, None)),
            ],
        };
        if overlay.exists() {
            actions.push(Action::remove(context.host.reached(overlay.clone())));
        }
        if facts.istioctl_preexisting == Some(false) {
            let binary = context.host.path(BINARY);
            actions.push(Action::remove(context.host.reached(binary.clone())));
        }
        Ok(actions)
    }
}

/// Writes down, before anything changes, whether istioctl and Istio's
/// control plane were there.
fn record_first(context: &Context, actions: &mut Vec<Action>) -> Result<(), StepError> {
    if !actions.iter().any(Action::changes_host) {
        return Ok(());
    }
    let facts = &context.facts().istio;
    let mut records = Vec::new();
    if facts.istioctl_preexisting.is_none() {
        let present = context.host.path(BINARY).exists();
        records.push(Fact::Preexisting(Preexisting::Istioctl, present));
    }
    if facts.control_plane_preexisting.is_none() && !context.was_done(StepId::Istio) {
        let snapshot = cluster::snapshot()?;
        let present = snapshot.object("namespace", None, NAMESPACE).is_some()
            || (snapshot.object("deployment", Some(NAMESPACE), "istiod")).is_some();
        records.push(Fact::Preexisting(Preexisting::IstioControlPlane, present));
    }
    actions.splice(0..0, records.into_iter().map(Action::record));
    Ok(())
}

fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    Ok(vec![("istio-operator.yaml".into(), overlay(config)?)])
}

/// Waits, bounded by the profile, until istiod's rollout is complete.
fn wait_command(context: &Context) -> Command {
    let seconds = context.config.downloads.ready_timeout_seconds;
    let timeout = format!("--timeout={seconds}s");
    kube::kubectl([
        "rollout",
        "status",
        "deployment/istiod",
        "-n",
        NAMESPACE,
        &timeout,
    ])
    .timeout(Duration::from_secs(seconds + 30))
}

fn release(context: &Context) -> ReleaseBinary {
    let version = &context.config.versions.istio;
    let base = download::url_for(&context.config.downloads.istio, version);
    let file = format!("istio-{version}-linux-{}.tar.gz", download::architecture());
    context.config.downloads.release(
        &format!("istio/{version}"),
        format!("{base}/{file}"),
        Some(format!("{base}/{file}.sha256")),
        Some(format!("istio-{version}/bin/istioctl")),
    )
}

/// The file Istio downloads: its release archive (istioctl is in it).
pub fn downloads(context: &Context) -> Vec<ReleaseBinary> {
    vec![release(context)]
}

/// The installed istioctl's version; `None` when there is none. Another
/// version than the pinned one is an upgrade when the install put
/// istioctl there and the move is one Istio makes in place
/// (`crate::upgrade`: one minor at most, never down); else reported, not
/// replaced.
fn installed_version(context: &Context) -> Result<Option<String>, StepError> {
    let binary = context.host.path(BINARY);
    if !binary.exists() {
        return Ok(None);
    }
    let printed = host::installed::version_output(&binary, &["version", "--remote=false"])?;
    let found = printed
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("")
        .to_string();
    let pinned = &context.config.versions.istio;
    if &found != pinned && context.facts().istio.istioctl_preexisting == Some(false) {
        return match crate::upgrade::check_path(crate::upgrade::Component::Istio, &found, pinned) {
            Ok(_) => Ok(Some(found)),
            Err(refusal) => Err(refusal.into()),
        };
    }
    if &found != pinned {
        return Err(StepError::input(
            format!(
                "istioctl `{found}` is already installed at `{BINARY}`, but profile `{}` pins `{pinned}`",
                context.config.name
            ),
            format!(
                "stackinstall does not replace another istioctl: install {pinned} yourself, or remove `{BINARY}` and run again"
            ),
        ));
    }
    Ok(Some(found))
}

/// Refuses a Kubernetes server outside the pinned Istio's support matrix.
fn check_support(context: &Context) -> Result<Action, StepError> {
    let output = kube::kubectl(["version", "-o", "json"]).run()?;
    let version: Value = serde_json::from_str(&output.stdout).unwrap_or(Value::Null);
    let server = &version["serverVersion"];
    let minor: Option<u64> = server["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok());
    let shown = server["gitVersion"].as_str().unwrap_or("unknown");
    supported(&context.config.versions.istio, minor, shown)
}

/// Whether the pinned `istio` supports Kubernetes 1.`minor` (`shown`):
/// a check, or an input error naming the range it supports and the Istios
/// that fit.
fn supported(istio: &str, minor: Option<u64>, shown: &str) -> Result<Action, StepError> {
    let Some((low, high)) = crate::upgrade::kubernetes_range(istio) else {
        return Err(StepError::input(
            format!(
                "Istio {istio} is not in stackinstall's support matrix ({})",
                crate::upgrade::known_istio()
            ),
            "pin an Istio version stackinstall knows in `versions.istio`",
        ));
    };
    match minor {
        Some(minor) if (low..=high).contains(&minor) => Ok(Action::check(format!(
            "Kubernetes {shown} is supported by Istio {istio} (1.{low} to 1.{high})"
        ))),
        _ => {
            let kubernetes = format!("1.{}.0", minor.unwrap_or(0));
            let hint = crate::upgrade::check_pair(istio, &kubernetes)
                .err()
                .map_or_else(String::new, |refusal| refusal.hint);
            Err(StepError::input(
                format!(
                    "Istio {istio} does not support Kubernetes {shown}: it supports Kubernetes 1.{low} to 1.{high}"
                ),
                hint,
            ))
        }
    }
}

/// What is wrong with Istio in the cluster, or `None` when it is as wanted.
fn cluster_problem(context: &Context) -> Result<Option<String>, StepError> {
    let objects = [
        ("deployment", "istiod"),
        ("service", "istio-ingressgateway"),
    ];
    let snapshot = cluster::snapshot()?;
    let [istiod, service] =
        objects.map(|(kind, name)| snapshot.object(kind, Some(NAMESPACE), name));
    let Some(istiod) = istiod else {
        return Ok(Some("istiod is not installed".into()));
    };
    if istiod["status"]["readyReplicas"].as_u64().unwrap_or(0) == 0 {
        return Ok(Some("istiod is not ready".into()));
    }
    if !injects_native_sidecars(istiod) {
        return Ok(Some(
            "istiod does not inject native sidecars (`ENABLE_NATIVE_SIDECARS=true`): a Job's pod would never finish".into(),
        ));
    }
    let Some(service) = service else {
        return Ok(Some("the Service `istio-ingressgateway` is missing".into()));
    };
    let istio = &context.config.istio;
    let wanted = [(80, istio.http_node_port), (443, istio.https_node_port)];
    let ports = service["spec"]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |port: u16, node_port: u16| {
        ports
            .iter()
            .any(|p| p["port"] == u64::from(port) && p["nodePort"] == u64::from(node_port))
    };
    if service["spec"]["type"] != "NodePort" || !wanted.iter().all(|(port, node)| has(*port, *node))
    {
        return Ok(Some(format!(
            "the ingress gateway is not a NodePort Service with 80 -> {} and 443 -> {}",
            istio.http_node_port, istio.https_node_port
        )));
    }
    Ok(None)
}

/// Whether istiod's `discovery` container has `ENABLE_NATIVE_SIDECARS=true`.
pub fn injects_native_sidecars(istiod: &Value) -> bool {
    let containers = &istiod["spec"]["template"]["spec"]["containers"];
    containers
        .as_array()
        .into_iter()
        .flatten()
        .any(|container| {
            container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|variable| {
                    variable["name"] == "ENABLE_NATIVE_SIDECARS" && variable["value"] == "true"
                })
        })
}

/// The pinned Istio supports the Kubernetes of the pinned K3s, before
/// anything changes (the cluster's own version is checked again once it
/// answers); with `--skip-infra`, istiod must already be there and ready.
fn preflight(context: &Context) -> Result<Option<Action>, StepError> {
    if !context.config.install.skip_infra {
        let k3s = &context.config.versions.k3s;
        let minor = k3s_version::kubernetes(k3s).map(|(minor, _)| u64::from(minor));
        let shown = format!("1.{} (K3s {k3s})", minor.unwrap_or_default());
        let mut check = supported(&context.config.versions.istio, minor, &shown)?;
        // An istioctl of another version is an upgrade Istio makes in
        // place, or refused naming the way through (`installed_version`).
        let pinned = &context.config.versions.istio;
        if let Some(found) = installed_version(context)?.filter(|found| found != pinned) {
            check = Action::check(format!(
                "{}; Istio {found} → {pinned} is an upgrade stackinstall makes (one minor at most)",
                check.detail()
            ));
        }
        return Ok(Some(check));
    }
    let skipped_but_missing = StepError::skipped_but_missing;
    let istiod = cluster::snapshot().map(|snapshot| {
        snapshot
            .object("deployment", Some(NAMESPACE), "istiod")
            .cloned()
    });
    match istiod {
        Ok(Some(istiod)) if istiod["status"]["readyReplicas"].as_u64().unwrap_or(0) > 0 => {
            Ok(Some(Action::check("--skip-infra: istiod is ready")))
        }
        Ok(Some(_)) => Err(skipped_but_missing("Istio", "istiod is not ready")),
        Ok(None) => Err(skipped_but_missing(
            "Istio",
            "there is no deployment `istiod` in istio-system",
        )),
        Err(error) => Err(skipped_but_missing("Istio", &error.to_string())),
    }
}

/// The IstioOperator overlay `istioctl install -f` takes: the profile and
/// the ingress gateway's NodePorts.
pub fn overlay(config: &Config) -> Result<String, RenderError> {
    let istio = &config.istio;
    render::template(
        "istio-operator.yaml",
        minijinja::context! {
            version => config.versions.istio,
            profile => istio.profile,
            http_node_port => istio.http_node_port,
            https_node_port => istio.https_node_port,
        },
    )
}
