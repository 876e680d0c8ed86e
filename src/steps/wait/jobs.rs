//! The namespace's Jobs, judged by their own condition (`Complete` or
//! `Failed`), never by their pods' readiness: a Job's pod is not Ready when
//! it has done its work. A failed Job is named with the end of its newest
//! pod's log; a Job whose container finished while `istio-proxy` keeps its
//! pod running (a classic sidecar: istiod without native sidecars) is named
//! as such.

use serde_json::Value;

use super::{Kind, PodState, items};

/// The container Istio injects.
const PROXY: &str = "istio-proxy";

/// The name of the Job that owns `pod`, if one does.
pub fn owner(pod: &Value) -> Option<&str> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|owner| owner["kind"] == "Job")
        .and_then(|owner| owner["name"].as_str())
}

/// One state per Job of `jobs` (`kubectl get jobs -o json`); `pods` are the
/// namespace's pods and `log_tail` gives the end of a pod's log.
pub fn job_states(jobs: &Value, pods: &Value, log_tail: impl Fn(&str) -> String) -> Vec<PodState> {
    items(jobs)
        .iter()
        .map(|job| {
            let name = job["metadata"]["name"].as_str().unwrap_or("?");
            let pod = newest_pod(pods, name);
            let (problem, failed) = match finished(job) {
                Some(("Complete", _)) => (None, false),
                Some((_, why)) => (Some(failure(&why, pod, &log_tail)), true),
                None => (Some(unfinished(job, pod)), false),
            };
            PodState {
                name: format!("job/{name}"),
                problem,
                kind: Kind::Job,
                failed,
            }
        })
        .collect()
}

/// `Complete` or `Failed` with its reason and message, when the Job says so.
fn finished(job: &Value) -> Option<(&str, String)> {
    let conditions = job["status"]["conditions"].as_array()?;
    conditions
        .iter()
        .filter(|c| c["status"] == "True")
        .find_map(|condition| {
            let kind = condition["type"].as_str()?;
            let why = [&condition["reason"], &condition["message"]]
                .iter()
                .filter_map(|text| text.as_str())
                .collect::<Vec<_>>()
                .join(": ");
            ["Complete", "Failed"]
                .contains(&kind)
                .then_some((kind, why))
        })
}

/// The newest pod of Job `job`.
fn newest_pod<'a>(pods: &'a Value, job: &str) -> Option<&'a Value> {
    items(pods)
        .iter()
        .filter(|pod| owner(pod) == Some(job))
        .max_by_key(|pod| pod["metadata"]["creationTimestamp"].as_str().unwrap_or(""))
}

fn pod_name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or("?")
}

/// A failed Job, with the end of its newest pod's log.
fn failure(why: &str, pod: Option<&Value>, log_tail: &impl Fn(&str) -> String) -> String {
    let Some(pod) = pod else {
        return format!("Failed ({why}); no pod is left to read a log from");
    };
    let name = pod_name(pod);
    let log: Vec<String> = log_tail(name)
        .lines()
        .map(|line| format!("      | {line}"))
        .collect();
    format!(
        "Failed ({why}); the end of pod {name}'s log:\n{}",
        log.join("\n")
    )
}

/// Why a Job has not finished yet.
fn unfinished(job: &Value, pod: Option<&Value>) -> String {
    let active = job["status"]["active"].as_u64().unwrap_or(0);
    let Some(pod) = pod else {
        return format!("not finished ({active} active, no pod yet)");
    };
    if proxy_outlives_job(pod) {
        return format!(
            "not finished: pod {}'s container has exited but `{PROXY}` keeps the pod running (istiod does not inject native sidecars)",
            pod_name(pod)
        );
    }
    match super::problem(pod) {
        Some(problem) => format!("not finished; pod {}: {problem}", pod_name(pod)),
        None => format!("not finished ({active} active)"),
    }
}

/// Whether every container but `istio-proxy` has terminated while
/// `istio-proxy` still runs as an ordinary container.
fn proxy_outlives_job(pod: &Value) -> bool {
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (proxies, others): (Vec<&Value>, Vec<&Value>) =
        statuses.iter().partition(|status| status["name"] == PROXY);
    !others.is_empty()
        && others
            .iter()
            .all(|status| status["state"]["terminated"].is_object())
        && proxies
            .iter()
            .any(|status| status["state"]["running"].is_object())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(name: &str, condition: Option<(&str, &str)>) -> Value {
        let conditions: Vec<Value> = condition
            .map(|(kind, reason)| json!({ "type": kind, "status": "True", "reason": reason }))
            .into_iter()
            .collect();
        json!({ "metadata": { "name": name }, "status": { "active": 1, "conditions": conditions } })
    }

    fn pod(name: &str, job: &str, statuses: Value) -> Value {
        json!({ "metadata": { "name": name, "creationTimestamp": "2026-01-01T00:00:00Z",
                "ownerReferences": [{ "kind": "Job", "name": job }] },
                "status": { "phase": "Running", "containerStatuses": statuses } })
    }

    #[test]
    fn jobs_are_judged_by_their_condition_and_a_hanging_sidecar_is_named() {
        let jobs = json!({ "items": [
            job("done", Some(("Complete", ""))),
            job("broken", Some(("Failed", "BackoffLimitExceeded"))),
            job("hangs", None),
        ]});
        let exited = json!({ "terminated": { "exitCode": 0 } });
        let pods = json!({ "items": [
            pod("done-1", "done", json!([{ "name": "app", "state": exited }])),
            pod("broken-1", "broken", json!([{ "name": "app", "state": { "terminated": { "exitCode": 1 } } }])),
            pod("hangs-1", "hangs", json!([{ "name": "app", "state": exited },
                { "name": "istio-proxy", "state": { "running": {} } }])),
        ]});
        let states = job_states(&jobs, &pods, |pod| {
            format!("first line of {pod}\nlast line")
        });
        assert_eq!(
            states[0].problem, None,
            "Complete, though its pod is not Ready"
        );
        let failed = states[1].problem.as_deref().unwrap();
        assert!(states[1].failed);
        assert!(
            failed.starts_with("Failed (BackoffLimitExceeded)"),
            "{failed}"
        );
        assert!(
            failed.ends_with("      | first line of broken-1\n      | last line"),
            "{failed}"
        );
        let hangs = states[2].problem.as_deref().unwrap();
        assert!(!states[2].failed);
        assert!(
            hangs.contains("`istio-proxy` keeps the pod running"),
            "{hangs}"
        );
    }
}
