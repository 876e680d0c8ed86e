//! The pinned K3s release, checked in preflight before anything changes:
//! it must name a K3s release (`v1.MINOR.PATCH+k3sN`), so that the
//! Kubernetes it brings is known before the cluster answers (the Istio
//! step checks it against its support table), and it must not be one
//! whose kubelet cannot run this install's image credential provider.

use crate::steps::{Action, StepError};

/// K3s v1.28.0 to v1.28.4 crash the kubelet once the image credential
/// provider's files exist (k3s-io/k3s issue 8941: the kubelet is started
/// with the `KubeletCredentialProviders` feature gate, GA and removed in
/// Kubernetes 1.28; fixed by "Remove GA feature-gates", in v1.29.0+k3s1;
/// issue 23 of this project gives v1.28.0 to v1.28.4 as the affected
/// range, so v1.28.5 and later 1.28 releases are let through).
const CRASHING: (u32, u32, u32) = (28, 0, 4);

/// The Kubernetes (major 1) minor and patch of a K3s release version such
/// as `v1.29.0+k3s1`.
pub fn kubernetes(version: &str) -> Option<(u32, u32)> {
    let (release, build) = version.strip_prefix("v1.")?.split_once('+')?;
    if !build.starts_with("k3s") {
        return None;
    }
    let (minor, patch) = release.split_once('.')?;
    Some((minor.parse().ok()?, patch.parse().ok()?))
}

/// Refuses a pinned K3s that is no K3s release version, or one whose
/// kubelet crashes with the credential provider.
pub fn check(version: &str) -> Result<Action, StepError> {
    let Some((minor, patch)) = kubernetes(version) else {
        return Err(StepError::input(
            format!("`versions.k3s` = `{version}` is not a K3s release version"),
            "pin a K3s release as its GitHub releases name it, such as `v1.29.0+k3s1`",
        ));
    };
    let (crash_minor, first, last) = CRASHING;
    if minor == crash_minor && (first..=last).contains(&patch) {
        return Err(StepError::input(
            format!(
                "K3s {version} cannot run this install: its kubelet crashes once the image credential provider's files exist (k3s-io/k3s issue 8941, K3s v1.28.0 to v1.28.4)"
            ),
            "pin K3s v1.28.5+k3s1 or later (`versions.k3s`; the profile's is v1.29.0+k3s1)",
        ));
    }
    Ok(Action::check(format!(
        "K3s {version} (Kubernetes 1.{minor}) runs the kubelet's image credential provider (not v1.28.0 to v1.28.4, k3s-io/k3s issue 8941)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_releases_whose_kubelet_crashes_are_refused_and_no_other() {
        // (pinned, refused)
        let table = [
            ("v1.27.9+k3s1", false),
            ("v1.28.0+k3s1", true),
            ("v1.28.2+k3s1", true),
            ("v1.28.4+k3s2", true),
            ("v1.28.5+k3s1", false),
            ("v1.29.0+k3s1", false),
            ("v1.30.2+k3s2", false),
        ];
        for (version, refused) in table {
            let result = check(version);
            assert_eq!(result.is_err(), refused, "{version}: {result:?}");
            if let Err(error) = result {
                assert!(error.is_input() && error.to_string().contains("8941"));
            }
        }
        for version in ["1.29.0", "v1.29", "v1.29.0", "v1.29.x+k3s1", "v2.0.0+k3s1"] {
            let error = check(version).unwrap_err();
            assert!(error.to_string().contains("not a K3s release version"));
        }
        assert_eq!(kubernetes("v1.29.0+k3s1"), Some((29, 0)));
    }
}
