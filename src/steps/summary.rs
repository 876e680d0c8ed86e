//! Summary: tells the operator where the application is (`https://DOMAIN:
//! PORT/...` for every route), where the credentials and the log are, and
//! what to run next. It prints no password and changes nothing on the host.

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::Context;

/// The summary step.
pub struct Summary;

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    needs: &[StepId::Wait, StepId::Backups],
    role: super::Role::EveryRun,
    ..StepInfo::new(StepId::Summary, "Show where everything is")
};

impl Step for Summary {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let text = summary_text(context);
        Ok(Action::change(Report { text }).into_iter().collect())
    }

    fn verify(&self, _context: &Context) -> Result<(), StepError> {
        Ok(())
    }
}

/// Prints a text for the operator; changes nothing on the host. A plan
/// shows the text itself.
pub struct Report {
    pub text: String,
}

impl Change for Report {
    fn kind(&self) -> ActionKind {
        ActionKind::Report
    }

    fn lines(&self) -> Vec<String> {
        (self.text.lines())
            .map(|line| format!("print: {line}"))
            .collect()
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        context.ui.message(&self.text);
        Ok(false)
    }
}

/// The text of the summary.
pub fn summary_text(context: &Context) -> String {
    let config = &context.config;
    let domain = config.install.domain.as_deref().unwrap_or("DOMAIN");
    let base = match config.istio.https_port_for_clients() {
        443 => format!("https://{domain}"),
        port => format!("https://{domain}:{port}"),
    };
    let mut lines = vec![format!("{} is installed. Open:", config.description)];
    for route in &config.routes {
        lines.push(format!("  {base}{}", route.prefix));
    }
    let credentials = context.shown(context.credentials_file().path());
    lines.push(format!(
        "Credentials: {} (`sudo stackinstall credentials --reveal`)",
        credentials.display()
    ));
    if let Some(log) = &context.log_path {
        lines.push(format!("Log: {}", log.display()));
    }
    lines.extend(context.summary_lines());
    lines.push("Next: `stackinstall status` to see each step and its health;".into());
    lines.push(format!(
        "      `kubectl get pods -n {}` to see the application.",
        config.cluster.namespace
    ));
    lines.join("\n")
}
