//! Release binaries (K3s, Helm, istioctl) downloaded, checked and installed
//! under `/usr/local/bin`: shared by the `k3s`, `helm` and `istio` steps.

use std::time::Duration;

use super::DOWNLOADS;
use crate::context::Context;
use crate::host::download::{self, ReleaseBinary};
use crate::steps::{Action, ActionKind, StepError};

/// The plan's line for downloading `release` and installing its binary.
pub fn download_action(tag: &'static str, release: &ReleaseBinary, binary: &str) -> Action {
    let detail = format!(
        "download {}, check it against {}, install {binary} (mode 0755)",
        release.url, release.sums_url
    );
    Action::custom(ActionKind::File, tag, detail)
}

/// Downloads `release`, checks its sum, and installs its binary at `binary`.
pub fn install_release(
    context: &Context,
    release: &ReleaseBinary,
    binary: &str,
) -> Result<(), StepError> {
    let timeout = Duration::from_secs(context.config.downloads.timeout_seconds);
    let work_dir = context.host.path(DOWNLOADS);
    download::install_binary(release, &context.host.path(binary), &work_dir, timeout)?;
    Ok(())
}
