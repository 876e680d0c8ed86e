//! [`StepError`]: why a step could not do its work, with the hint that
//! tells the operator what to try next.

use crate::credentials::CredentialsError;
use crate::host::CommandError;
use crate::host::FileError;
use crate::host::download::DownloadError;
use crate::state::StateError;

/// Why a step could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The operator's input or the host does not fit: nothing was changed.
    #[error("{message}")]
    Input {
        message: String,
        hint: Option<String>,
    },
    /// The step's work went wrong.
    #[error("{message}")]
    Failed {
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// The credentials file the step reads is not there yet.
    #[error("there is no credentials file `{}` yet", path.display())]
    NoCredentials { path: std::path::PathBuf },
    /// Stopped by Ctrl-C or a signal while not running a command.
    #[error("interrupted while {doing}")]
    Interrupted { doing: String },
}

impl StepError {
    /// A bad input or unsuitable host, with what to do about it.
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Input {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A failure of the step's work, with what to do about it.
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// `--skip-infra` was given, but `component` is not there (`why`).
    pub fn skipped_but_missing(component: &str, why: &str) -> Self {
        Self::input(
            format!("--skip-infra was given, but {component} is not there: {why}"),
            format!(
                "install {component} first (run without --skip-infra to let stackinstall do it), or check KUBECONFIG `{}`",
                crate::host::kube::kubeconfig().display()
            ),
        )
    }

    /// What the operator can try next.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Input { hint, .. } | Self::Failed { hint, .. } => hint.clone(),
            Self::Command(CommandError::NotFound { program }) => Some(format!(
                "install `{program}` or put it on PATH, then run again"
            )),
            Self::Command(CommandError::TimedOut { .. }) => Some(
                "the command hung or the host is very slow; look at the log, then run again".into(),
            ),
            Self::File(error) => error.hint(),
            Self::NoCredentials { .. } => Some(
                "run the `credentials` step first: `stackinstall install --only credentials`"
                    .into(),
            ),
            Self::Command(_) | Self::Interrupted { .. } => None,
            Self::Credentials(error) => Some(error.hint()),
            Self::State(error) => error.hint(),
            Self::Download(DownloadError::Mismatch { .. }) => Some(
                "the file was damaged or changed on the way; run again, and check `[downloads]` in the profile if it keeps failing".into(),
            ),
            Self::Download(_) => Some(
                "check the host's network access to the URL (or `[downloads]` in the profile), then run again".into(),
            ),
            Self::Render(error) => Some(error.hint()),
        }
    }

    /// Whether the error says that something an earlier step makes is not
    /// there: a program not installed, the credentials file, a cluster that
    /// does not answer (asked again, as `kubectl version -o json`, when a
    /// cluster program failed).
    pub fn prerequisite_absent(&self) -> bool {
        match self {
            Self::Command(CommandError::NotFound { .. }) | Self::NoCredentials { .. } => true,
            Self::Command(error @ CommandError::Failed { .. }) => {
                ["kubectl", "helm", "istioctl"].contains(&error.program())
                    && !crate::host::kube::cluster_answers()
            }
            _ => false,
        }
    }

    /// Whether the run was stopped by Ctrl-C or a signal.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            Self::Command(CommandError::Interrupted { .. })
                | Self::Download(DownloadError::Command(CommandError::Interrupted { .. }))
                | Self::Interrupted { .. }
        )
    }

    /// Whether running the same command again may get further: not for bad
    /// input, nor for a damaged credentials file, which wait for the operator.
    pub fn is_resumable(&self) -> bool {
        !matches!(self, Self::Input { .. } | Self::Credentials(_))
    }

    /// Whether it is bad input (exit code 2) rather than a failed step.
    pub fn is_input(&self) -> bool {
        matches!(self, Self::Input { .. })
    }
}

/// The exit codes, as the README documents them.
pub mod exit {
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LOCKED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}
