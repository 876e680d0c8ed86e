//! What the fake cluster computes when it is read, as its controllers
//! would have made it, for objects that carry no status of their own (those
//! a test or a fixture put there with a status keep it):
//! - a PersistentVolumeClaim is Bound when its StorageClass exists, else
//!   Pending for ever (no provisioner makes a volume for it);
//! - a Job runs one pod `NAME-fake0` whose container exits with the Job's
//!   annotation `fake.stackinstall/exit-code` (0 by default) and logs
//!   `fake.stackinstall/log`. In a namespace with sidecar injection,
//!   `istio-proxy` is a native sidecar when istiod's environment has
//!   `ENABLE_NATIVE_SIDECARS=true` (the pod ends, the Job is Complete or
//!   Failed), else an ordinary container that keeps the pod Running and
//!   the Job active for ever;
//! - the application's pods (`state/pods.json`, what its Deployments
//!   would run, in whatever namespace is asked) are Pending, unschedulable,
//!   while a PVC they mount is not Bound, as the scheduler leaves them;
//! - without Node objects, there is one Ready node `node1`; a Node a K3s
//!   registered is Ready while its host's K3s runs (`members.rs`).
//!
//! The API answers while K3s's unit is active.

use serde_json::{Value, json};

use super::systemctl::Units;
use crate::Fake;
use crate::store::{Resource, Store};

/// The annotation of a Job giving its pod's exit code.
pub const EXIT_CODE: &str = "fake.stackinstall/exit-code";
/// The annotation of a Job giving its pod's log.
pub const LOG: &str = "fake.stackinstall/log";
/// The application's pods.
pub const PODS: &str = "pods.json";

/// The namespace of the application's pods that name none, when every
/// namespace is listed: the profile's (`[cluster] namespace`).
pub const APPLICATION_NAMESPACE: &str = "sb-apps";

/// The cluster of the world `fake` runs in.
pub struct Cluster<'a> {
    fake: &'a Fake,
    pub store: Store,
}

fn resource(kind: &str) -> Resource {
    Resource::of_kind(kind).expect("a kind of the table")
}

impl<'a> Cluster<'a> {
    pub fn new(fake: &'a Fake) -> Self {
        Self {
            fake,
            store: Store::new(&super::members::cluster_dir(fake)),
        }
    }

    /// Whether the API server answers: K3s runs.
    pub fn up(&self) -> bool {
        Units::load(self.fake).active(self.fake, "k3s")
    }

    /// The objects of `resource` in `namespace` (every namespace: `None`),
    /// as the API would list them.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        let stored = self.store.list(resource, namespace);
        match resource.kind {
            "PersistentVolumeClaim" => stored.into_iter().map(|c| self.claim(c)).collect(),
            "Job" => stored.into_iter().map(|job| self.job_run(job).0).collect(),
            "Pod" => self.pods(stored, namespace),
            "Node" if stored.is_empty() => vec![node()],
            "Node" => stored
                .into_iter()
                .map(|node| super::members::with_readiness(node, self.store.state_dir()))
                .collect(),
            _ => stored,
        }
    }

    /// One object as the API would give it, or `None`.
    pub fn get(&self, resource: Resource, namespace: Option<&str>, name: &str) -> Option<Value> {
        let namespace = namespace.or(Some("default"));
        match resource.kind {
            "Pod" | "Node" => self
                .list(resource, namespace)
                .into_iter()
                .find(|object| object["metadata"]["name"] == name),
            "PersistentVolumeClaim" => self
                .store
                .get(resource, namespace, name)
                .map(|c| self.claim(c)),
            "Job" => self
                .store
                .get(resource, namespace, name)
                .map(|job| self.job_run(job).0),
            _ => self.store.get(resource, namespace, name),
        }
    }

    fn claim(&self, mut claim: Value) -> Value {
        if claim.get("status").is_some() {
            return claim;
        }
        let bound = claim["spec"]["storageClassName"]
            .as_str()
            .is_some_and(|class| {
                (self.store)
                    .get(resource("StorageClass"), None, class)
                    .is_some()
            });
        claim["status"] = json!({ "phase": if bound { "Bound" } else { "Pending" } });
        claim
    }

    fn bound(&self, namespace: &str, claim: &str) -> bool {
        (self.store)
            .get(resource("PersistentVolumeClaim"), Some(namespace), claim)
            .map(|c| self.claim(c))
            .is_some_and(|c| c["status"]["phase"] == "Bound")
    }

    fn injected(&self, namespace: &str) -> bool {
        (self.store)
            .get(resource("Namespace"), None, namespace)
            .is_some_and(|ns| ns["metadata"]["labels"]["istio-injection"] == "enabled")
    }

    fn native_sidecars(&self) -> bool {
        let istiod = (self.store).get(resource("Deployment"), Some("istio-system"), "istiod");
        let containers = istiod
            .as_ref()
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .cloned()
            })
            .unwrap_or_default();
        containers.iter().any(|container| {
            (container["env"].as_array().into_iter().flatten())
                .any(|var| var["name"] == "ENABLE_NATIVE_SIDECARS" && var["value"] == "true")
        })
    }

    /// The Job with its status, and its pod (`None` for a Job that came
    /// with a status of its own).
    fn job_run(&self, mut job: Value) -> (Value, Option<Value>) {
        if job.get("status").is_some() {
            return (job, None);
        }
        let name = job["metadata"]["name"].as_str().unwrap_or("").to_string();
        let namespace = job["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let code: i64 = job["metadata"]["annotations"][EXIT_CODE]
            .as_str()
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let injected = self.injected(&namespace);
        let finished = !injected || self.native_sidecars();
        let reason = if code == 0 { "Completed" } else { "Error" };
        let app = json!({ "name": name, "state": { "terminated": { "exitCode": code, "reason": reason } } });
        let mut status = json!({ "containerStatuses": [app] });
        if injected && finished {
            status["initContainerStatuses"] = json!([{ "name": "istio-proxy",
                "state": { "terminated": { "exitCode": 0, "reason": "Completed" } } }]);
        } else if injected {
            status["containerStatuses"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "name": "istio-proxy", "state": { "running": {} } }));
        }
        status["phase"] = json!(match (finished, code == 0) {
            (false, _) => "Running",
            (true, true) => "Succeeded",
            (true, false) => "Failed",
        });
        status["conditions"] = json!([{ "type": "Ready", "status": "False" }]);
        let pod = json!({
            "kind": "Pod",
            "metadata": {
                "name": format!("{name}-fake0"), "namespace": namespace,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": { "job-name": name },
                "ownerReferences": [{ "kind": "Job", "name": name }],
            },
            "status": status,
        });
        job["status"] = match (finished, code == 0) {
            (false, _) => json!({ "active": 1 }),
            (true, true) => {
                json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True" }] })
            }
            (true, false) => {
                json!({ "failed": 1, "conditions": [{ "type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" }] })
            }
        };
        (job, Some(pod))
    }

    /// The pods: stored ones, the application's, and those of the Jobs.
    fn pods(&self, stored: Vec<Value>, namespace: Option<&str>) -> Vec<Value> {
        let mut pods = stored;
        if !self.pods_hidden() {
            pods.extend(self.application_pods(namespace));
        }
        let jobs = self.store.list(resource("Job"), namespace);
        pods.extend(jobs.into_iter().filter_map(|job| self.job_run(job).1));
        pods
    }

    /// Whether this listing of pods is one of the first that see none.
    fn pods_hidden(&self) -> bool {
        let hidden = self.fake.config.pods_hidden_listings;
        if hidden == 0 {
            return false;
        }
        let counter = self.fake.state.join("pod-listings");
        let seen: u32 = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let _ = std::fs::write(&counter, (seen + 1).to_string());
        seen < hidden
    }

    /// The application's pods (`state/pods.json`), in the namespace a pod
    /// names, else the one listed (else, listing every namespace, the
    /// application's: [`APPLICATION_NAMESPACE`]).
    fn application_pods(&self, listed_in: Option<&str>) -> Vec<Value> {
        let text = std::fs::read_to_string(self.fake.state.join(PODS)).unwrap_or_default();
        let listed: Value = serde_json::from_str(&text).unwrap_or(json!({ "items": [] }));
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        items
            .into_iter()
            .filter_map(|pod| {
                let own = pod["metadata"]["namespace"].as_str().map(str::to_string);
                let namespace = match (own, listed_in) {
                    (Some(own), Some(asked)) if own != asked => return None,
                    (Some(own), _) => own,
                    (None, Some(asked)) => asked.to_string(),
                    (None, None) => APPLICATION_NAMESPACE.to_string(),
                };
                Some((pod, namespace))
            })
            .map(|(mut pod, namespace)| {
                let namespace = namespace.as_str();
                pod["kind"] = json!("Pod");
                pod["metadata"]["namespace"] = json!(namespace);
                let unbound = (pod["spec"]["volumes"].as_array().into_iter().flatten())
                    .filter_map(|volume| volume["persistentVolumeClaim"]["claimName"].as_str())
                    .any(|claim| !self.bound(namespace, claim));
                if unbound {
                    let message = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.";
                    pod["status"] = json!({ "phase": "Pending", "conditions": [
                        { "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message }] });
                }
                pod
            })
            .collect()
    }

    /// The log of the pod `name`: a Job's pod logs its annotation, another
    /// pod its file `state/logs/NAME.txt`; `None` without a pod.
    pub fn log(&self, namespace: &str, name: &str) -> Option<Option<String>> {
        let pod = self.get(resource("Pod"), Some(namespace), name)?;
        let owner = &pod["metadata"]["ownerReferences"][0];
        if owner["kind"] == "Job" && name.ends_with("-fake0") {
            let job =
                (self.store).get(resource("Job"), Some(namespace), owner["name"].as_str()?)?;
            return Some(Some(
                job["metadata"]["annotations"][LOG]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
                    + "\n",
            ));
        }
        let file = self.fake.state.join("logs").join(format!("{name}.txt"));
        Some(std::fs::read_to_string(file).ok())
    }
}

fn node() -> Value {
    json!({ "kind": "Node", "apiVersion": "v1", "metadata": { "name": "node1" },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }] } })
}
