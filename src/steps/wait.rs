//! Wait: polls the application's namespace until every pod is Ready, every
//! Job is Complete (judged by the Job's own condition, not its pods') and
//! every PVC is Bound, showing a live count, for up to
//! `wait.timeout_seconds`. On timeout it names each pod, Job or PVC that is
//! not there yet, why (ImagePullBackOff, CrashLoopBackOff, Pending, a PVC
//! whose StorageClass does not exist, a Job held open by `istio-proxy`...)
//! and what to try; a failed Job stops the wait at once, named with the end
//! of its pod's log.
//!
//! It changes nothing on the host. Done when all of them are; with
//! `[storage] provisioner_in_chart` also when the chart's StorageClass
//! exists. There is nothing to undo.

pub mod claims;
pub mod jobs;
mod report;

use report::progress;
pub use report::{hint, timed_out};

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::config::Config;
use crate::context::Context;
use crate::host::{cluster, kube};
use crate::state::{Fact, Fingerprint};

/// The wait step.
pub struct Wait;

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
        // Ends early on Ctrl-C; the next look's `kubectl` then reports
        // the interruption.
        let _ = crate::host::command::pause(duration);
    }
}

/// What a [`PodState`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    /// A Job (named `job/NAME`): done when Complete.
    Job,
    /// A PersistentVolumeClaim (named `pvc/NAME`): listed only when not Bound.
    Claim,
}

/// One pod, Job or PVC and, when it is not done, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// `None` when Ready (a pod) or Complete (a Job).
    pub problem: Option<String>,
    pub kind: Kind,
    /// A Job that failed: waiting longer cannot help.
    pub failed: bool,
}

/// The `items` of a `kubectl get ... -o json` list.
fn items(list: &Value) -> &[Value] {
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The pods of the namespace as `kubectl get pods -o json` lists them,
/// without the pods of Jobs (judged through their Job).
pub fn pod_states(list: &Value) -> Vec<PodState> {
    items(list)
        .iter()
        .filter(|pod| pod["status"]["phase"] != "Succeeded" && jobs::owner(pod).is_none())
        .map(|pod| PodState {
            name: pod["metadata"]["name"].as_str().unwrap_or("?").to_string(),
            problem: problem(pod),
            kind: Kind::Pod,
            failed: false,
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

/// The end of `pod`'s log, redacted; what went wrong when it cannot be read.
fn log_tail(namespace: &str, pod: &str) -> String {
    let command = kube::kubectl(["logs", "-n", namespace, pod, "--tail=20"]);
    let text = match command.run_unchecked() {
        Ok(output) if output.success() => output.stdout,
        Ok(output) => format!("(no log: {})", output.stderr.trim()),
        Err(error) => format!("(no log: {error})"),
    };
    crate::secret::redact(text.trim_end())
}

/// The pods, Jobs and PVCs now, in one `kubectl get` (the wait's poll:
/// the cluster changes by itself meanwhile).
fn poll(config: &Config) -> Result<Vec<PodState>, StepError> {
    let namespace = &config.cluster.namespace;
    let kinds = [
        ("pods", "Pod"),
        ("jobs", "Job"),
        ("pvc", "PersistentVolumeClaim"),
    ];
    // The run's snapshot is older than this read.
    cluster::forget();
    let [pods, jobs, claims] = kube::list_kinds(kinds, namespace)?;
    let class_exists = |class: &str| Ok(kube::get_json("storageclass", class, None)?.is_some());
    states(namespace, [pods, jobs, claims], class_exists)
}

/// The pods, Jobs and PVCs as the run's snapshot of the cluster has them
/// (a look or a verify).
fn seen(config: &Config) -> Result<Vec<PodState>, StepError> {
    let namespace = &config.cluster.namespace;
    let snapshot = cluster::snapshot()?;
    let lists = ["Pod", "Job", "PersistentVolumeClaim"].map(|kind| snapshot.list(kind, namespace));
    let class_exists = |class: &str| Ok(snapshot.object("storageclass", None, class).is_some());
    states(namespace, lists, class_exists)
}

fn states(
    namespace: &str,
    [pods, jobs, claims]: [Value; 3],
    class_exists: impl Fn(&str) -> Result<bool, StepError>,
) -> Result<Vec<PodState>, StepError> {
    let mut states = pod_states(&pods);
    states.extend(jobs::job_states(&jobs, &pods, |pod| {
        log_tail(namespace, pod)
    }));
    states.extend(claims::claim_states(&claims, class_exists)?);
    Ok(states)
}

fn all_ready(pods: &[PodState]) -> bool {
    !pods.is_empty() && pods.iter().all(|pod| pod.problem.is_none())
}

/// Polls with `look` every `interval` until all pods are Ready (and Jobs
/// Complete), a Job failed, or `timeout` passed on `clock`; reports the
/// progress through `status`. Returns the last states seen and whether
/// they were all done.
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
        status(&progress(&pods, "ready"));
        if all_ready(&pods) {
            return Ok((pods, true));
        }
        if clock.now() >= deadline || pods.iter().any(|pod| pod.failed) {
            return Ok((pods, false));
        }
        clock.sleep(
            interval
                .min(deadline.saturating_duration_since(clock.now()))
                .max(Duration::from_millis(1)),
        );
    }
}

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    needs: &[StepId::Gateway],
    inputs_from: &[StepId::Release],
    ..StepInfo::new(StepId::Wait, "Wait for the application's pods to be Ready")
};

impl Step for Wait {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("namespace", &context.config.cluster.namespace);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        // The wait's first poll: the pods now, not as an earlier step saw them.
        let pods = poll(&context.config)?;
        let good = context.facts().release.good_revision;
        // A cluster without Helm's release (`--only wait`) has nothing to
        // roll back: the wait does not need it.
        let current = deployed_revision(context).unwrap_or(None);
        if all_ready(&pods) {
            return Ok(match current.filter(|current| Some(*current) != good) {
                Some(current) => vec![Action::record(Fact::GoodRevision(current))],
                None => Vec::new(),
            });
        }
        let condition = format!(
            "the pods in `{}` are Ready and its Jobs Complete (now {})",
            context.config.cluster.namespace,
            progress(&pods, "ready")
        );
        let limit = Duration::from_secs(context.config.wait.timeout_seconds);
        Ok(Action::change(WaitOrRollBack {
            wait: crate::action::WaitUntil {
                condition,
                limit,
                wait: wait_for_pods,
            },
            current,
            rollback: good.filter(|good| current.is_some_and(|current| current != *good)),
        })
        .into_iter()
        .collect())
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        if context.config.storage.provisioner_in_chart {
            super::storage::check_chart_class(context)?;
        }
        let pods = seen(&context.config)?;
        if all_ready(&pods) {
            return Ok(());
        }
        Err(StepError::failed(
            format!(
                "{} in `{}`",
                progress(&pods, "are Ready"),
                context.config.cluster.namespace
            ),
            format!("`kubectl get pods -n {}`", context.config.cluster.namespace),
        ))
    }
}

/// Waits until every pod is Ready and every Job Complete; on timeout the
/// error names what is not there and why.
fn wait_for_pods(context: &Context, timeout: Duration) -> Result<(), StepError> {
    // Pods may carry the passwords in their environment: loading the
    // credentials registers them, so the logged pod lists are redacted.
    let _ = context.credentials();
    let config = &context.config;
    let interval = Duration::from_millis(config.wait.poll_milliseconds.max(1));
    let (pods, ready) = wait_for(
        || poll(config),
        &SystemClock,
        timeout,
        interval,
        |s| context.ui.status(s),
    )?;
    if !ready {
        let error = timed_out(&pods, config);
        return Err(match context.explain_timeout {
            Some(explain) => explain(error, context),
            None => error,
        });
    }
    Ok(())
}

/// The revision of the application's release Helm has deployed now.
fn deployed_revision(context: &Context) -> Result<Option<u64>, StepError> {
    let config = &context.config;
    let revisions = kube::history(&config.chart.release, &config.cluster.namespace)?;
    Ok((revisions.iter().rev())
        .find(|revision| revision.status == "deployed")
        .map(|revision| revision.revision))
}

/// The wait for the application; once it passes, the deployed revision is
/// recorded as good; when it times out on a revision after a good one,
/// the release is rolled back to that one (`helm rollback`) and the error
/// says so.
struct WaitOrRollBack {
    wait: crate::action::WaitUntil,
    current: Option<u64>,
    rollback: Option<u64>,
}

impl Change for WaitOrRollBack {
    fn kind(&self) -> ActionKind {
        ActionKind::Wait
    }

    fn lines(&self) -> Vec<String> {
        let mut lines = self.wait.lines();
        if let (Some(good), Some(current)) = (self.rollback, self.current) {
            lines.push(format!(
                "if it times out, roll the release back from revision {current} to revision {good}, the last one whose pods came Ready"
            ));
        }
        lines
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        match (self.wait.wait)(context, self.wait.limit) {
            Ok(()) => {
                if let Some(current) = self.current {
                    context.record(&Fact::GoodRevision(current))?;
                }
                Ok(false)
            }
            Err(error) => match self.rollback {
                None => Err(error),
                Some(good) => Err(roll_back(context, good, error)),
            },
        }
    }
}

/// Rolls the release back to `good` after `error`; the error then says so
/// (or that the rollback failed too).
fn roll_back(context: &Context, good: u64, error: StepError) -> StepError {
    let config = &context.config;
    let revision = good.to_string();
    let rolled = kube::helm([
        "rollback",
        &config.chart.release,
        &revision,
        "--namespace",
        &config.cluster.namespace,
        "--wait",
        "--timeout",
        "10m0s",
    ])
    .timeout(Duration::from_secs(660))
    .run();
    let outcome = match rolled {
        Ok(_) => {
            context.ui.warn(&format!(
                "the release `{}` did not come Ready: rolled back to revision {good}, the last one whose pods came Ready",
                config.chart.release
            ));
            format!(
                "the release was rolled back to revision {good}, the last one whose pods came Ready"
            )
        }
        Err(rollback) => {
            format!("rolling the release back to revision {good} failed too: {rollback}")
        }
    };
    StepError::failed(
        format!("{error}; {outcome}"),
        error.hint().unwrap_or_else(|| {
            format!(
                "`helm history {} -n {}`",
                config.chart.release, config.cluster.namespace
            )
        }),
    )
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
            kind: Kind::Pod,
            failed: false,
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
    fn a_failed_job_stops_the_wait_at_once() {
        let clock = FakeClock {
            start: Instant::now(),
            elapsed: Cell::new(Duration::ZERO),
        };
        let failed = PodState {
            name: "job/migrate".into(),
            problem: Some("Failed (BackoffLimitExceeded)".into()),
            kind: Kind::Job,
            failed: true,
        };
        let look = || Ok(vec![pod("a", None), failed.clone()]);
        let (states, ready) = wait_for(
            look,
            &clock,
            Duration::from_secs(600),
            Duration::from_secs(5),
            |_| {},
        )
        .unwrap();
        assert!(!ready);
        assert_eq!(
            clock.elapsed.get(),
            Duration::ZERO,
            "no waiting for a failed Job"
        );
        let error = timed_out(&states, &config()).to_string();
        assert!(
            error.starts_with("job/migrate in `sb-apps` failed"),
            "{error}"
        );
    }

    fn config() -> Config {
        Config::load(&crate::config::Sources::default()).unwrap()
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
