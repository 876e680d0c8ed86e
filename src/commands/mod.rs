//! One file per subcommand.

pub mod credentials;
pub mod doctor;
pub mod ecr_credential_provider;
pub mod ecr_refresh;
pub mod install;
pub mod render;
pub mod status;
pub mod uninstall;

use std::path::PathBuf;

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

/// The invoking user's home, where the bash installer kept its credentials.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}
