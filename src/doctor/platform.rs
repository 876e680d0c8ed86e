//! The host's platform pieces: the NFS export for the pod network, free
//! disk space, and the ECR pull token's age with its renewal timer.

use crate::steps::StepId;
use time::OffsetDateTime;

use super::{Checked, Finding, Found, Inputs};
use crate::host::{self, CommandError, service};
use crate::steps::registry::TIMER;

/// Free space under which doctor warns, and errs, in GiB.
const DISK_WARNING_GIB: u64 = 10;
const DISK_ERROR_GIB: u64 = 2;

fn installed(inputs: &Inputs, step: StepId) -> bool {
    inputs.installed_steps.contains(&step)
}

/// `/etc/exports` exports the data directory to the pod network.
pub fn nfs(inputs: &Inputs) -> Checked {
    let config = &inputs.config;
    let path = inputs.host.path("/etc/exports");
    let exports = host::fs::read_optional(&path)
        .map_err(|error| error.to_string())?
        .unwrap_or_default();
    let line = exports
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find(|line| line.split_whitespace().next() == Some(config.nfs.path.as_str()));
    if line.is_none() && !installed(inputs, StepId::Nfs) {
        return Err("the `nfs` step has not run (no checkpoint, no export)".into());
    }
    let fix = "write the export again and reload it: `sudo stackinstall install --redo nfs` (then `exportfs -v`)";
    // A directory swapped after the install (a link to `/` in its place)
    // is exported all the same: the state's device:inode tells it.
    let state = crate::state::StateFile::new(&inputs.host).load().ok();
    let recorded = state
        .as_ref()
        .and_then(crate::steps::nfs::recorded_identity);
    let swapped = line
        .filter(|_| recorded.is_some() || host::fs::exists(&inputs.host.path(&config.nfs.path)))
        .and_then(|line| {
            let problem = crate::steps::nfs::directory_problem(&inputs.host, &config.nfs.path, recorded)?;
            Some(Finding::error("nfs-export", problem, "stop exporting it now (`sudo exportfs -ua`), look at the path (`ls -ld` of it and each directory above it), make it the right directory again, then `sudo stackinstall install --redo nfs`")
                .with(format!("/etc/exports: {line}")))
        });
    let pod_cidr = &config.cluster.pod_cidr;
    let finding = match line {
        None => Some(Finding::error(
            "nfs-export",
            format!(
                "`/etc/exports` does not export `{}`: volumes of StorageClass `{}` cannot mount",
                config.nfs.path, config.nfs.storage_class
            ),
            fix,
        )),
        Some(line) if !line.contains(pod_cidr.as_str()) && !line.contains('*') => Some(
            Finding::error(
                "nfs-export",
                format!(
                    "`{}` is exported, but not to the pod network `{pod_cidr}`: pods cannot mount it",
                    config.nfs.path
                ),
                fix,
            )
            .with(format!("/etc/exports: {line}")),
        ),
        Some(_) => None,
    };
    Ok(finding
        .into_iter()
        .chain(swapped)
        .collect::<Vec<_>>()
        .into())
}

/// Free space where the state and the NFS data live.
pub fn disk(inputs: &Inputs) -> Checked {
    let mut findings = Vec::new();
    for place in ["/var/lib", inputs.config.nfs.path.as_str()] {
        let Some(free) = host::system::free_disk_gib(&inputs.host.path(place)) else {
            continue;
        };
        let what = format!("only {free} GiB are free on the file system of `{place}`");
        let fix = "free space (`du -xh --max-depth=2 / | sort -h | tail`; old images: `k3s crictl rmi --prune`)";
        if free < DISK_ERROR_GIB {
            findings.push(
                Finding::error("disk-space", what, fix).with(format!("{place}: {free} GiB free")),
            );
        } else if free < DISK_WARNING_GIB {
            findings.push(
                Finding::warning("disk-space", what, fix).with(format!("{place}: {free} GiB free")),
            );
        }
    }
    Ok(findings.into())
}

/// The pull Secret's token age and the renewal timer.
pub fn registry(inputs: &Inputs) -> Checked {
    if !installed(inputs, StepId::Registry) {
        return Err("the `registry` step has not run".into());
    }
    let config = &inputs.config;
    let secret = format!("{}/{}", config.cluster.namespace, config.registry.secret);
    let refresh = "renew it now: `sudo stackinstall ecr-refresh`";
    let mut found = Found::default();
    match crate::ecr::credential_source(config, &inputs.host) {
        Ok(source @ crate::ecr::CredentialSource::EnvironmentOnly) => found.findings.push(Finding::warning("registry-credentials", format!("the AWS credentials are in this shell's environment only: {source}"), format!("write them as profile `{}` in `/root/.aws/credentials` (0600) or give the host an instance role", crate::ecr::profile_name(config)))),
        Ok(source) => found.notes.push(format!("AWS credentials for the kubelet's provider and the timer: {source}")),
        Err(error) => found.notes.push(format!("the AWS credential source was not read: {error}")),
    }
    match crate::ecr::read_stamp(config) {
        Err(error) => found.notes.push(format!("the pull Secret was not read: {error}")),
        Ok(None) => found.findings.push(Finding::error("registry-token", format!("the pull Secret `{secret}` is missing or has no token stamp: images cannot be pulled"), refresh)),
        Ok(Some(stamp)) => {
            let now = OffsetDateTime::now_utc();
            let moment = |at| crate::ui::moment(at, now);
            let evidence = format!("Secret {secret}: token fetched {}, expires {}", moment(stamp.fetched_at), moment(stamp.expires_at));
            found.notes.push(evidence.clone());
            if stamp.is_expired(now) {
                found.findings.push(Finding::error("registry-token", format!("the ECR token in `{secret}` has expired: new pods cannot pull (`no basic auth credentials`)"), refresh).with(evidence));
            } else if stamp.needs_renewal(now) {
                found.findings.push(Finding::warning("registry-token", format!("the ECR token in `{secret}` is past its renewal time: the timer has not renewed it"), refresh).with(evidence));
            }
        }
    }
    match service::is_active(TIMER) {
        Ok(true) => {}
        Ok(false) => found.findings.push(Finding::error("renewal-timer", format!("the timer `{TIMER}` is not active: the ECR token (12 h) will expire"), format!("`sudo systemctl enable --now {TIMER}`; its runs: `journalctl -u stackinstall-ecr-refresh`"))),
        Err(CommandError::NotFound { .. }) => found.notes.push("no `systemctl` here: the renewal timer was not checked".into()),
        Err(error) => found.notes.push(format!("the renewal timer was not checked: {error}")),
    }
    Ok(found)
}
