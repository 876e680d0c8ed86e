//! `stackinstall ecr-refresh`: renews the ECR pull secret when it is missing
//! or half way to expiry, and says nothing when there is nothing to do (the
//! systemd timer the `registry` step installs runs it every few hours).
//! It takes the run lock: while an install or uninstall holds it, it says
//! so and ends with success without touching anything (an uninstall may be
//! removing the Secret; the next timer run renews it if it is still wanted).
//! A lock held by anything but a stackinstall run is an error when the
//! token is due: the timer then shows the run failed.

use std::path::Path;

use super::Result;
use time::OffsetDateTime;

use crate::cli::EcrRefreshArgs;
use crate::ecr;
use crate::host::lock::LockError;
use crate::state::StateError;

/// Runs `ecr-refresh`.
pub fn run(root: &Path, args: EcrRefreshArgs) -> Result<()> {
    let flags = super::aws_profile_flags(args.aws_profile.as_ref());
    let context = super::command_context(root, &args.config, flags, false, false)?;
    let _lock = match context.state_file().lock() {
        Ok(lock) => lock,
        Err(StateError::Lock(LockError::Held { pid, path })) => {
            crate::outln!(
                "another stackinstall run (pid {pid}) holds the lock `{}`: nothing renewed; the next timer run renews the pull secret if it is still due",
                path.display()
            );
            return Ok(());
        }
        Err(StateError::Lock(error @ LockError::Foreign { .. })) => {
            // Not a run of ours: nobody renews meanwhile. Due (or not known
            // to be fresh) is a failure the timer shows.
            let fresh = ecr::read_stamp(&context.config)
                .ok()
                .flatten()
                .is_some_and(|stamp| !stamp.needs_renewal(OffsetDateTime::now_utc()));
            if fresh {
                crate::outln!("{error}: nothing renewed; the pull secret is not due yet");
                return Ok(());
            }
            return Err(StateError::Lock(error).into());
        }
        Err(error) => return Err(error.into()),
    };
    if let Some(stamp) = ecr::renew_if_due(&context, OffsetDateTime::now_utc())? {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
        crate::outln!(
            "renewed the pull secret `{}` in `{}`; the token is valid until {}",
            context.config.registry.secret,
            context.config.cluster.namespace,
            stamp.expires_at.format(&format).unwrap_or_default()
        );
    }
    Ok(())
}
