//! `stackinstall status`: each step's checkpoint and, for the done ones,
//! whether their result is still there and working (their verification);
//! then the registry's pulls: where the AWS credentials come from, when the
//! pull Secret's token was fetched and when it expires (its stamp), and
//! whether the kubelet's credential provider is wired.

use std::path::Path;

use super::Result;
use serde::Serialize;

use crate::cli::{Output, StatusArgs};
use crate::config::Flags;
use crate::context::Context;
use crate::state::Status;
use crate::steps::StepId;

#[derive(Debug, Serialize)]
struct StepStatus {
    id: &'static str,
    title: &'static str,
    /// `done`, `failed`, `interrupted` or `not-done`.
    state: String,
    finished_at: Option<String>,
    tool_version: Option<String>,
    /// `ok`, or what the live check found wrong; only for done steps.
    health: Option<String>,
    /// Why it failed or was interrupted, as the run recorded it.
    reason: Option<String>,
}

impl StepStatus {
    /// What is wrong with the step: it failed or was interrupted. (A done
    /// step's health is shown, not counted: `status` checks it with the
    /// configuration it is given, not the install's flags, so a step that
    /// reads them, `tls` say, may look unhealthy without being so.)
    fn trouble(&self) -> Option<String> {
        match self.state.as_str() {
            "failed" | "interrupted" => Some(format!(
                "`{}` {}: {}",
                self.id,
                self.state,
                (self.reason.as_deref())
                    .unwrap_or("no reason recorded (a run before this version)")
            )),
            _ => None,
        }
    }
}

/// The registry's pulls, as `status` shows them.
#[derive(Debug, Serialize)]
struct RegistryStatus {
    credential_source: String,
    token_fetched_at: Option<String>,
    token_expires_at: Option<String>,
    credential_provider: bool,
}

fn registry_status(context: &Context) -> Result<RegistryStatus> {
    let stamp = crate::ecr::read_stamp(&context.config).ok().flatten();
    let annotations = stamp.map(|stamp| stamp.annotations());
    let field = |key: &str| annotations.as_ref().map(|map| map[key].clone());
    let provider = context.host.path(crate::provider::KUBELET_CONFIG);
    Ok(RegistryStatus {
        credential_source: crate::ecr::credential_source(&context.config, &context.host)?
            .to_string(),
        token_fetched_at: field(crate::ecr::FETCHED_AT),
        token_expires_at: field(crate::ecr::EXPIRES_AT),
        credential_provider: crate::host::fs::read_optional(&provider)?.is_some(),
    })
}

/// Runs `status`.
pub fn run(root: &Path, args: StatusArgs) -> Result<()> {
    let json = args.output == Output::Json;
    let context = super::command_context(root, &args.config, Flags::default(), json, true)?;
    crate::steps::expect_stack_units(&context);
    let statuses: Vec<StepStatus> = StepId::ALL
        .iter()
        .map(|id| {
            let (step, info) = (id.step(), id.info());
            let checkpoint = context.state.steps.get(id);
            let state = checkpoint.map_or("not-done".to_string(), |c| match c.status {
                Status::Done => "done".into(),
                Status::Failed => "failed".into(),
                Status::Interrupted => "interrupted".into(),
            });
            // A failed step is verified too: its health says what is wrong.
            let looked = state == "done" || state == "failed";
            let health = (looked && !info.always_runs()).then(|| match step.verify(&context) {
                Ok(()) => "ok".to_string(),
                Err(error) => crate::secret::redact(&error.to_string()),
            });
            StepStatus {
                id: id.name(),
                title: info.title,
                state,
                finished_at: checkpoint.map(|c| c.finished_at.clone()),
                tool_version: checkpoint.map(|c| c.tool_version.clone()),
                health,
                reason: checkpoint.and_then(|c| c.reason.clone()),
            }
        })
        .collect();
    let registry = registry_status(&context)?;
    let installed = !context.state.steps.is_empty();
    let troubles: Vec<String> = statuses.iter().filter_map(StepStatus::trouble).collect();
    if json {
        let report = serde_json::json!({
            "state_file": context.shown(context.state_file().path()),
            "installed": installed,
            "steps": statuses,
            "registry": registry,
        });
        crate::outln!("{report:#}");
        return troubled(&troubles);
    }
    crate::outln!(
        "State: {}\n",
        context.shown(context.state_file().path()).display()
    );
    if !installed {
        crate::outln!(
            "Nothing is installed on this host: the state file has no step (`stackinstall install --plan` shows what an install would do).\n"
        );
    }
    for status in &statuses {
        let when = status.finished_at.as_deref().unwrap_or("");
        // One line a step: an error's stderr tail joined on.
        let health = status
            .health
            .as_deref()
            .map_or(String::new(), |h| format!("  health: {}", one_line(h)));
        let reason = (status.reason.as_deref())
            .filter(|_| status.state != "done")
            .map_or(String::new(), |reason| {
                format!("  reason: {}", one_line(reason))
            });
        crate::outln!(
            "{:<12} {:<12} {when}{reason}{health}",
            status.id,
            status.state
        );
    }
    let unknown = "unknown (no stamped pull Secret)";
    crate::outln!(
        "\nECR credentials: {}\nlast token fetched {}, expires {}\nkubelet credential provider: {}",
        registry.credential_source,
        registry.token_fetched_at.as_deref().unwrap_or(unknown),
        registry.token_expires_at.as_deref().unwrap_or(unknown),
        if registry.credential_provider {
            "wired"
        } else {
            "not wired"
        }
    );
    troubled(&troubles)
}

/// Exit 1 when a step failed or was interrupted.
fn troubled(troubles: &[String]) -> Result<()> {
    let Some(first) = troubles.first() else {
        return Ok(());
    };
    let more = match troubles.len() {
        1 => String::new(),
        n => format!(" (and {} more: {})", n - 1, troubles[1..].join("; ")),
    };
    Err(crate::error::StepError::failed(
        format!("{first}{more}"),
        "`stackinstall install` (the same command as before) resumes at the first failed step; `stackinstall doctor` looks further",
    )
    .into())
}

/// `text` on one line: its lines trimmed and joined by a space.
fn one_line(text: &str) -> String {
    (text.lines().map(str::trim))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
