//! What the wait tells the operator: the live progress line, and for each
//! pod, Job or PVC that is not done, why and what to try.

use super::{Kind, PodState};
use crate::config::Config;
use crate::steps::StepError;

/// What to try for `state`, which is not Ready (or Complete, or Bound).
pub fn hint(state: &PodState, config: &Config) -> String {
    let (namespace, secret) = (&config.cluster.namespace, &config.registry.secret);
    let (pod, problem) = (&state.name, state.problem.as_deref().unwrap_or_default());
    let job = pod.trim_start_matches("job/");
    match state.kind {
        Kind::Claim if problem.contains("does not exist") && config.storage.provisioner_in_chart => {
            "the application chart brings the provisioner (`[storage] provisioner_in_chart`): check its provisioner values, or set that to false to have the `storage` step install one".into()
        }
        Kind::Claim if problem.contains("does not exist") => {
            "the StorageClass comes from the `storage` step: `sudo stackinstall install --redo storage`".into()
        }
        Kind::Claim => format!("`kubectl describe -n {namespace} {pod}` and the provisioner's log"),
        Kind::Job if state.failed => format!(
            "`kubectl logs -n {namespace} {pod}` for its whole log, `kubectl describe job -n {namespace} {job}`"
        ),
        Kind::Job if problem.contains("istio-proxy") => {
            "install Istio with native sidecars (`ENABLE_NATIVE_SIDECARS`): `sudo stackinstall install --redo istio`".into()
        }
        Kind::Job => format!("`kubectl describe job -n {namespace} {job}`"),
        Kind::Pod if problem.contains("ImagePull") || problem.contains("ErrImage") => format!(
            "check the pull secret (`kubectl get secret {secret} -n {namespace}`) and renew it: `sudo stackinstall ecr-refresh`"
        ),
        Kind::Pod
            if problem.contains("CrashLoopBackOff")
                || problem.contains("Error") && !problem.contains("Config") =>
        {
            format!("see why it stops: `kubectl logs -n {namespace} {pod} --previous`")
        }
        Kind::Pod if problem.starts_with("Pending") => format!(
            "`kubectl describe pod -n {namespace} {pod}`: not enough CPU or memory, or a volume that cannot bind (StorageClass `{}`)",
            config.nfs.storage_class
        ),
        Kind::Pod => format!("`kubectl describe pod -n {namespace} {pod}`"),
    }
}

fn count(states: &[PodState], kind: Kind) -> (usize, usize) {
    let of_kind = || states.iter().filter(move |state| state.kind == kind);
    (
        of_kind().filter(|state| state.problem.is_none()).count(),
        of_kind().count(),
    )
}

/// `ready/total pods ready`, with the Jobs and unbound PVCs when there are.
pub(super) fn progress(states: &[PodState], ready_word: &str) -> String {
    let (ready, total) = count(states, Kind::Pod);
    let mut text = format!("{ready}/{total} pods {ready_word}");
    let (complete, jobs) = count(states, Kind::Job);
    if jobs > 0 {
        text.push_str(&format!(", {complete}/{jobs} Jobs complete"));
    }
    let (_, claims) = count(states, Kind::Claim);
    if claims > 0 {
        text.push_str(&format!(", {claims} PVCs not bound"));
    }
    text
}

/// The error of a wait that ran out of time or met a failed Job.
pub fn timed_out(pods: &[PodState], config: &Config) -> StepError {
    let namespace = &config.cluster.namespace;
    let failed: Vec<&str> = pods
        .iter()
        .filter(|pod| pod.failed)
        .map(|pod| pod.name.as_str())
        .collect();
    let mut message = match failed.as_slice() {
        [] => format!(
            "{} in `{namespace}` after {}s",
            progress(pods, "are Ready"),
            config.wait.timeout_seconds
        ),
        jobs => format!("{} in `{namespace}` failed", jobs.join(", ")),
    };
    if pods.iter().all(|pod| pod.kind == Kind::Claim) {
        message.push_str(&format!(
            "; there are no pods at all (did the release create any? `helm list -n {namespace}`)"
        ));
    }
    for pod in pods {
        if let Some(problem) = &pod.problem {
            message.push_str(&format!(
                "\n  {}: {problem}\n    -> {}",
                pod.name,
                hint(pod, config)
            ));
        }
    }
    StepError::failed(
        message,
        format!(
            "fix what the pods above need, then run the same install again to keep waiting; `kubectl get pods -n {namespace}` shows them"
        ),
    )
}
