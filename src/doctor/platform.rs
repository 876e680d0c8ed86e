//! The host's platform pieces: the NFS export for the nodes (never the pod network), free
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

/// The most entries of the export doctor looks at for set-uid files.
const SET_ID_WALK_LIMIT: usize = 200_000;

/// `/etc/exports` exports the data directory to the nodes and never to the
/// pod network; the directory is the one the install made, under a parent
/// only root enters, and holds no set-uid or set-gid file.
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
    let mut found = Found::default();
    match line {
        None => found.findings.push(Finding::error(
            "nfs-export",
            format!(
                "`/etc/exports` does not export `{}`: volumes of StorageClass `{}` cannot mount",
                config.nfs.path, config.nfs.storage_class
            ),
            fix,
        )),
        Some(line) => found.findings.extend(client_findings(inputs, line, fix)),
    }
    found.findings.extend(swapped);
    let made = state
        .as_ref()
        .is_some_and(|state| state.facts.nfs.export_parent == Some(crate::state::Origin::Created));
    match crate::steps::nfs::parent_problem(&inputs.host, &config.nfs.path, made) {
        Ok(Some(problem)) => found.findings.push(Finding::error(
            "nfs-export-parent",
            problem,
            match made {
                true => {
                    "make it root's alone again: `sudo stackinstall install --redo nfs`".to_string()
                }
                false => parent_fix(&config.nfs.path),
            },
        )),
        Ok(None) => {}
        Err(error) => found.notes.push(format!(
            "the export directory's parent was not looked at: {error}"
        )),
    }
    set_id_files(inputs, &mut found);
    if installed(inputs, StepId::Nfs) {
        bind_mount(inputs, &mut found);
    }
    Ok(found)
}

/// The export's mount unit (`nosuid,nodev`) is active.
fn bind_mount(inputs: &Inputs, found: &mut Found) {
    let unit = service::mount_unit(&inputs.config.nfs.path);
    match service::is_active(&unit) {
        Ok(true) => found.notes.push(format!("{unit}: active (the export is bound `nosuid,nodev`)")),
        Ok(false) => found.findings.push(Finding::error(
            "nfs-export-mount",
            format!("`{unit}` is not active: the export is not bound `nosuid,nodev`, so a set-uid program a pod leaves there runs with its owner's rights on the host"),
            format!("`sudo stackinstall install --redo nfs`; why it stopped: `journalctl -u {unit}`"),
        )),
        Err(CommandError::NotFound { .. }) => found.notes.push("no `systemctl` here: the export's bind mount was not checked".into()),
        Err(error) => found.notes.push(format!("the export's bind mount was not checked: {error}")),
    }
}

/// The commands that make the export's parent root's alone.
fn parent_fix(path: &str) -> String {
    let parent = std::path::Path::new(path)
        .parent()
        .map_or(String::new(), |parent| parent.display().to_string());
    format!(
        "`sudo chown root:root {parent} && sudo chmod 0700 {parent}` (NFS clients are not affected)"
    )
}

/// The export line's clients against the nodes' addresses: one in the pod
/// network (or everyone) lets any pod mount every volume; a node missing
/// cannot mount its pods' volumes.
fn client_findings(inputs: &Inputs, line: &str, fix: &str) -> Vec<Finding> {
    let config = &inputs.config;
    let pod_cidr = &config.cluster.pod_cidr;
    let clients: Vec<&str> = line
        .split_whitespace()
        .skip(1)
        .filter(|token| !token.starts_with('-'))
        .map(|token| token.split('(').next().unwrap_or_default())
        .collect();
    let mut findings = Vec::new();
    let open: Vec<&str> = (clients.iter().copied())
        .filter(|client| reaches_network(client, pod_cidr))
        .collect();
    if !open.is_empty() {
        findings.push(
            Finding::error(
                "nfs-export",
                format!(
                    "`{}` is exported to {}, which the pod network `{pod_cidr}` is in: any pod can mount every volume, bypassing the PersistentVolumeClaims",
                    config.nfs.path,
                    open.iter().map(|client| format!("`{client}`")).collect::<Vec<_>>().join(", ")
                ),
                format!("export it to the nodes' addresses only (the kubelet mounts from the node): {fix}"),
            )
            .with(format!("/etc/exports: {line}")),
        );
    }
    match config.host_ip() {
        Some(node) if !clients.contains(&node.as_str()) => findings.push(
            Finding::error(
                "nfs-export",
                format!(
                    "`{}` is not exported to the node `{node}`: the kubelet mounts volumes from the node, so pods cannot mount them",
                    config.nfs.path
                ),
                fix,
            )
            .with(format!("/etc/exports: {line}")),
        ),
        _ => {}
    }
    findings
}

/// Whether the export client `client` (exports(5) "Machine Name Formats":
/// an address, a network as `ADDRESS/BITS` or `ADDRESS/NETMASK`, a host
/// name that may hold `*` and `?`, `@netgroup`) takes in any address of
/// the network `cidr`: everyone (`*`, or no name) and wildcards do; a
/// network or address does when it overlaps it.
fn reaches_network(client: &str, cidr: &str) -> bool {
    if client.is_empty() || client.contains('*') || client.contains('?') {
        return true;
    }
    match (network(client), network(cidr)) {
        (Some((a, a_bits, a_v4)), Some((b, b_bits, b_v4))) if a_v4 == b_v4 => {
            let width = if a_v4 { 32 } else { 128 };
            let bits = a_bits.min(b_bits);
            let mask = |value: u128| match bits {
                0 => 0,
                bits => value >> (width - bits),
            };
            mask(a) == mask(b)
        }
        _ => false,
    }
}

/// An address or network: its value, prefix length and whether it is IPv4.
fn network(text: &str) -> Option<(u128, u32, bool)> {
    use std::net::IpAddr;
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (text, None),
    };
    let (value, width, v4) = match address.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32, true),
        IpAddr::V6(v6) => (u128::from(v6), 128, false),
    };
    let bits = match bits {
        None => width,
        Some(bits) => match (bits.parse::<u32>(), bits.parse::<IpAddr>()) {
            (Ok(bits), _) if bits <= width => bits,
            (_, Ok(IpAddr::V4(mask))) => u32::from(mask).count_ones(),
            _ => return None,
        },
    };
    Some((value, bits, v4))
}

/// Set-uid and set-gid files under the export: a pod's root leaves them
/// owned by root (`no_root_squash`); the bind mount `nosuid` makes them
/// inert on the host, and they should not be there at all.
fn set_id_files(inputs: &Inputs, found: &mut Found) {
    let config = &inputs.config;
    let directory = inputs.host.path(&config.nfs.path);
    if !host::fs::exists(&directory) {
        return;
    }
    match host::fs::set_id_files(&directory, SET_ID_WALK_LIMIT) {
        Err(error) => found.notes.push(format!(
            "the export was not searched for set-uid files: {error}"
        )),
        Ok((files, stopped)) => {
            if stopped {
                found.notes.push(format!("the search for set-uid files stopped after {SET_ID_WALK_LIMIT} entries of `{}`", config.nfs.path));
            }
            if files.is_empty() {
                return;
            }
            let shown: Vec<String> = files
                .iter()
                .map(|file| {
                    let relative = file.strip_prefix(inputs.host.root()).unwrap_or(file);
                    let mode = host::fs::mode_of(file).unwrap_or_default();
                    format!(
                        "{} (mode {mode:04o})",
                        std::path::Path::new("/").join(relative).display()
                    )
                })
                .collect();
            let mut finding = Finding::warning(
                "nfs-set-id",
                format!(
                    "{} set-uid or set-gid file(s) under the export `{}`: a pod wrote a program that would run with its owner's rights on the host were the export not bound `nosuid`",
                    files.len(),
                    config.nfs.path
                ),
                format!(
                    "look at each (`ls -l`), then take the bits away: `sudo find {} -xdev -type f -perm /6000 -exec chmod ug-s {{}} +`; and see whether `nfs.squash` can be `root_squash` for the application",
                    config.nfs.path
                ),
            );
            for file in shown.into_iter().take(20) {
                finding = finding.with(file);
            }
            found.findings.push(finding);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::reaches_network;

    #[test]
    fn a_client_reaches_the_pod_network_when_it_overlaps_it() {
        let pods = "10.42.0.0/16";
        for client in [
            "10.42.0.0/16",
            "10.0.0.0/8",
            "10.42.3.7",
            "10.42.0.0/255.255.0.0",
            "*",
            "",
            "node-*.example",
        ] {
            assert!(reaches_network(client, pods), "{client}");
        }
        for client in [
            "10.1.2.3",
            "10.43.0.0/16",
            "192.168.0.0/16",
            "@nodes",
            "fd00::1",
        ] {
            assert!(!reaches_network(client, pods), "{client}");
        }
    }
}
