//! `stackinstall render`: every file the install would write or apply,
//! one file each, for review or GitOps. Secrets are never rendered.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::cli::RenderArgs;
use crate::host;

/// Runs `render`.
pub fn run(_root: &Path, args: RenderArgs) -> Result<()> {
    let flags: toml::Table = toml::from_str(&format!(
        "[install]\ndomain = {:?}",
        args.domain.to_ascii_lowercase()
    ))?;
    let config = super::load_config(&args.config, flags)?;
    crate::certificate::check_domain(&config.install.domain).map_err(|why| {
        anyhow::anyhow!(
            "--domain `{}` is not a valid DNS name: {why}",
            config.install.domain
        )
    })?;
    let files = crate::render::files(&config)?;
    host::fs::ensure_dir(&args.out, 0o755)?;
    for (name, contents) in &files {
        let path = args.out.join(name);
        host::fs::ensure_file(&path, contents.as_bytes(), 0o644)
            .with_context(|| format!("writing `{name}`"))?;
        println!("{}", path.display());
    }
    Ok(())
}
