//! What doctor prints: text for a person (findings first, then a line per
//! check), or JSON with the shape documented in the README.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use super::{CheckResult, Finding, Outcome, Severity};

/// Version of the JSON shape.
pub const FORMAT_VERSION: u32 = 1;

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub domain: Option<String>,
    pub errors: usize,
    pub warnings: usize,
    pub seconds: f64,
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// The report of `checks`, which took `took`.
    pub fn new(domain: Option<String>, checks: Vec<CheckResult>, took: Duration) -> Self {
        let count = |severity| {
            checks
                .iter()
                .flat_map(|check| &check.findings)
                .filter(|finding| finding.severity == severity)
                .count()
        };
        Self {
            version: FORMAT_VERSION,
            domain,
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            seconds: (took.as_secs_f64() * 1000.0).round() / 1000.0,
            checks,
        }
    }

    /// Every finding, errors first.
    pub fn findings(&self) -> Vec<&Finding> {
        let mut findings: Vec<&Finding> = self.checks.iter().flat_map(|c| &c.findings).collect();
        findings.sort_by_key(|finding| finding.severity);
        findings
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for finding in self.findings() {
            out.push_str(&finding_text(finding));
        }
        if !self.findings().is_empty() {
            out.push('\n');
        }
        for check in &self.checks {
            let state = match check.outcome {
                Outcome::Ok => "ok".to_string(),
                Outcome::Findings => format!("{} finding(s)", check.findings.len()),
                Outcome::Skipped => "skipped".to_string(),
                Outcome::TimedOut => "timed out".to_string(),
            };
            let _ = write!(out, "{:<26} {state}", check.check);
            for note in &check.notes {
                let _ = write!(out, "\n{:<26}   {note}", "");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "\n{} error(s), {} warning(s) in {:.1}s{}",
            self.errors,
            self.warnings,
            self.seconds,
            self.domain
                .as_deref()
                .map_or(String::new(), |d| format!(" (domain {d})"))
        );
        out
    }
}

/// One finding as text: severity and class, what, evidence, fix.
pub fn finding_text(finding: &Finding) -> String {
    let severity = match finding.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = format!("{severity} [{}]: {}\n", finding.class, finding.what);
    for line in &finding.evidence {
        let _ = writeln!(out, "    evidence: {line}");
    }
    let _ = writeln!(out, "    fix: {}", finding.fix);
    out
}
