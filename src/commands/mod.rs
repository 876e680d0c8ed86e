//! One file per subcommand.

pub mod backup;
pub mod credentials;
pub mod doctor;
pub mod ecr_credential_provider;
pub mod ecr_refresh;
pub mod ha;
pub mod install;
pub mod join;
pub mod nodes;
pub mod render;
pub mod restore;
pub mod status;
pub mod uninstall;

use std::path::PathBuf;

/// What a command returns: its error carries the hints and exit code.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

use crate::cli::ConfigArgs;
use crate::config::{Config, ConfigError, Flags, Sources};

/// The layers `args` names, the environment, and `flags`.
pub fn sources(args: &ConfigArgs, flags: Flags) -> Sources {
    Sources {
        profile: args.profile.clone(),
        config_file: args.config.clone(),
        environment: std::env::vars().collect(),
        flags,
    }
}

/// Loads the configuration from the profile, the config file, the
/// environment and `flags`.
pub fn load_config(args: &ConfigArgs, flags: Flags) -> Result<Config, ConfigError> {
    Config::load(&sources(args, flags))
}

/// The flags of a command whose only configuration flag is `--aws-profile`.
pub fn aws_profile_flags(profile: Option<&String>) -> Flags {
    Flags {
        aws_profile: profile.cloned(),
        ..Flags::default()
    }
}

/// A command's context on the host at `root`: the configuration of `args`
/// and `flags`, the output for `json` or for a person, and `plan` when the
/// command only looks.
pub fn command_context(
    root: &std::path::Path,
    args: &ConfigArgs,
    flags: Flags,
    json: bool,
    plan: bool,
) -> Result<crate::context::Context> {
    let config = load_config(args, flags)?;
    let host = crate::host::Host::new(root);
    let ui = crate::ui::Ui::detect(json);
    Ok(crate::context::Context::new(
        config,
        host,
        ui,
        plan,
        &home_dir(),
    )?)
}

/// The invoking user's home, where the bash installer kept its credentials.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// Why a command failed: the errors of the library's parts, each carrying
/// its own hints and exit code, and anything else (`Other`), which has
/// neither. What `main` prints and exits with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Step(#[from] crate::error::StepError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialsError),
    #[error(transparent)]
    File(#[from] crate::host::FileError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
    /// The install failed after its inputs were asked for: the hint to
    /// resume names the command line with the answers (never a secret),
    /// not the bare command, which would ask again.
    #[error(transparent)]
    Asked(Asked),
}

/// An install's failure after its inputs were answered on a terminal,
/// with the command line that gives them: shown as the failure itself.
#[derive(Debug)]
pub struct Asked {
    pub error: crate::engine::EngineError,
    pub command_line: String,
}

impl std::fmt::Display for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Asked {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl Error {
    /// What the operator can try next, in order.
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::Engine(error) => error.hints(),
            Self::Asked(asked) => asked.error.hints_resuming(Some(&asked.command_line)),
            Self::Step(error) => error.hint().into_iter().collect(),
            Self::Config(error) => error.hint().into_iter().collect(),
            Self::Render(error) => vec![error.hint()],
            Self::Other(_) => Vec::new(),
            Self::State(error) => error.hint().into_iter().collect(),
            Self::Credentials(error) => vec![error.hint()],
            Self::File(error) => error.hint().into_iter().collect(),
        }
    }

    /// How the process exits: 2 for bad input, 3 when another run holds
    /// the lock, 130 when interrupted, else 1.
    pub fn exit_code(&self) -> u8 {
        use crate::host::lock::LockError;
        let locked = |error: &crate::state::StateError| {
            matches!(
                error,
                crate::state::StateError::Lock(LockError::Held { .. })
            )
        };
        let interrupted =
            crate::host::command::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
        match self {
            Self::Engine(error) | Self::Asked(Asked { error, .. }) => error.exit_code(),
            Self::State(error) if locked(error) => crate::error::exit::LOCKED,
            Self::Config(_) => crate::error::exit::USAGE,
            Self::Step(error) if error.is_input() => crate::error::exit::USAGE,
            _ if interrupted => crate::error::exit::INTERRUPTED,
            _ => crate::error::exit::FAILED,
        }
    }
}
