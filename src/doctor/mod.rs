//! `stackinstall doctor`: the failure classes of the runbooks, looked for
//! read-only on the installed host, each finding with its evidence and fix.
//!
//! Checks run in parallel, each in a thread of its own with a time limit:
//! one that does not finish in time, or cannot run at all (no cluster, no
//! credentials file yet), says so and the others still report. The cluster
//! is read once (`kubectl get ... -o json`, [`snapshot::Snapshot`]) and the
//! class checks of [`cluster`] and [`mesh`] are plain functions over it.

pub mod bundle;
pub mod cluster;
pub mod host;
pub mod mesh;
pub mod mtls;
pub mod platform;
pub mod pods;
pub mod probe;
pub mod report;
mod runner;
pub mod snapshot;
pub mod tls;

pub use runner::{Check, run_all};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, Domain};
use crate::credentials::Credentials;
use crate::host::Host;

/// How bad a finding is: errors make `doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing found wrong, with what shows it and how to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The failure class (`route-port`, `subset-undefined`, ...), stable for scripts.
    pub class: &'static str,
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub what: String,
    /// Object names and values that show it.
    pub evidence: Vec<String>,
    /// The command or manifest change that fixes it.
    pub fix: String,
}

impl Finding {
    /// An error of `class`.
    pub fn error(class: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            class,
            severity: Severity::Error,
            what: what.into(),
            evidence: Vec::new(),
            fix: fix.into(),
        }
    }

    /// A warning of `class`.
    pub fn warning(class: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(class, what, fix)
        }
    }

    /// The same finding with one more line of evidence.
    pub fn with(mut self, evidence: impl Into<String>) -> Self {
        self.evidence.push(evidence.into());
        self
    }
}

/// What a check that ran found: findings, and notes on what it could not see.
#[derive(Debug, Default)]
pub struct Found {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
}

impl From<Vec<Finding>> for Found {
    fn from(findings: Vec<Finding>) -> Self {
        Self {
            findings,
            notes: Vec::new(),
        }
    }
}

/// A check's result: `Err` says why it could not run at all.
pub type Checked = Result<Found, String>;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    Findings,
    Skipped,
    TimedOut,
}

/// One check in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// `area.name`, e.g. `host.mysql`, `mesh.routes`.
    pub check: &'static str,
    pub outcome: Outcome,
    /// Why it was skipped or what it could not see.
    pub notes: Vec<String>,
    pub milliseconds: u64,
    pub findings: Vec<Finding>,
}

/// What every check may look at; shared read-only between their threads.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub config: Config,
    pub host: Host,
    /// The credentials file, or why it cannot be used.
    pub credentials: Result<Credentials, String>,
    /// The steps that have a checkpoint (done or not).
    pub installed_steps: Vec<crate::steps::StepId>,
    /// The domain, when known (flag, configuration or the live Gateway).
    pub domain: Option<Domain>,
    /// The installed certificate file (PEM, leaf first), when known.
    pub certificate: Option<PathBuf>,
    /// How long each check may take.
    pub limit: Duration,
    /// The areas to check (`host`, `cluster`, `mesh`, `probe`); empty: all.
    pub areas: Vec<&'static str>,
}

impl Inputs {
    /// Whether the check `name` (`area.what`) is asked for.
    pub fn wants(&self, name: &str) -> bool {
        let area = name.split('.').next().unwrap_or(name);
        self.areas.is_empty() || self.areas.contains(&area)
    }
}

/// Every check of the host, the cluster and end to end, run under the limit.
pub fn diagnose(mut inputs: Inputs) -> report::Report {
    let started = Instant::now();
    let limit = inputs.limit;
    let domain_needed = inputs.domain.is_none() && inputs.wants("probe");
    let (snapshot, mut results) =
        if inputs.wants("cluster") || inputs.wants("mesh") || domain_needed {
            snapshot::fetch_checked(limit)
        } else {
            (None, Vec::new())
        };
    if inputs.domain.is_none() {
        inputs.domain = snapshot
            .as_ref()
            .and_then(|snapshot| mesh::gateway_domain(snapshot, &inputs.config))
            .and_then(|host| Domain::parse(&host).ok());
    }
    let inputs = Arc::new(inputs);
    let mut checks = host::checks(&inputs);
    checks.extend(probe::checks(&inputs));
    if let Some(snapshot) = snapshot {
        checks.extend(cluster_checks(&inputs, snapshot));
    }
    checks.retain(|check| inputs.wants(check.name));
    results.retain(|result| inputs.wants(result.check) || result.outcome != Outcome::Ok);
    results.extend(run_all(checks, limit));
    for result in &mut results {
        unseen_is_an_error(result, &inputs.installed_steps);
    }
    let domain = inputs.domain.as_ref().map(Domain::to_string);
    report::Report::new(domain, results, started.elapsed())
}

/// The step whose work the check `check` looks at, for the checks that
/// skip when it is not there.
fn looks_at(check: &str) -> Option<crate::steps::StepId> {
    use crate::steps::StepId;
    match check {
        "cluster.objects" => Some(StepId::K3s),
        "mesh.gateway" | "mesh.routes" | "mesh.mtls" => Some(StepId::Istio),
        "mesh.sidecars" => Some(StepId::Namespace),
        _ => None,
    }
}

/// Doctor never reports health it did not see: a check that could not
/// look (skipped, timed out) at what a step of the state installed is an
/// error finding, not a skip.
fn unseen_is_an_error(result: &mut CheckResult, installed: &[crate::steps::StepId]) {
    if !matches!(result.outcome, Outcome::Skipped | Outcome::TimedOut) {
        return;
    }
    let Some(step) = looks_at(result.check).filter(|step| installed.contains(step)) else {
        return;
    };
    let why = result.notes.join("; ");
    let fix = match step {
        crate::steps::StepId::K3s => "look at K3s: `systemctl status k3s`, `journalctl -u k3s -n 50`, `kubectl get nodes`; `sudo stackinstall install` puts back what is missing".to_string(),
        _ => format!("`sudo stackinstall install --redo {step}` puts it back; `sudo stackinstall status` shows each step"),
    };
    let finding = Finding::error(
        "installed-not-seen",
        format!(
            "the state records the `{step}` step, but `{}` could not look at its work: {why}",
            result.check
        ),
        fix,
    )
    .with(format!("checkpoint `{step}` in the state file"));
    result.outcome = Outcome::Findings;
    result.findings.push(finding);
}

/// The cluster and mesh checks over one snapshot.
fn cluster_checks(inputs: &Arc<Inputs>, snapshot: Arc<snapshot::Snapshot>) -> Vec<Check> {
    let scoped = Arc::new(snapshot::Scoped {
        inputs: Arc::clone(inputs),
        snapshot,
    });
    let mut checks = cluster::checks(&scoped);
    checks.extend(mesh::checks(&scoped));
    checks
}

/// The cluster and mesh checks of the default profile over `lists` (what
/// `kubectl get -o json` printed, per resource), one after the other, and
/// their findings: the pure part of doctor, for the fuzz targets.
pub fn run_on_snapshot(
    lists: std::collections::BTreeMap<&'static str, Vec<serde_json::Value>>,
) -> Vec<Finding> {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        Config::load(&crate::config::Sources::default()).expect("the default profile loads")
    });
    let snapshot = Arc::new(snapshot::Snapshot::from_lists(lists));
    let inputs = Arc::new(Inputs {
        config: config.clone(),
        host: Host::new("/nonexistent"),
        credentials: Err("not needed".into()),
        installed_steps: Vec::new(),
        domain: mesh::gateway_domain(&snapshot, config).and_then(|host| Domain::parse(&host).ok()),
        certificate: None,
        limit: Duration::from_secs(1),
        areas: vec!["cluster", "mesh"],
    });
    cluster_checks(&inputs, snapshot)
        .into_iter()
        .filter_map(|check| (check.run)().ok())
        .flat_map(|found| found.findings)
        .collect()
}

/// Only the cluster and mesh findings (for `wait`'s timeout): the checks
/// that need no credentials and send no request to the application.
pub fn cluster_findings(inputs: Inputs) -> Result<Vec<Finding>, String> {
    let limit = inputs.limit;
    let (snapshot, results) = snapshot::fetch_checked(limit);
    let Some(snapshot) = snapshot else {
        let why = results
            .into_iter()
            .flat_map(|r| r.notes)
            .collect::<Vec<_>>();
        return Err(why.join("; "));
    };
    let checks = cluster_checks(&Arc::new(inputs), snapshot);
    Ok(run_all(checks, limit)
        .into_iter()
        .flat_map(|result| result.findings)
        .collect())
}

/// `error` (a `wait` that ran out of time) with doctor's cluster and mesh
/// findings appended, each with its fix.
pub fn explain_timeout(
    error: crate::error::StepError,
    context: &crate::context::Context,
) -> crate::error::StepError {
    use crate::error::StepError;
    let StepError::Failed { mut message, hint } = error else {
        return error;
    };
    let config = &context.config;
    let inputs = Inputs {
        config: config.clone(),
        host: context.host.clone(),
        credentials: Err("not needed".into()),
        installed_steps: Vec::new(),
        domain: config.install.domain.clone(),
        certificate: None,
        limit: Duration::from_secs(WAIT_LIMIT_SECONDS),
        areas: vec!["cluster", "mesh"],
    };
    match cluster_findings(inputs) {
        Err(why) => message.push_str(&format!("\n  doctor could not look at the cluster: {why}")),
        Ok(findings) if findings.is_empty() => {
            message.push_str("\n  doctor found nothing else wrong in the cluster and mesh")
        }
        Ok(findings) => {
            message.push_str(&format!(
                "\n  doctor's findings in the cluster and mesh ({}):",
                findings.len()
            ));
            for finding in findings {
                let text = report::finding_text(&finding);
                message.push_str(&format!(
                    "\n    {}",
                    text.trim_end().replace('\n', "\n    ")
                ));
            }
        }
    }
    StepError::Failed { message, hint }
}

/// How long each of doctor's checks may take when `wait` asks.
const WAIT_LIMIT_SECONDS: u64 = 15;
