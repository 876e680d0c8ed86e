//! Namespace: creates the application's namespace (`sb-apps`) labelled
//! `istio-injection=enabled`, with the Helm ownership label and annotations
//! (`app.kubernetes.io/managed-by=Helm`, `meta.helm.sh/release-name`,
//! `meta.helm.sh/release-namespace`) so that the release can adopt it.
//! Applied with `kubectl apply` on stdin from `templates/namespace.yaml`.
//! Done when the live namespace carries those labels and annotations.
//! Uninstall deletes the namespace (only with `--delete-namespace`) and, with
//! `--delete-pvc`, the PVCs in it, saying what the NFS provisioner does with
//! their data (`archiveOnDelete` of the StorageClass).

use super::{Action, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::Context;
use crate::host::{cluster, kube};
use crate::render::{self, RenderError};
use crate::state::Fingerprint;

/// The namespace step.
pub struct Namespace;

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    rendered: Some(rendered),
    undo_kept: Some(undo_kept),
    needs: &[StepId::Istio],
    inputs_from: &[StepId::K3s],
    removal: crate::context::Removal::Namespace,
    ..StepInfo::new(StepId::Namespace, "Create the application namespace")
};

impl Step for Namespace {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("manifest", manifest(&context.config)?);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let manifest = manifest(&context.config)?;
        let name = &context.config.cluster.namespace;
        if problem(context)?.is_none() {
            return Ok(vec![Action::check(format!(
                "namespace {name} has sidecar injection and the Helm ownership labels"
            ))]);
        }
        Ok(vec![Action::run_noting(
            kube::apply(&manifest),
            &format!("namespace {name} with istio-injection=enabled and the Helm ownership labels"),
        )])
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        match problem(context)? {
            None => Ok(()),
            Some(problem) => Err(StepError::failed(
                problem,
                "look at `kubectl get namespace -o yaml`, then run `stackinstall install --redo namespace`",
            )),
        }
    }

    /// The PVCs (with `--delete-pvc`), then the namespace and all it holds.
    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let name = &context.config.cluster.namespace;
        let mut actions = undo_kept(context)?;
        if kube::get_json("namespace", name, None)?.is_some() {
            actions.push(Action::run_noting(
                kube::delete("namespace", name, None),
                "and everything in it, PVCs included",
            ));
        }
        Ok(actions)
    }
}

fn rendered(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    Ok(vec![("namespace.yaml".into(), manifest(config)?)])
}

/// With `--delete-pvc`, the namespace's PVCs, and what the NFS
/// provisioner does with their data.
fn undo_kept(context: &Context) -> Result<Vec<Action>, StepError> {
    if !context.uninstall.is_some_and(|scope| scope.pvc) {
        return Ok(Vec::new());
    }
    let namespace = &context.config.cluster.namespace;
    let output = kube::kubectl(["get", "pvc", "-n", namespace, "-o", "name"]).run()?;
    let mut actions: Vec<Action> = output
        .stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("persistentvolumeclaim/"))
        .map(|claim| Action::run(kube::delete("pvc", claim, Some(namespace))))
        .collect();
    if !actions.is_empty() {
        actions.push(Action::check(archive_note(context)?));
    }
    Ok(actions)
}

/// What the NFS provisioner does with the data of a deleted PVC: its
/// StorageClass's `archiveOnDelete` (the chart's default is `true`).
fn archive_note(context: &Context) -> Result<String, StepError> {
    let class = &context.config.nfs.storage_class;
    let export = &context.config.nfs.path;
    let Some(live) = kube::get_json("storageclass", class, None)? else {
        return Ok(format!(
            "there is no StorageClass `{class}`: the PVs' reclaim policy decides what becomes of their data"
        ));
    };
    Ok(match live["parameters"]["archiveOnDelete"].as_str() {
        Some("false") => format!(
            "the PVCs' data: StorageClass `{class}` has archiveOnDelete=false, so the NFS provisioner deletes their directories under `{export}`"
        ),
        _ => format!(
            "the PVCs' data: StorageClass `{class}` archives it (archiveOnDelete, true by default): the NFS provisioner renames each directory to `archived-*` under `{export}`"
        ),
    })
}

/// What is missing from the live namespace, or `None` when it is as wanted.
fn problem(context: &Context) -> Result<Option<String>, StepError> {
    let name = &context.config.cluster.namespace;
    let snapshot = cluster::snapshot()?;
    let Some(live) = snapshot.object("namespace", None, name) else {
        return Ok(Some(format!("namespace `{name}` does not exist")));
    };
    let manifest = manifest(&context.config)?;
    let wanted = kube::manifest_objects(&manifest).map_err(|error| {
        StepError::failed(
            format!("the rendered namespace is not YAML: {error}"),
            "this is a bug in `templates/namespace.yaml`",
        )
    })?;
    let metadata = serde_json::json!({ "metadata": {
        "labels": wanted[0]["metadata"]["labels"],
        "annotations": wanted[0]["metadata"]["annotations"],
    }});
    if kube::has_fields(live, &metadata) {
        Ok(None)
    } else {
        Ok(Some(format!(
            "namespace `{name}` lacks `istio-injection=enabled` or the Helm ownership labels and annotations"
        )))
    }
}

/// The application's namespace with sidecar injection and Helm ownership.
pub fn manifest(config: &Config) -> Result<String, RenderError> {
    render::template(
        "namespace.yaml",
        minijinja::context! { namespace => config.cluster.namespace, release => config.chart.release },
    )
}
