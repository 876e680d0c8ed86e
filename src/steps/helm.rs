//! Helm: installs the profile's pinned Helm 3 the way Helm documents for
//! binary releases: `helm-<version>-linux-<arch>.tar.gz` from get.helm.sh,
//! checked against its published `.sha256sum`, its `helm` binary unpacked to
//! `/usr/local/bin/helm`. Done when `helm version` there is the pinned one.
//! Another version is an upgrade when this install put Helm there and the
//! move is one `crate::upgrade` allows (never down, never a new major; the
//! plan says `upgrade Helm A → B`, preflight refuses the rest before
//! anything changes); a Helm that was on the host before is reported, never
//! replaced. Uninstall removes the binary unless Helm was there before us.

use std::time::Duration;

use super::{Action, ActionKind, Change, Step, StepError, StepId, StepInfo};
use crate::context::{Context, Origin, kept_because};
use crate::host::download::{self, ReleaseBinary};
use crate::host::{self, kube};
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
        let mut actions = match installed_version(context)? {
            Some(found) if &found == version => {
                return Ok(vec![Action::check(format!(
                    "Helm {version} is installed at {BINARY}"
                ))]);
            }
            Some(from) => Action::change(Upgrade {
                from,
                to: version.clone(),
                release: release(context),
            })
            .into_iter()
            .collect(),
            None => vec![Action::install_release(release(context), BINARY)],
        };
        let unrecorded = context.facts().helm.preexisting.is_none();
        let record = Fact::Preexisting(Preexisting::Helm, false);
        Action::record_first(&mut actions, unrecorded.then_some(record));
        Ok(actions)
    }

    fn verify(&self, context: &Context) -> Result<(), StepError> {
        match installed_version(context)? {
            Some(found) if found != context.config.versions.helm => Err(StepError::failed(
                format!(
                    "Helm is still {found}, not {}",
                    context.config.versions.helm
                ),
                "run `stackinstall install --redo helm`",
            )),
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

/// An upgrade of the Helm this install put there: the pinned release's
/// binary in place of the old one.
struct Upgrade {
    from: String,
    to: String,
    release: ReleaseBinary,
}

impl Change for Upgrade {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        let release = &self.release;
        vec![format!(
            "upgrade Helm {} → {}: download {} ({}), install {BINARY} (mode 0755)",
            self.from,
            self.to,
            release.url,
            release.check()
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        context.install_release(&self.release, BINARY)?;
        Ok(true)
    }
}

/// The installed Helm's version; `None` when there is none. Another
/// version than the pinned one is an upgrade when the install put Helm
/// there and the move is one `crate::upgrade` allows; else an error:
/// reported, not replaced.
fn installed_version(context: &Context) -> Result<Option<String>, StepError> {
    let binary = context.host.path(BINARY);
    if !binary.exists() {
        return Ok(None);
    }
    let printed =
        host::installed::version_output(&binary, &["version", "--template", "{{.Version}}"])?;
    let found = printed.trim().to_string();
    let pinned = &context.config.versions.helm;
    if &found != pinned && context.facts().helm.preexisting == Some(false) {
        return match crate::upgrade::check_path(crate::upgrade::Component::Helm, &found, pinned) {
            Ok(_) => Ok(Some(found)),
            Err(refusal) => Err(refusal.into()),
        };
    }
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

/// Before anything changes, a Helm of another version is an upgrade this
/// install makes, or refused naming the way through; for `--skip-infra`,
/// `helm` must answer on PATH instead.
fn preflight(context: &Context) -> Result<Option<Action>, StepError> {
    if !context.config.install.skip_infra {
        let pinned = &context.config.versions.helm;
        return Ok(installed_version(context)?
            .filter(|found| found != pinned)
            .map(|found| {
                Action::check(format!(
                    "Helm {found} → {pinned} is an upgrade stackinstall makes (never down, same major)"
                ))
            }));
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
