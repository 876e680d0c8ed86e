//! The application's chart file: `helm pull` of `[chart] reference` at
//! `[chart] version` into a directory only root can read
//! (`/var/lib/stackinstall/downloads/chart-RELEASE`, 0700), checked against
//! its pin in `[downloads.pins]` (key `NAME/VERSION/NAME-VERSION.tgz`),
//! moved to `/var/lib/stackinstall/downloads/chart-RELEASE.tgz` (a name a
//! later run knows, to remove what a killed run left) and installed by
//! Helm from that file, so Helm never fetches the chart itself. The pin is the chart file's SHA-256 (a repository's `index.yaml`
//! `digest`) or, for an OCI chart, the manifest digest `helm pull` prints
//! (`Digest: sha256:...`, verified by Helm against what it fetched); either
//! binds the chart's content. The file and its directory go once Helm is
//! done, and at once when the check fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::context::Context;
use crate::host::download::{self, ReleaseBinary};
use crate::host::{self, Command, kube};
use crate::steps::StepError;

/// Where the chart waits for Helm, under the downloads directory.
const DOWNLOADS: &str = "/var/lib/stackinstall/downloads";

/// The chart's name: the last part of its reference (`oci://host/p/NAME`,
/// `repo/NAME`).
fn name(config: &Config) -> &str {
    let reference = config.chart.reference.trim_end_matches('/');
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.strip_suffix(".tgz").unwrap_or(last)
}

/// The chart as a download: its pin key, its reference and its pin. With
/// `[chart] version` empty there is no one file to pin (`VERSION` in the
/// key says what to set).
pub fn download(config: &Config) -> ReleaseBinary {
    let version = config.chart.version.as_deref();
    let key = download::chart_key(name(config), version.unwrap_or("VERSION"));
    let pin = version.and_then(|_| config.downloads.pin(&key));
    ReleaseBinary {
        pin,
        key,
        url: config.chart.reference.clone(),
        sums_url: None,
        member: None,
    }
}

/// What the chart is checked against, for the plan and the run.
pub fn check(config: &Config) -> String {
    let chart = download(config);
    match (&chart.pin, config.chart.version.is_none()) {
        (Some(pin), _) => format!(
            "checked against pinned SHA-256 {} from {}",
            pin.sha256, pin.source
        ),
        (None, true) => format!(
            "WARNING: not pinned: `[chart] version` is empty, so the newest chart the registry offers is installed unchecked; set `[chart] version` and pin `{}` in [downloads.pins]",
            chart.key
        ),
        (None, false) => format!(
            "WARNING: not pinned, so checked against nothing; pin `{}` in [downloads.pins]",
            chart.key
        ),
    }
}

/// The root-only directory `helm pull` writes the chart to.
pub fn directory(context: &Context) -> PathBuf {
    context
        .host
        .path(DOWNLOADS)
        .join(format!("chart-{}", context.config.chart.release))
}

/// The checked chart file Helm installs from.
pub fn file(context: &Context) -> PathBuf {
    let mut file = directory(context).into_os_string();
    file.push(".tgz");
    PathBuf::from(file)
}

/// `helm pull` of the chart into `destination`.
pub fn pull_command(config: &Config, destination: &Path) -> Command {
    let destination = destination.display().to_string();
    let mut args = vec!["pull"];
    if let Some(version) = &config.chart.version {
        args.extend(["--version", version]);
    }
    args.extend(["--destination", &destination, "--", &config.chart.reference]);
    kube::helm(args).timeout(Duration::from_secs(config.downloads.timeout_seconds + 60))
}

/// Pulls the chart and checks it against its pin (an unpinned chart is
/// named in a warning); returns the file. On a mismatch the file is
/// removed and the error names the reference, the expected and the actual
/// digests.
pub fn pull(context: &Context) -> Result<PathBuf, StepError> {
    let config = &context.config;
    let chart = download(config);
    if chart.pin.is_none() {
        context
            .ui
            .warn(&format!("{}: {}", chart.url, check(config)));
    }
    let directory = directory(context);
    host::fs::ensure_private_dir(&context.host.path(DOWNLOADS))?;
    remove(context)?;
    host::fs::ensure_private_dir(&directory)?;
    let pulled = pull_command(config, &directory)
        .run()
        .map_err(StepError::from)
        .and_then(|output| Ok((pulled_file(&directory)?, output)));
    let (pulled, output) = match pulled {
        Ok(pulled) => pulled,
        Err(error) => {
            remove(context)?;
            return Err(error);
        }
    };
    let Some(pin) = chart.pin else {
        return keep(context, &pulled);
    };
    let digests = digests(&host::fs::read_own_bytes(&pulled)?, &output);
    let expected = pin.sha256.to_ascii_lowercase();
    if digests.iter().any(|(digest, _)| *digest == expected) {
        return keep(context, &pulled);
    }
    remove(context)?;
    let actual: Vec<String> = digests
        .iter()
        .map(|(digest, what)| format!("{digest} ({what})"))
        .collect();
    Err(StepError::failed(
        format!(
            "the chart `{}` version {} does not match its pin `{}`: expected sha256 {expected} (from {}), got {}; nothing was installed",
            config.chart.reference,
            config.chart.version.as_deref().unwrap_or("(the newest)"),
            chart.key,
            pin.source,
            actual.join(" and ")
        ),
        "the registry served another chart than the one pinned: do not install it; if that version was republished on purpose, check the new chart and change its pin in [downloads.pins] (a --config file)",
    ))
}

/// Moves the checked chart `pulled` to [`file`] and removes its directory.
fn keep(context: &Context, pulled: &Path) -> Result<PathBuf, StepError> {
    let file = file(context);
    host::fs::rename(pulled, &file)?;
    remove_directory(context)?;
    Ok(file)
}

/// The one `.tgz` `helm pull` left in `directory`.
fn pulled_file(directory: &Path) -> Result<PathBuf, StepError> {
    let charts: Vec<PathBuf> = host::fs::entries_of(directory)?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|extension| extension == "tgz"))
        .collect();
    match charts.as_slice() {
        [file] => Ok(file.clone()),
        _ => Err(StepError::failed(
            format!(
                "`helm pull` left {} chart files in `{}`, not one",
                charts.len(),
                directory.display()
            ),
            "check `[chart] reference` and `[chart] version` with `helm pull` by hand",
        )),
    }
}

/// The digests that identify the pulled chart: its file's SHA-256 and,
/// for an OCI chart, the manifest digest `helm pull` reported.
fn digests(bytes: &[u8], output: &host::command::Output) -> Vec<(String, &'static str)> {
    let mut digests = vec![(
        hex::encode(Sha256::digest(bytes)),
        "the chart file's SHA-256",
    )];
    let reported = output
        .stdout
        .lines()
        .chain(output.stderr.lines())
        .find_map(|line| line.trim().strip_prefix("Digest: sha256:"));
    if let Some(manifest) = reported {
        digests.push((
            manifest.trim().to_ascii_lowercase(),
            "the OCI manifest digest `helm pull` reported",
        ));
    }
    digests
}

/// Removes the chart file and the pull directory (also what a killed run
/// left there).
pub fn remove(context: &Context) -> Result<(), StepError> {
    host::fs::remove_file(&file(context))?;
    remove_directory(context)
}

fn remove_directory(context: &Context) -> Result<(), StepError> {
    let directory = directory(context);
    for entry in host::fs::entries_of(&directory)? {
        host::fs::remove_file(&entry)?;
    }
    host::fs::remove_empty_dir(&directory)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(reference: &str, version: &str) -> Config {
        let mut config = Config::load(&crate::config::Sources::default()).unwrap();
        config.chart.reference = reference.into();
        config.chart.version = Some(version.into()).filter(|v: &String| !v.is_empty());
        config
    }

    #[test]
    fn the_pin_key_is_the_file_helm_pull_makes() {
        let oci = config("oci://public.ecr.aws/p0g2c5k8/stackbill", "1.2.0");
        assert_eq!(download(&oci).key, "stackbill/1.2.0/stackbill-1.2.0.tgz");
        let repository = config("bitnami/nginx", "15.0.0");
        assert_eq!(download(&repository).key, "nginx/15.0.0/nginx-15.0.0.tgz");
        let newest = config("oci://public.ecr.aws/p0g2c5k8/stackbill", "");
        assert!(download(&newest).pin.is_none());
        assert!(check(&newest).contains("`[chart] version` is empty"));
    }

    #[test]
    fn an_oci_pull_is_known_by_its_file_and_its_manifest_digest() {
        let output = host::command::Output {
            stdout: format!(
                "Pulled: public.ecr.aws/p0g2c5k8/stackbill:1.2.0\nDigest: sha256:{}\n",
                "AB".repeat(32)
            ),
            stderr: String::new(),
            code: Some(0),
        };
        let found = digests(b"chart", &output);
        assert_eq!(found[0].0, hex::encode(Sha256::digest(b"chart")));
        assert_eq!(found[1].0, "ab".repeat(32));
    }
}
