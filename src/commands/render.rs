//! `stackinstall render`: every file the install would write or apply,
//! one file each, for review or GitOps. Secrets are never rendered.

use std::path::Path;

use super::Result;

use crate::cli::RenderArgs;
use crate::config::{Config, Flags};
use crate::host;
use crate::render::RenderError;
use crate::steps::StepError;

/// Runs `render`.
pub fn run(_root: &Path, args: RenderArgs) -> Result<()> {
    let flags = Flags {
        domain: Some(args.domain.clone()),
        ..Flags::default()
    };
    let config = super::load_config(&args.config, flags)?;
    if config.install.domain.is_none() {
        return Err(StepError::input(
            "no domain given: `--domain` is empty",
            "pass the DNS name the application is reached at, like `portal.example.com`",
        )
        .into());
    }
    let files = files(&config)?;
    // Held open from its check to the last file: every file lands in the
    // directory that was checked, whoever renames its path meanwhile.
    let directory = host::fs::ensure_held_dir(&args.out, 0o755)?;
    for (name, contents) in &files {
        let path = args.out.join(name);
        host::fs::ensure_file_in(
            &directory,
            std::ffi::OsStr::new(name),
            contents.as_bytes(),
            0o644,
            None,
        )?;
        crate::outln!("{}", path.display());
    }
    Ok(())
}

/// Every file `render` writes, by file name: the effective configuration,
/// then each step's (`StepInfo::rendered`), in install order.
fn files(config: &Config) -> Result<Vec<(String, String)>, RenderError> {
    let effective = toml::to_string(config).expect("the configuration serializes");
    let mut files = vec![(
        "stackinstall.toml".to_string(),
        format!(
            "# The effective configuration of this install (profile `{}`).\n{effective}",
            config.name
        ),
    )];
    for id in crate::steps::StepId::ALL {
        if let Some(rendered) = id.info().rendered {
            files.extend(rendered(config)?);
        }
    }
    Ok(files)
}
