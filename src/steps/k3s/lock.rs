//! The servers' lock: one server joins or changes its K3s at a time (etcd
//! adds one member at a time, and a restart must leave the others a
//! quorum). It is the Lease [`LOCK_LEASE`] in `kube-system`, created by
//! the server that takes it and deleted when it lets go.

use std::time::Duration;

use crate::context::Context;
use crate::error::StepError;
use crate::host::{self, Command, kube};
use crate::join::{self, LOCK_KUBECONFIG, LOCK_LEASE, LOCK_SECONDS};

/// How a server reaches the servers' lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAccess {
    /// A server joining, before its K3s runs: the lock's own kubeconfig
    /// (the cluster's address and the lock's ServiceAccount token).
    Joining,
    /// A server of the cluster (an upgrade): its K3s's kubeconfig.
    Member,
}

/// `kubectl` reaching the lock.
fn lock_kubectl<'a>(access: LockAccess, args: impl IntoIterator<Item = &'a str>) -> Command {
    let command = match access {
        LockAccess::Joining => Command::new("kubectl").env("KUBECONFIG", LOCK_KUBECONFIG),
        LockAccess::Member => kube::kubectl([]),
    };
    command.args(args).timeout(Duration::from_secs(60))
}

/// Takes the servers' lock (a server joins or changes its K3s one at a
/// time): creates the Lease (a create is refused while it exists, so one
/// server holds it), or waits while another server holds it, or takes
/// over one its holder left expired (a run killed midway) or that this
/// host held (its own earlier, killed run).
pub fn take_lock(context: &Context, access: LockAccess) -> Result<(), StepError> {
    let me = join::node_name(&context.host);
    let deadline = std::time::Instant::now() + Duration::from_secs(LOCK_SECONDS + 60);
    loop {
        let now = time::OffsetDateTime::now_utc();
        let stamp = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let created = lock_kubectl(access, ["create", "-f", "-"])
            .stdin_text(join::lock_lease(&me, &stamp))
            .run_unchecked()?;
        if created.success() {
            return Ok(());
        }
        if !created.stderr.contains("AlreadyExists") {
            return Err(lock_kubectl(access, ["create", "-f", "-"])
                .failure(&created)
                .into());
        }
        let lease = lock_kubectl(
            access,
            [
                "get",
                "lease",
                LOCK_LEASE,
                "-n",
                "kube-system",
                "-o",
                "json",
            ],
        )
        .run_unchecked()?;
        let lease: serde_json::Value = serde_json::from_str(&lease.stdout).unwrap_or_default();
        let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
        if holder == me {
            return Ok(());
        }
        let renewed = (lease["spec"]["renewTime"].as_str())
            .and_then(|text| {
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or(now);
        let seconds = lease["spec"]["leaseDurationSeconds"].as_i64().unwrap_or(0);
        if lease.is_null() || renewed + time::Duration::seconds(seconds) < now {
            delete_lease(access)?;
            continue;
        }
        if std::time::Instant::now() >= deadline {
            return Err(StepError::failed(
                format!("server `{holder}` has been joining for longer than the lock lasts"),
                format!(
                    "look at that host (`journalctl -u k3s`); `kubectl -n kube-system delete lease {}` on a server lets the next one go",
                    LOCK_LEASE
                ),
            ));
        }
        context.ui.status(&format!(
            "server `{holder}` holds the servers' lock (it joins or upgrades): one server at a time, waiting"
        ));
        host::command::pause(Duration::from_secs(2))?;
    }
}

/// Deletes the join lock's Lease (expired, or let go).
fn delete_lease(access: LockAccess) -> Result<(), StepError> {
    lock_kubectl(
        access,
        [
            "delete",
            "lease",
            LOCK_LEASE,
            "-n",
            "kube-system",
            "--ignore-not-found",
        ],
    )
    .run()?;
    Ok(())
}

/// Lets go of the servers' lock; a joining server removes the lock's
/// kubeconfig (it holds a token).
pub fn release_lock(context: &Context, access: LockAccess) -> Result<(), StepError> {
    delete_lease(access)?;
    if access == LockAccess::Joining {
        host::fs::remove_file(&context.host.path(LOCK_KUBECONFIG))?;
    }
    Ok(())
}
