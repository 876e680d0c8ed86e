//! Helm: installs the profile's pinned Helm 3 the way Helm documents for
//! binary releases: `helm-<version>-linux-<arch>.tar.gz` from get.helm.sh,
//! checked against its published `.sha256sum`, its `helm` binary unpacked to
//! `/usr/local/bin/helm`. Done when `helm version` there is the pinned one.
//! Another version is reported, never replaced. Uninstall removes the binary
//! unless Helm was there before us.

use std::time::Duration;

use super::{Action, Step, StepError, StepId, StepInfo};
use crate::context::{Context, Origin, kept_because};
use crate::host::download::{self, ReleaseBinary};
use crate::host::{Command, kube};
use crate::state::{Fact, Fingerprint, Preexisting};

/// The Helm step.
pub struct Helm;

/// Where the Helm binary goes.
pub const BINARY: &str = "/usr/local/bin/helm";

/// What the engine knows of the step.
pub const INFO: StepInfo = StepInfo {
    preflight: Some(preflight),
    downloads: Some(downloads),
    needs: &[StepId::Preflight],
    ..StepInfo::infra(StepId::Helm, "Install Helm")
};

impl Step for Helm {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        fingerprint.add("version", &context.config.versions.helm);
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let version = &context.config.versions.helm;
        if installed_version(context)?.is_some() {
            return Ok(vec![Action::check(format!(
                "Helm {version} is installed at {BINARY}"
            ))]);
        }
        let mut actions = vec![Action::install_release(release(context), BINARY)];
        let unrecorded = context.facts().helm.preexisting.is_none();
        let record = Fact::Preexisting(Preexisting::Helm, false);
        Action::record_first(&mut actions, unrecorded.then_some(record));
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        match installed_version(context)? {
            Some(_) => Ok(()),
            None => Err(StepError::failed(
                format!("`{BINARY}` is missing"),
                "run `stackinstall install --redo helm`",
            )),
        }
    }

    fn undo(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let origin = context
            .facts()
            .helm
            .preexisting
            .map(Origin::from_preexisting);
        if let Some(kept) = kept_because(origin, "Helm") {
            return Ok(vec![Action::check(kept)]);
        }
        let path = context.host.path(BINARY);
        Ok(vec![Action::remove(context.host.reached(path.clone()))])
    }
}

fn release(context: &Context) -> ReleaseBinary {
    let arch = download::architecture();
    let base = download::url_for(
        &context.config.downloads.helm,
        &context.config.versions.helm,
    );
    let version = &context.config.versions.helm;
    let file = format!("helm-{version}-linux-{arch}.tar.gz");
    context.config.downloads.release(
        &format!("helm/{version}"),
        format!("{base}/{file}"),
        Some(format!("{base}/{file}.sha256sum")),
        Some(format!("linux-{arch}/helm")),
    )
}

/// The file Helm downloads: its release archive.
pub fn downloads(context: &Context) -> Vec<ReleaseBinary> {
    vec![release(context)]
}

/// The installed Helm's version; `None` when there is none. Another
/// version than the pinned one is reported, not replaced.
fn installed_version(context: &Context) -> Result<Option<String>, StepError> {
    let binary = context.host.path(BINARY);
    if !binary.exists() {
        return Ok(None);
    }
    let output = Command::new(binary.display().to_string())
        .args(["version", "--template", "{{.Version}}"])
        .run()?;
    let found = output.stdout.trim().to_string();
    let pinned = &context.config.versions.helm;
    if &found != pinned {
        return Err(StepError::input(
            format!(
                "Helm `{found}` is already installed at `{BINARY}`, but profile `{}` pins `{pinned}`",
                context.config.name
            ),
            format!(
                "stackinstall does not replace another Helm: install {pinned} yourself, or set `versions.helm = \"{found}\"` in a --config file if that version is fine"
            ),
        ));
    }
    Ok(Some(found))
}

/// For `--skip-infra`: `helm` must answer on PATH.
fn preflight(context: &Context) -> Result<Option<Action>, StepError> {
    if !context.config.install.skip_infra {
        return Ok(None);
    }
    let command =
        kube::helm(["version", "--template", "{{.Version}}"]).timeout(Duration::from_secs(30));
    match command.run() {
        Ok(output) => Ok(Some(Action::check(format!(
            "--skip-infra: Helm {} is on PATH",
            output.stdout.trim()
        )))),
        Err(error) => Err(StepError::skipped_but_missing("Helm", &error.to_string())),
    }
}
