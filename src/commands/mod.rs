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

/// What a command returns: its error carries the hints and exit code.
pub type Result<T = (), E = crate::error::Error> = std::result::Result<T, E>;

use crate::cli::ConfigArgs;
use crate::config::{Config, ConfigError, Sources};

/// Loads the configuration from the profile, the config file, the
/// environment and the `flags` table.
pub fn load_config(args: &ConfigArgs, flags: toml::Table) -> Result<Config, ConfigError> {
    Config::load(&Sources {
        profile: args.profile.clone(),
        config_file: args.config.clone(),
        environment: std::env::vars().collect(),
        flags,
    })
}

/// The flags table for an `--aws-profile` given on the command line.
pub fn aws_profile_flags(profile: Option<&String>) -> toml::Table {
    let mut flags = toml::Table::new();
    if let Some(profile) = profile {
        let install = toml::Table::from_iter([(
            "aws_profile".to_string(),
            toml::Value::from(profile.clone()),
        )]);
        flags.insert("install".into(), install.into());
    }
    flags
}

/// The invoking user's home, where the bash installer kept its credentials.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}
