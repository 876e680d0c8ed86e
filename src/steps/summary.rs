//! Summary: tells the operator where the application is (`https://DOMAIN:
//! PORT/...` for every route), where the credentials and the log are, and
//! what to run next. It prints no password and changes nothing on the host.

use super::{Action, ActionKind, Step, StepError};
use crate::context::Context;

/// The summary step.
pub struct Summary;

impl Step for Summary {
    fn id(&self) -> &'static str {
        "summary"
    }

    fn title(&self) -> &'static str {
        "Show where everything is"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["wait"]
    }

    fn always_runs(&self) -> bool {
        true
    }

    fn look(&self, _context: &Context) -> Result<Vec<Action>, StepError> {
        Ok(vec![Action::call(
            ActionKind::Report,
            "print the application URLs, where the credentials and the log are, and the next commands",
            |context| {
                context.ui.message(&summary_text(context));
                Ok(false)
            },
        )])
    }

    fn verify(&self, _context: &Context) -> Result<(), StepError> {
        Ok(())
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
    lines.push("Next: `stackinstall status` to see each step and its health;".into());
    lines.push(format!(
        "      `kubectl get pods -n {}` to see the application.",
        config.cluster.namespace
    ));
    lines.join("\n")
}
