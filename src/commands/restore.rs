//! `stackinstall restore FILE`: on the same host or a fresh one, checks
//! the archive (its manifest, its profile, the stackinstall that made it)
//! before anything changes, puts the files back, installs what holds the
//! data (K3s and the host's servers) with the install's own steps, puts
//! K3s's datastore and the databases back, then converges with the whole
//! install.

use std::path::Path;

use super::Result;

use crate::backup::restore::{self, RESTORED_CONFIG};
use crate::cli::{ConfigArgs, InstallArgs, Output, RestoreArgs};
use crate::config::Flags;
use crate::context::Context;
use crate::host::{self, Host};
use crate::state::Fact;
use crate::step_id::StepId;
use crate::steps::StepError;
use crate::ui::Ui;

/// The steps that make what the data goes into, run before it is put back.
const HOLDERS: [&str; 6] = ["credentials", "k3s", "mysql", "mongodb", "rabbitmq", "nfs"];

/// Runs `restore`.
pub fn run(root: &Path, args: RestoreArgs) -> Result<()> {
    if !host::system::is_root() {
        return Err(
            StepError::input("stackinstall restore must run as root", "run it with sudo").into(),
        );
    }
    let host = Host::new(root);
    if crate::steps::k3s::config_file::is_joined(&host)? {
        return Err(StepError::input(
            "this host joined a cluster: a restore is made on the cluster's first server, and the other servers join it again",
            "run `sudo stackinstall restore FILE` on the first server; then here `sudo stackinstall join` with a new join file from it (`sudo stackinstall join-command --role server`)",
        )
        .into());
    }
    let config = super::load_config(&args.config, Flags::default())?;
    let archive = super::backup::open(&host, &config, &args.file)?;
    restore::check(&archive, &config.name)?;
    let restored = restore::restored_config(&archive)?;
    confirm(&args, &archive)?;
    let installed: Vec<&str> = {
        let mut context = Context::new(
            restored.clone(),
            host.clone(),
            Ui::detect(false),
            false,
            &super::home_dir(),
        )?;
        let _lock = context.state_file().lock()?;
        let log = host::log::start(&host.path(super::install::LOG_DIR), "restore")?;
        tracing::info!(
            "stackinstall {} restore of {} (made by {} at {})",
            env!("CARGO_PKG_VERSION"),
            args.file.display(),
            archive.manifest.stackinstall,
            archive.manifest.created
        );
        for path in restore::put_files_back(&host, &archive, &restored)? {
            crate::errln!("restore: put back `{path}`");
            tracing::info!("put back {path}");
        }
        crate::errln!("restore: log {}", log.display());
        // The steps the host had installed (its state, or the archive's on a
        // host without one): the restore brings back those, not more (an
        // install made with --skip-db gets no databases from its restore).
        context.reload_state()?;
        (StepId::ALL.iter())
            .filter(|step| context.state.was_done(**step))
            .map(|step| step.name())
            .collect()
    };
    let holders: Vec<&str> = (HOLDERS.iter())
        .filter(|step| installed.is_empty() || installed.contains(step))
        .copied()
        .collect();
    crate::errln!(
        "restore: installing what holds the data ({})",
        holders.join(", ")
    );
    let mut rejoin = Vec::new();
    super::install::run(root, converge(root, &archive.manifest.profile, &holders))?;
    {
        let mut context = Context::new(
            restored,
            host.clone(),
            Ui::detect(false),
            false,
            &super::home_dir(),
        )?;
        let _lock = context.state_file().lock()?;
        context.reload_state()?;
        if context.state.was_done(StepId::K3s) && restore::restore_k3s(&context, &archive)? {
            crate::errln!("restore: K3s's datastore put back");
            if archive
                .member(crate::backup::members::K3S_ETCD_SNAPSHOT)
                .is_some()
            {
                context.record(&Fact::DatastoreRestored(host::log::file_stamp()))?;
                rejoin = other_servers(&context)?;
            }
        }
        for what in restore::restore_databases(&context, &archive)? {
            crate::errln!("restore: put back {what}");
            tracing::info!("put back {what}");
        }
    }
    crate::errln!("restore: converging with the install");
    super::install::run(root, converge(root, &archive.manifest.profile, &installed))?;
    crate::errln!(
        "restore: done; later installs: `stackinstall --config {RESTORED_CONFIG}` (the backup's configuration)"
    );
    if !rejoin.is_empty() {
        crate::errln!(
            "restore: the cluster's etcd now has this server as its only member; the other servers ({}) must join it again: make a join file here (`sudo stackinstall join-command --role server`) and run `sudo stackinstall join` with it on each, one at a time (it sets their old datastore aside, then K3s joins the restored cluster); a server whose host is gone: `sudo stackinstall nodes remove NAME` here. Agents reconnect by themselves.",
            rejoin.join(", ")
        );
    }
    Ok(())
}

/// The etcd members of the restored cluster other than this server: their
/// data is of the cluster before the reset. The API answers once K3s has
/// started again; it is asked for a minute at most.
fn other_servers(context: &Context) -> Result<Vec<String>, StepError> {
    let this = crate::join::node_name(&context.host);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let nodes = loop {
        match crate::node::list() {
            Ok(nodes) => break nodes,
            Err(error) if std::time::Instant::now() >= deadline => return Err(error),
            Err(_) => host::command::pause(std::time::Duration::from_secs(2))?,
        }
    };
    Ok((nodes.into_iter())
        .filter(|node| node.etcd_member && node.name != this)
        .map(|node| node.name)
        .collect())
}

/// The install's arguments for the restored configuration, `only` those
/// steps (all when empty), without questions.
fn converge(root: &Path, profile: &str, only: &[&str]) -> InstallArgs {
    InstallArgs {
        domain: None,
        ssl_cert: None,
        ssl_key: None,
        self_signed: false,
        config: ConfigArgs {
            profile: Some(profile.to_string()),
            config: Some(Host::new(root).path(RESTORED_CONFIG)),
        },
        skip_infra: false,
        kubeconfig: None,
        skip_db: false,
        plan: false,
        output: Output::Text,
        only: only.iter().map(|step| step.to_string()).collect(),
        from: None,
        redo: Vec::new(),
        yes: true,
        aws_profile: None,
        jobs: 4,
    }
}

/// Asks on a terminal; without one, only `--yes` goes on.
fn confirm(args: &RestoreArgs, archive: &crate::backup::Archive) -> Result<(), StepError> {
    let manifest = &archive.manifest;
    crate::errln!(
        "Restore `{}` (profile `{}`, made by stackinstall {} at {}): the credentials, the configuration, the TLS pair, K3s's datastore and the databases' contents on this host are replaced by the backup's.",
        args.file.display(),
        manifest.profile,
        manifest.stackinstall,
        manifest.created
    );
    if args.yes {
        return Ok(());
    }
    if !crate::ask::can_ask() {
        return Err(StepError::input(
            "restore needs a confirmation, and there is no terminal to ask on: nothing was changed",
            "run it again with --yes",
        ));
    }
    match dialoguer::Confirm::new()
        .with_prompt("Replace them?")
        .default(false)
        .interact()
    {
        Ok(true) => Ok(()),
        _ => Err(StepError::input(
            "not confirmed: nothing was changed",
            "run it again and answer yes, or pass --yes",
        )),
    }
}
