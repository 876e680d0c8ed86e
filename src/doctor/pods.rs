//! The application's pods and volumes: Pending PVCs and a missing
//! StorageClass, image pull errors (`no basic auth credentials` is the
//! registry token), CrashLoopBackOff with the last lines of the log, and
//! Jobs whose pod stays up because of its sidecar.

use std::time::Duration;

use serde_json::Value;

use super::snapshot::{SIDECAR, Scoped, name};
use super::{Checked, Finding, Found};
use crate::host::kube;
use crate::secret::redact;

/// How many log lines a CrashLoopBackOff finding shows.
const LOG_LINES: &str = "10";

/// Whether the pod runs an Istio sidecar (a container or a native sidecar).
pub fn has_sidecar(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().any(|key| {
        pod["spec"][*key]
            .as_array()
            .is_some_and(|list| list.iter().any(|c| c["name"] == SIDECAR))
    })
}

/// Whether the pod has ended (a finished Job's pod).
pub fn has_ended(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The workload that owns the pod, as `kind/name` (a ReplicaSet's pod is
/// named by its Deployment), or the pod itself.
pub fn workload(pod: &Value) -> String {
    let owner = &pod["metadata"]["ownerReferences"][0];
    match (owner["kind"].as_str(), owner["name"].as_str()) {
        (Some("ReplicaSet"), Some(replica_set)) => {
            let deployment = replica_set.rsplit_once('-').map_or(replica_set, |(d, _)| d);
            format!("deployment/{deployment}")
        }
        (Some(kind), Some(owner)) => format!("{}/{owner}", kind.to_ascii_lowercase()),
        _ => format!("pod/{}", name(pod)),
    }
}

/// `ready/total` containers, as `kubectl get pods` shows them.
pub fn ready_count(pod: &Value) -> String {
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    format!("{ready}/{total}")
}

/// StorageClass present, no PVC Pending.
pub fn storage(scoped: &Scoped) -> Checked {
    let snapshot = &scoped.snapshot;
    let wanted = &scoped.inputs.config.nfs.storage_class;
    let class_exists = |class: &str| {
        snapshot
            .items("storageclasses")
            .iter()
            .any(|c| name(c) == class)
    };
    let mut findings = Vec::new();
    if snapshot.listed("storageclasses") && !class_exists(wanted) {
        findings.push(Finding::error(
            "storage-class-missing",
            format!("StorageClass `{wanted}` does not exist, so the application's volumes cannot bind"),
            format!("install the NFS provisioner that makes it: `sudo stackinstall install` (its `storage` step), then `kubectl get storageclass {wanted}`"),
        ));
    }
    for claim in snapshot.in_namespace("persistentvolumeclaims", scoped.namespace()) {
        if claim["status"]["phase"] != "Pending" {
            continue;
        }
        let class = claim["spec"]["storageClassName"].as_str().unwrap_or("");
        let why = if class.is_empty() {
            "it names no StorageClass and the cluster has no default".to_string()
        } else if !class_exists(class) {
            format!("its StorageClass `{class}` does not exist")
        } else {
            format!("the provisioner of `{class}` has not bound it")
        };
        findings.push(
            Finding::error(
                "pvc-pending",
                format!("PersistentVolumeClaim `{}/{}` is Pending: {why}", scoped.namespace(), name(claim)),
                format!("`kubectl describe pvc -n {} {}` shows the provisioner's events; `kubectl get storageclass`", scoped.namespace(), name(claim)),
            )
            .with(format!("storageClassName: {class:?}, phase Pending")),
        );
    }
    Ok(findings.into())
}

/// Pull errors, crash loops and Jobs held by a sidecar.
pub fn pods(scoped: &Scoped) -> Checked {
    let namespace = scoped.namespace();
    let mut found = Found::default();
    for pod in scoped.snapshot.in_namespace("pods", namespace) {
        let statuses = pod["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for status in &statuses {
            let waiting = &status["state"]["waiting"];
            match waiting["reason"].as_str() {
                Some("ErrImagePull" | "ImagePullBackOff") => {
                    found.findings.push(pull_error(scoped, pod, status));
                }
                Some("CrashLoopBackOff") => {
                    found
                        .findings
                        .push(crash_loop(scoped, pod, status, scoped.inputs.limit));
                }
                _ => {}
            }
        }
        if let Some(finding) = job_held(namespace, pod, &statuses) {
            found.findings.push(finding);
        }
    }
    Ok(found)
}

fn pull_error(scoped: &Scoped, pod: &Value, status: &Value) -> Finding {
    let config = &scoped.inputs.config;
    let namespace = scoped.namespace();
    let message = status["state"]["waiting"]["message"].as_str().unwrap_or("");
    let evidence = format!(
        "pod {namespace}/{} container {} image {}: {} {}",
        name(pod),
        status["name"].as_str().unwrap_or("?"),
        status["image"].as_str().unwrap_or("?"),
        status["state"]["waiting"]["reason"].as_str().unwrap_or("?"),
        redact(message)
    );
    if message.contains("no basic auth credentials")
        || message.contains("authorization token has expired")
    {
        return Finding::error(
            "registry-token",
            format!("pod `{}` cannot pull its image: the registry refuses the pull Secret `{}` (missing or expired ECR token)", name(pod), config.registry.secret),
            format!("renew the token: `sudo stackinstall ecr-refresh`, then `kubectl delete pod -n {namespace} {}` to pull again", name(pod)),
        )
        .with(evidence);
    }
    Finding::error(
        "image-pull",
        format!("pod `{}` cannot pull its image", name(pod)),
        format!("check the image name and tag in the release's values and the registry (`kubectl describe pod -n {namespace} {}`)", name(pod)),
    )
    .with(evidence)
}

fn crash_loop(scoped: &Scoped, pod: &Value, status: &Value, limit: Duration) -> Finding {
    let namespace = scoped.namespace();
    let container = status["name"].as_str().unwrap_or("?");
    let mut finding = Finding::error(
        "crash-loop",
        format!("container `{container}` of pod `{}` keeps stopping (CrashLoopBackOff)", name(pod)),
        format!("read why it stops: `kubectl logs -n {namespace} {} -c {container} --previous`; the release's values (database addresses, passwords) are the usual cause", name(pod)),
    )
    .with(format!(
        "restartCount {}, last exit code {}",
        status["restartCount"], status["lastState"]["terminated"]["exitCode"]
    ));
    let logs = kube::kubectl([
        "logs",
        "-n",
        namespace,
        name(pod),
        "-c",
        container,
        "--previous",
        "--tail",
        LOG_LINES,
    ])
    .timeout(limit)
    .run();
    match logs {
        Ok(output) => finding.evidence.extend(
            output
                .stdout
                .lines()
                .map(|line| format!("log: {}", redact(line))),
        ),
        Err(error) => finding
            .evidence
            .push(format!("the log could not be read: {error}")),
    }
    finding
}

/// A Job's pod whose own containers ended while the sidecar still runs.
fn job_held(namespace: &str, pod: &Value, statuses: &[Value]) -> Option<Finding> {
    if !workload(pod).starts_with("job/") || has_ended(pod) || !has_sidecar(pod) {
        return None;
    }
    let running = |s: &&Value| !s["state"]["running"].is_null();
    let sidecar_runs = statuses
        .iter()
        .filter(running)
        .any(|s| s["name"] == SIDECAR);
    let work: Vec<&Value> = statuses.iter().filter(|s| s["name"] != SIDECAR).collect();
    let work_done = !work.is_empty() && work.iter().all(|s| !s["state"]["terminated"].is_null());
    (sidecar_runs && work_done).then(|| {
        let job = workload(pod);
        Finding::error(
            "job-held-by-sidecar",
            format!("{job}'s work has ended but its pod `{}` stays up: the `{SIDECAR}` sidecar is a classic container that keeps running, so the Job never completes", name(pod)),
            format!("the install has istiod inject native sidecars (`ENABLE_NATIVE_SIDECARS`), which stop with the Job's own containers: put them back with `sudo stackinstall install --redo istio`, then `kubectl delete {job} -n {namespace}` and `sudo stackinstall install --redo release` so the Job is made again with a native sidecar"),
        )
        .with(format!("pod {namespace}/{}: containers {}", name(pod), statuses.iter().map(|s| format!("{} {}", s["name"].as_str().unwrap_or("?"), state_name(s))).collect::<Vec<_>>().join(", ")))
    })
}

fn state_name(status: &Value) -> &'static str {
    ["running", "waiting", "terminated"]
        .into_iter()
        .find(|state| !status["state"][*state].is_null())
        .unwrap_or("unknown")
}
