//! Wait: polls `kubectl get pods` in the application's namespace until
//! every pod is Ready, showing a live `ready/total` count, for up to
//! `wait.timeout_seconds`. On timeout it names each pod that is not Ready,
//! why (ImagePullBackOff, CrashLoopBackOff, Pending...) and what to try.
//!
//! It changes nothing on the host. Done when every pod (finished Job pods
//! aside) is Ready; there is nothing to undo.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Action, ActionKind, Step, StepError};
use crate::config::Config;
use crate::context::Context;
use crate::host::kube;
use crate::state::Fingerprint;

/// The wait step.
pub struct Wait;

const WAIT: &str = "wait-for-pods";

/// Time as the wait sees it, so tests can run a timeout without waiting.
pub trait Clock {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration);
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// One pod and, when it is not Ready, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// `None` when Ready (or finished, for a Job's pod).
    pub problem: Option<String>,
}

/// The pods of the namespace as `kubectl get pods -o json` lists them.
pub fn pod_states(list: &Value) -> Vec<PodState> {
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    items
        .iter()
        .filter(|pod| pod["status"]["phase"] != "Succeeded")
        .map(|pod| PodState {
            name: pod["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            problem: problem(pod),
        })
        .collect()
}

fn problem(pod: &Value) -> Option<String> {
    let status = &pod["status"];
    let conditions = status["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let condition = |kind: &str| conditions.iter().find(|c| c["type"] == kind);
    if condition("Ready").is_some_and(|c| c["status"] == "True") {
        return None;
    }
    let containers = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|key| status[*key].as_array().cloned().unwrap_or_default());
    for container in containers {
        for state in ["waiting", "terminated"] {
            if let Some(reason) = container["state"][state]["reason"]
                .as_str()
                .filter(|r| *r != "Completed")
            {
                return Some(reason.to_string());
            }
        }
    }
    if let Some(unscheduled) = condition("PodScheduled").filter(|c| c["status"] == "False") {
        let why = unscheduled["message"].as_str().unwrap_or("not scheduled");
        return Some(format!("Pending ({why})"));
    }
    let phase = status["phase"].as_str().unwrap_or("Unknown");
    Some(if phase == "Running" {
        "Running, not Ready (readiness probe failing)".into()
    } else {
        phase.to_string()
    })
}

/// What to try for a pod that is not Ready because of `problem`.
pub fn hint(problem: &str, pod: &str, config: &Config) -> String {
    let namespace = &config.cluster.namespace;
    let secret = &config.registry.secret;
    if problem.contains("ImagePull") || problem.contains("ErrImage") {
        format!(
            "check the pull secret (`kubectl get secret {secret} -n {namespace}`) and renew it: `sudo stackinstall ecr-refresh`"
        )
    } else if problem.contains("CrashLoopBackOff")
        || problem.contains("Error") && !problem.contains("Config")
    {
        format!("see why it stops: `kubectl logs -n {namespace} {pod} --previous`")
    } else if problem.starts_with("Pending") {
        format!(
            "`kubectl describe pod -n {namespace} {pod}`: not enough CPU or memory, or a volume that cannot bind (StorageClass `{}`)",
            config.nfs.storage_class
        )
    } else {
        format!("`kubectl describe pod -n {namespace} {pod}`")
    }
}

/// The pods now.
fn poll(config: &Config) -> Result<Vec<PodState>, StepError> {
    // The pod list is long, comes on every poll, and holds the pods'
    // environment: the log gets its size, the operator the ready count.
    let command = kube::kubectl(["get", "pods", "-n", &config.cluster.namespace, "-o", "json"])
        .unlogged_stdout();
    let output = command.run()?;
    let list: Value = serde_json::from_str(&output.stdout).map_err(|error| {
        StepError::failed(
            format!("`{command}` printed something that is not JSON: {error}"),
            "check that `kubectl` reaches the cluster: `kubectl get nodes`",
        )
    })?;
    Ok(pod_states(&list))
}

fn count(pods: &[PodState]) -> (usize, usize) {
    (
        pods.iter().filter(|pod| pod.problem.is_none()).count(),
        pods.len(),
    )
}

fn all_ready(pods: &[PodState]) -> bool {
    !pods.is_empty() && pods.iter().all(|pod| pod.problem.is_none())
}

/// Polls with `look` every `interval` until all pods are Ready or `timeout`
/// passed on `clock`; reports `ready/total` through `status`. Returns the
/// last pods seen and whether they were all Ready.
pub fn wait_for(
    mut look: impl FnMut() -> Result<Vec<PodState>, StepError>,
    clock: &dyn Clock,
    timeout: Duration,
    interval: Duration,
    status: impl Fn(&str),
) -> Result<(Vec<PodState>, bool), StepError> {
    let deadline = clock.now() + timeout;
    loop {
        let pods = look()?;
        let (ready, total) = count(&pods);
        status(&format!("{ready}/{total} pods ready"));
        if all_ready(&pods) {
            return Ok((pods, true));
        }
        if clock.now() >= deadline {
            return Ok((pods, false));
        }
        clock.sleep(
            interval
                .min(deadline.saturating_duration_since(clock.now()))
                .max(Duration::from_millis(1)),
        );
    }
}

/// The error of a wait that ran out of time.
pub fn timed_out(pods: &[PodState], config: &Config) -> StepError {
    let (ready, total) = count(pods);
    let namespace = &config.cluster.namespace;
    let mut message = format!(
        "{ready}/{total} pods in `{namespace}` are Ready after {}s",
        config.wait.timeout_seconds
    );
    if pods.is_empty() {
        message.push_str(&format!(
            "; there are no pods at all (did the release create any? `helm list -n {namespace}`)"
        ));
    }
    for pod in pods {
        if let Some(problem) = &pod.problem {
            message.push_str(&format!(
                "\n  {}: {problem}\n    -> {}",
                pod.name,
                hint(problem, &pod.name, config)
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

impl Step for Wait {
    fn id(&self) -> &'static str {
        "wait"
    }

    fn title(&self) -> &'static str {
        "Wait for the application's pods to be Ready"
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["release"]
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("namespace", &context.config.cluster.namespace);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let pods = poll(&context.config)?;
        if all_ready(&pods) {
            return Ok(Vec::new());
        }
        let (ready, total) = count(&pods);
        Ok(vec![Action::custom(
            ActionKind::Check,
            WAIT,
            format!(
                "wait up to {}s for the pods in `{}` to be Ready (now {ready}/{total})",
                context.config.wait.timeout_seconds, context.config.cluster.namespace
            ),
        )])
    }

    fn apply(&self, context: &mut Context, _actions: Vec<Action>) -> Result<bool, StepError> {
        // Pods may carry the passwords in their environment: loading the
        // credentials registers them, so the logged pod lists are redacted.
        let _ = context.credentials();
        let config = &context.config;
        let timeout = Duration::from_secs(config.wait.timeout_seconds);
        let interval = Duration::from_millis(config.wait.poll_milliseconds.max(1));
        let (pods, ready) = wait_for(
            || poll(config),
            &SystemClock,
            timeout,
            interval,
            |s| context.ui.status(s),
        )?;
        if !ready {
            return Err(crate::doctor::explain_timeout(
                timed_out(&pods, config),
                context,
            ));
        }
        Ok(false)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        let pods = poll(&context.config)?;
        if all_ready(&pods) {
            return Ok(());
        }
        let (ready, total) = count(&pods);
        Err(StepError::failed(
            format!(
                "{ready}/{total} pods in `{}` are Ready",
                context.config.cluster.namespace
            ),
            format!("`kubectl get pods -n {}`", context.config.cluster.namespace),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A clock that only moves when slept on.
    struct FakeClock {
        start: Instant,
        elapsed: Cell<Duration>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.start + self.elapsed.get()
        }

        fn sleep(&self, duration: Duration) {
            self.elapsed.set(self.elapsed.get() + duration);
        }
    }

    fn pod(name: &str, problem: Option<&str>) -> PodState {
        PodState {
            name: name.into(),
            problem: problem.map(Into::into),
        }
    }

    #[test]
    fn times_out_after_the_timeout_on_the_clock_with_a_live_count() {
        let clock = FakeClock {
            start: Instant::now(),
            elapsed: Cell::new(Duration::ZERO),
        };
        let seen = RefCell::new(Vec::new());
        let look = || Ok(vec![pod("a", None), pod("b", Some("ImagePullBackOff"))]);
        let (pods, ready) = wait_for(
            look,
            &clock,
            Duration::from_secs(600),
            Duration::from_secs(5),
            |s| seen.borrow_mut().push(s.to_string()),
        )
        .unwrap();
        assert!(!ready);
        assert_eq!(pods.len(), 2);
        assert_eq!(clock.elapsed.get(), Duration::from_secs(600));
        assert_eq!(
            seen.borrow().len(),
            121,
            "one look every 5 s, and one at the deadline"
        );
        assert_eq!(seen.borrow()[0], "1/2 pods ready");
    }

    #[test]
    fn returns_as_soon_as_every_pod_is_ready() {
        let clock = FakeClock {
            start: Instant::now(),
            elapsed: Cell::new(Duration::ZERO),
        };
        let looks = Cell::new(0);
        let look = || {
            looks.set(looks.get() + 1);
            Ok(vec![pod(
                "a",
                (looks.get() < 3).then_some("ContainerCreating"),
            )])
        };
        let (_, ready) = wait_for(
            look,
            &clock,
            Duration::from_secs(600),
            Duration::from_secs(5),
            |_| {},
        )
        .unwrap();
        assert!(ready);
        assert_eq!(clock.elapsed.get(), Duration::from_secs(10));
    }

    #[test]
    fn reasons_come_from_container_states_and_scheduling() {
        let list = serde_json::json!({ "items": [
            { "metadata": { "name": "crash" }, "status": { "phase": "Running", "containerStatuses": [
                { "state": { "waiting": { "reason": "CrashLoopBackOff" } } }] } },
            { "metadata": { "name": "pending" }, "status": { "phase": "Pending", "conditions": [
                { "type": "PodScheduled", "status": "False", "message": "Insufficient cpu" }] } },
            { "metadata": { "name": "probe" }, "status": { "phase": "Running", "conditions": [
                { "type": "Ready", "status": "False" }] } },
            { "metadata": { "name": "job" }, "status": { "phase": "Succeeded" } },
        ]});
        let problems: Vec<Option<String>> =
            pod_states(&list).into_iter().map(|p| p.problem).collect();
        assert_eq!(
            problems,
            [
                Some("CrashLoopBackOff".into()),
                Some("Pending (Insufficient cpu)".into()),
                Some("Running, not Ready (readiness probe failing)".into()),
            ]
        );
    }
}
