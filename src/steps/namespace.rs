//! Namespace: creates the application's namespace (`sb-apps`) labelled
//! `istio-injection=enabled`, with the Helm ownership label and annotations
//! (`app.kubernetes.io/managed-by=Helm`, `meta.helm.sh/release-name`,
//! `meta.helm.sh/release-namespace`) so that the release can adopt it.
//! Applied with `kubectl apply` on stdin from `templates/namespace.yaml`.
//! Done when the live namespace carries those labels and annotations.
//! Uninstall deletes the namespace (only with `--delete-namespace`).

use super::{Action, Step, StepError};
use crate::context::Context;
use crate::host::kube;
use crate::render;
use crate::state::Fingerprint;

/// The namespace step.
pub struct Namespace;

impl Step for Namespace {
    fn id(&self) -> &'static str {
        "namespace"
    }

    fn title(&self) -> &'static str {
        "Create the application namespace"
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("manifest", render::namespace(&context.config)?);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let manifest = render::namespace(&context.config)?;
        let name = &context.config.cluster.namespace;
        if problem(context)?.is_none() {
            return Ok(vec![Action::check(format!(
                "namespace {name} has sidecar injection and the Helm ownership labels"
            ))]);
        }
        let mut apply = Action::run(kube::apply(&manifest));
        apply.detail = format!(
            "{} (namespace {name} with istio-injection=enabled and the Helm ownership labels)",
            apply.detail
        );
        Ok(vec![apply])
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

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        Ok(vec![Action::run(kube::delete(
            "namespace",
            &context.config.cluster.namespace,
            None,
        ))])
    }
}

/// What is missing from the live namespace, or `None` when it is as wanted.
fn problem(context: &Context) -> Result<Option<String>, StepError> {
    let name = &context.config.cluster.namespace;
    let Some(live) = kube::get_json("namespace", name, None)? else {
        return Ok(Some(format!("namespace `{name}` does not exist")));
    };
    let manifest = render::namespace(&context.config)?;
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
    if kube::has_fields(&live, &metadata) {
        Ok(None)
    } else {
        Ok(Some(format!(
            "namespace `{name}` lacks `istio-injection=enabled` or the Helm ownership labels and annotations"
        )))
    }
}
