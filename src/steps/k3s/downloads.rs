//! Release binaries (K3s, Helm, istioctl) downloaded, checked and installed
//! under `/usr/local/bin`: shared by the `k3s`, `helm` and `istio` steps.

use std::time::Duration;

use super::DOWNLOADS;
use crate::context::Context;
use crate::host::download::{self, ReleaseBinary};
use crate::steps::{Action, ActionKind, StepError};

/// Downloads `release` and installs its binary at `binary`.
pub fn download_action(release: ReleaseBinary, binary: &'static str) -> Action {
    let detail = format!(
        "download {} ({}), install {binary} (mode 0755)",
        release.url,
        release.check()
    );
    Action::call(ActionKind::File, detail, move |context| {
        install_release(context, &release, binary).map(|()| true)
    })
}

/// Downloads `release`, checks it, and installs its binary at `binary`.
pub fn install_release(
    context: &Context,
    release: &ReleaseBinary,
    binary: &str,
) -> Result<(), StepError> {
    let timeout = Duration::from_secs(context.config.downloads.timeout_seconds);
    let work_dir = context.host.path(DOWNLOADS);
    warn_unpinned(context, release);
    let progress = context.ui.download(release.file_name());
    let target = context.host.path(binary);
    download::install_binary(release, &target, &work_dir, timeout, &|done, total| {
        progress.update(done, total)
    })?;
    progress.finish();
    Ok(())
}

/// Downloads `release` and checks it, showing its progress.
pub fn fetch_release(
    context: &Context,
    release: &ReleaseBinary,
    timeout: Duration,
) -> Result<Vec<u8>, StepError> {
    warn_unpinned(context, release);
    let progress = context.ui.download(release.file_name());
    let bytes = download::fetch_checked(release, timeout, &|done, total| {
        progress.update(done, total)
    })?;
    progress.finish();
    Ok(bytes)
}

/// Says loudly, in the run, that `release` has no pin.
fn warn_unpinned(context: &Context, release: &ReleaseBinary) {
    if release.pin.is_none() {
        context
            .ui
            .warn(&format!("{}: {}", release.url, release.check()));
    }
}
