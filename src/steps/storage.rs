//! Storage: the StorageClass `nfs-client` the application's PVCs ask for,
//! served from the host's NFS export by nfs-subdir-external-provisioner.
//! When the cluster has no such StorageClass, it downloads the provisioner's
//! Helm chart (pinned by version in `[storage]` and by SHA-256 in
//! `[downloads.pins]`, like every other file that runs as root) to
//! `/var/lib/stackinstall/downloads` (mode 0600, removed once Helm is done)
//! and runs `helm upgrade --install` with the host's address, the export path
//! and `archive_on_delete`. A StorageClass of that name that someone else
//! installed is left as it is.
//!
//! Done when the StorageClass exists and, when the provisioner is ours, its
//! release carries this install's marker and its Deployment is available.
//! With `[storage] provisioner_in_chart` the application chart brings the
//! provisioner: this step installs nothing and `wait` checks the
//! StorageClass after the release. Uninstall (`--delete-infra`) runs
//! `helm uninstall` of our release, which removes the StorageClass too. It
//! comes before `namespace` so that an uninstall deletes the PVCs while the
//! provisioner still runs to archive (or delete) their directories.

use std::time::Duration;

use std::path::PathBuf;

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::Context;
use crate::host::download::{self, DOWNLOADS, ReleaseBinary};
use crate::host::kube::{self, history, recovery};
use crate::host::{self, cluster};
use crate::state::Fingerprint;

/// The storage step.
pub struct Storage;

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    downloads: Some(release_files),
    needs: &[StepId::K3s, StepId::Helm, StepId::Nfs],
    inputs_from: &[StepId::Nfs],
    removal: crate::context::Removal::Infra,
    ..StepInfo::new(
        StepId::Storage,
        "Provide the StorageClass (NFS provisioner)",
    )
};

impl Step for Storage {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("marker", marker(context).unwrap_or_default());
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let (storage, class) = (&context.config.storage, &context.config.nfs.storage_class);
        if storage.provisioner_in_chart {
            return Ok(vec![Action::check(format!(
                "StorageClass `{class}` comes with the application chart (`[storage] provisioner_in_chart`): `wait` checks it after the release"
            ))]);
        }
        let revisions = history(&storage.release, &storage.namespace)?;
        let ours = !revisions.is_empty();
        if !ours && (cluster::snapshot()?.object("storageclass", None, class)).is_some() {
            return Ok(vec![Action::check(format!(
                "StorageClass `{class}` is already in the cluster, not installed by stackinstall: left as it is"
            ))]);
        }
        // A chart file left by a run killed while Helm had it goes.
        let chart = chart_path(context);
        let mut actions: Vec<Action> = host::fs::mode_of(&chart)
            .map(|_| Action::remove(context.host.reached(chart.clone())))
            .into_iter()
            .collect();
        let marker = marker(context)?;
        let current = revisions
            .last()
            .is_some_and(|r| r.status == "deployed" && r.description == marker);
        if current && problem(context)?.is_none() {
            actions.push(Action::check(format!(
                "StorageClass `{class}` exists; the provisioner `{}` in `{}` is available",
                storage.release, storage.namespace
            )));
            return Ok(actions);
        }
        let recovered = recovery(&storage.release, &storage.namespace, &revisions);
        actions.extend(recovered.into_iter().map(Action::run));
        actions.extend(install_action(context)?);
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        if context.config.storage.provisioner_in_chart {
            return Ok(());
        }
        match problem(context)? {
            None => Ok(()),
            Some(problem) => Err(StepError::failed(
                problem,
                format!(
                    "look at `kubectl get storageclass` and `kubectl get pods -n {}`, then run `sudo stackinstall install --redo storage`",
                    context.config.storage.namespace
                ),
            )),
        }
    }

    /// Our provisioner's release (and with it the StorageClass); one that
    /// someone else installed is kept.
    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let storage = &context.config.storage;
        if history(&storage.release, &storage.namespace)?.is_empty() {
            return Ok(Vec::new());
        }
        let uninstall = kube::helm([
            "uninstall",
            "--namespace",
            &storage.namespace,
            "--wait",
            "--",
            &storage.release,
        ]);
        let note = format!(
            "and the StorageClass `{}`; the data under `{}` stays",
            context.config.nfs.storage_class, context.config.nfs.path
        );
        Ok(vec![Action::run_noting(uninstall, &note)])
    }
}

fn release_files(context: &Context) -> Vec<ReleaseBinary> {
    match context.config.storage.provisioner_in_chart {
        true => Vec::new(),
        false => vec![chart(context)],
    }
}

/// The description our release is deployed with: which chart, which values.
fn marker(context: &Context) -> Result<String, StepError> {
    let storage = &context.config.storage;
    let mut fingerprint = Fingerprint::default();
    let pin = chart(context).pin.map(|pin| pin.sha256).unwrap_or_default();
    fingerprint
        .add("version", &storage.version)
        .add("sha256", pin)
        .add("values", values(context)?.map(|(_, value)| value).join(" "));
    Ok(format!("stackinstall {}", &fingerprint.finish()[..16]))
}

/// The chart's values with their flag (none is a secret): text as
/// `--set-string`, escaped, so that no value can add another.
fn values(context: &Context) -> Result<[(&'static str, String); 4], StepError> {
    let config = &context.config;
    Ok([
        (
            "--set-string",
            kube::set_string("nfs.server", &context.host_ip()?),
        ),
        (
            "--set-string",
            kube::set_string("nfs.path", &config.nfs.path),
        ),
        (
            "--set-string",
            kube::set_string("storageClass.name", &config.nfs.storage_class),
        ),
        (
            "--set",
            format!(
                "storageClass.archiveOnDelete={}",
                config.storage.archive_on_delete
            ),
        ),
    ])
}

/// The chart file with its pin (`[downloads.pins]`, key
/// `NAME/VERSION/NAME-VERSION.tgz`).
fn chart(context: &Context) -> ReleaseBinary {
    let storage = &context.config.storage;
    let url = download::url_for(&storage.chart_url, &storage.version);
    let file = url.rsplit('/').next().unwrap_or_default();
    let suffix = format!("-{}.tgz", storage.version);
    let name = file.strip_suffix(&suffix).unwrap_or(&storage.release);
    let key = download::chart_key(name, &storage.version);
    ReleaseBinary {
        pin: context.config.downloads.pin(&key),
        key,
        url,
        sums_url: None,
        member: None,
    }
}

fn chart_path(context: &Context) -> std::path::PathBuf {
    let chart = chart(context);
    context.host.path(DOWNLOADS).join(chart.file_name())
}

/// `helm upgrade --install` of the chart file at `chart`.
fn helm_command(context: &Context, chart: &str) -> Result<host::Command, StepError> {
    let storage = &context.config.storage;
    let timeout = format!("{}s", storage.timeout_seconds);
    let marker = marker(context)?;
    let mut args = vec!["upgrade", "--install", "--namespace", &storage.namespace];
    let values = values(context)?;
    for (flag, value) in &values {
        args.extend([*flag, value.as_str()]);
    }
    args.extend(["--description", &marker, "--wait", "--timeout", &timeout]);
    args.extend(["--", &storage.release, chart]);
    Ok(kube::helm(args).timeout(Duration::from_secs(storage.timeout_seconds + 60)))
}

fn install_action(context: &Context) -> Result<Option<Action>, StepError> {
    let shown = context.shown(&chart_path(context));
    let command = helm_command(context, &shown.display().to_string())?;
    Ok(Action::change(Install {
        chart: chart(context),
        shown,
        command,
    }))
}

/// Downloads and checks the chart, runs Helm with it, removes the file
/// whatever happened. The plan shows the command with the chart's path as
/// the operator knows it.
struct Install {
    chart: ReleaseBinary,
    shown: PathBuf,
    command: host::Command,
}

impl Change for Install {
    fn kind(&self) -> ActionKind {
        ActionKind::Command
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "download {} ({}) to {} (mode 0600, removed afterwards), then {}",
            self.chart.url,
            self.chart.check(),
            self.shown.display(),
            self.command
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let bytes = context.fetch_release(&self.chart)?;
        let path = chart_path(context);
        host::fs::ensure_dir(&context.host.path(DOWNLOADS), 0o700)?;
        host::fs::write_atomic(&path, &bytes, 0o600)?;
        context.ui.status("installing the NFS provisioner");
        let result = helm_command(context, &path.display().to_string())?.run();
        let removed = host::fs::remove_file(&path);
        result?;
        removed?;
        Ok(true)
    }
}

/// What is missing: the StorageClass, or (for our release) an available
/// provisioner Deployment; `None` when both are there.
fn problem(context: &Context) -> Result<Option<String>, StepError> {
    let (storage, class) = (&context.config.storage, &context.config.nfs.storage_class);
    let objects = [
        ("storageclass", class.as_str()),
        ("deployment", storage.release.as_str()),
    ];
    let snapshot = cluster::snapshot()?;
    let [class_found, deployment] = objects.map(|(kind, name)| {
        let namespace = (kind != "storageclass").then_some(storage.namespace.as_str());
        snapshot.object(kind, namespace, name)
    });
    if class_found.is_none() {
        return Ok(Some(format!("there is no StorageClass `{class}`")));
    }
    if history(&storage.release, &storage.namespace)?.is_empty() {
        return Ok(None);
    }
    let available = deployment
        .and_then(|d| d["status"]["availableReplicas"].as_u64())
        .unwrap_or(0);
    Ok((available == 0).then(|| {
        format!(
            "the provisioner Deployment `{}` in `{}` is not available",
            storage.release, storage.namespace
        )
    }))
}

/// For `[storage] provisioner_in_chart`: after the release, the chart's
/// StorageClass must exist.
pub fn check_chart_class(context: &Context) -> Result<(), StepError> {
    let class = &context.config.nfs.storage_class;
    if (cluster::snapshot()?.object("storageclass", None, class)).is_some() {
        return Ok(());
    }
    Err(StepError::failed(
        format!(
            "the application chart installed no StorageClass `{class}` (`[storage] provisioner_in_chart` is set)"
        ),
        "check the chart's provisioner values, or set `[storage] provisioner_in_chart = false` to have stackinstall install nfs-subdir-external-provisioner",
    ))
}
