//! `stackinstall backup`: one archive of what the host needs to be rebuilt
//! (see `src/backup.rs`), encrypted with age to a passphrase asked on a
//! terminal or to the key of `[backup] key_file`; `--unencrypted` writes
//! it root-only and says so loudly. `backup --verify FILE` decrypts an
//! archive and checks every member against its manifest.

use std::path::{Path, PathBuf};

use super::Result;

use crate::backup::{self, Archive, ArchiveError, Protection};
use crate::cli::BackupArgs;
use crate::config::{Config, Flags};
use crate::context::Context;
use crate::host::{self, Host};
use crate::steps::StepError;
use crate::ui::Ui;

/// Runs `backup`.
pub fn run(root: &Path, args: BackupArgs) -> Result<()> {
    let config = super::load_config(&args.config, Flags::default())?;
    if let Some(file) = &args.verify {
        return verify(root, &config, file);
    }
    if !host::system::is_root() {
        return Err(StepError::input(
            "stackinstall backup must run as root: it reads the credentials, K3s's datastore and the databases",
            "run it with sudo",
        )
        .into());
    }
    let host = Host::new(root);
    // Asked before anything is read: K3s is not stopped while a person types.
    let protection = match args.scheduled {
        true => scheduled_protection(&host, &config)?,
        false => protection_for_writing(&host, &config, args.unencrypted)?,
    };
    let mut context = Context::new(config, host, Ui::detect(false), false, &super::home_dir())?;
    let _lock = context.state_file().lock()?;
    context.reload_state()?;
    if context.state.steps.is_empty() {
        return Err(StepError::input(
            format!(
                "there is nothing to back up: `{}` records no step",
                context.state_file().path().display()
            ),
            "run `stackinstall install` first",
        )
        .into());
    }
    context.log_path = Some(host::log::start(
        &context.host.path(super::install::LOG_DIR),
        "backup",
    )?);
    tracing::info!("stackinstall {} backup", env!("CARGO_PKG_VERSION"));
    let path = output_path(&context, &args, &protection);
    let (manifest, size) = backup::take(&context, &path, &protection, args.out.is_none())?;
    print_written(&path, size, &manifest, &protection);
    if args.scheduled {
        prune(&context)?;
    }
    if let Some(log) = &context.log_path {
        crate::outln!("Log: {}", log.display());
    }
    Ok(())
}

/// `[backup] directory`/`backup-TIME.tar.gz.age` (`.tar.gz` unencrypted),
/// or `--out`; `scheduled-backup-TIME.tar.gz.age` for `--scheduled`.
fn output_path(context: &Context, args: &BackupArgs, protection: &Protection) -> PathBuf {
    if let Some(out) = &args.out {
        return out.clone();
    }
    let directory = context.host.path(&context.config.backup.directory);
    if args.scheduled {
        return directory.join(backup::scheduled_name(&host::log::file_stamp()));
    }
    let extension = match protection {
        Protection::None => "tar.gz",
        _ => "tar.gz.age",
    };
    directory.join(format!("backup-{}.{extension}", host::log::file_stamp()))
}

/// A scheduled backup's key: `[backup] key_file`'s, never a passphrase
/// (nobody is there to type it) nor nothing.
fn scheduled_protection(host: &Host, config: &Config) -> Result<Protection, StepError> {
    match backup::key_file(host, config)? {
        Some(key) => Ok(Protection::KeyFile(key)),
        None => Err(StepError::input(
            "a scheduled backup is encrypted to `[backup] key_file`, and none is set: nothing was written",
            "make a key with `age-keygen -o /etc/stackinstall/backup.key` (chmod 600), set `[backup] key_file` to it and run `sudo stackinstall install` again",
        )),
    }
}

/// Keeps the newest `[backup] keep` scheduled backups of `[backup]
/// directory` and removes the older ones (only scheduled backups' names).
fn prune(context: &Context) -> Result<(), StepError> {
    let directory = context.host.path(&context.config.backup.directory);
    let keep = usize::try_from(context.config.backup.keep).unwrap_or(usize::MAX);
    let removed = host::backup::prune(&directory, keep, backup::is_scheduled_name)?;
    for name in &removed {
        tracing::info!("removed the older scheduled backup {name}");
        crate::outln!("Removed the older scheduled backup {name} (keeping the newest {keep})");
    }
    Ok(())
}

/// The key file's key, else a passphrase asked twice on a terminal;
/// nothing without either (unless `--unencrypted`).
fn protection_for_writing(
    host: &Host,
    config: &Config,
    unencrypted: bool,
) -> Result<Protection, StepError> {
    if unencrypted {
        return Ok(Protection::None);
    }
    if let Some(key) = backup::key_file(host, config)? {
        return Ok(Protection::KeyFile(key));
    }
    if !crate::ask::can_ask() {
        return Err(StepError::input(
            "the backup holds every password and the cluster token, and there is no key file (`[backup] key_file`) nor a terminal to ask a passphrase on: nothing was written",
            "make a key with `age-keygen -o /etc/stackinstall/backup.key` (chmod 600) and set `[backup] key_file` to it, run on a terminal, or pass --unencrypted",
        ));
    }
    crate::ask::new_passphrase()
        .map(Protection::Passphrase)
        .map_err(|error| {
            StepError::input(
                format!("no passphrase given: {error}"),
                "run it again and type the passphrase twice",
            )
        })
}

fn print_written(path: &Path, size: usize, manifest: &backup::Manifest, protection: &Protection) {
    crate::outln!(
        "Backup written: {} ({} bytes, {} members, mode 0600)",
        path.display(),
        size,
        manifest.members.len()
    );
    match protection {
        Protection::Passphrase(_) => {
            crate::outln!(
                "Encrypted with age to the passphrase you typed: without it the backup cannot be read."
            )
        }
        Protection::KeyFile(_) => crate::outln!(
            "Encrypted with age to the key of `[backup] key_file`: keep a copy of that key away from this host."
        ),
        Protection::None => crate::errln!(
            "WARNING: the backup `{}` is NOT ENCRYPTED: it holds every password, the TLS key and the cluster token in clear. It is root's, mode 0600: keep it so, or encrypt it (`age -p`) before it leaves this host.",
            path.display()
        ),
    }
    for member in &manifest.members {
        crate::outln!(
            "  {:<40} {:>10} bytes  {}",
            member.name,
            member.size,
            member.what
        );
    }
    for left in &manifest.left_out {
        crate::outln!("  left out: {} ({})", left.what, left.why);
    }
    crate::outln!(
        "Check it with `stackinstall backup --verify {}`.",
        path.display()
    );
}

/// Reads `file`, decrypts it (with the key file, else a passphrase asked
/// on a terminal) and checks every member against the manifest.
fn verify(root: &Path, config: &Config, file: &Path) -> Result<()> {
    let archive = open(&Host::new(root), config, file)?;
    let manifest = &archive.manifest;
    crate::outln!(
        "{}: a backup of profile `{}` made by stackinstall {} at {}{}",
        file.display(),
        manifest.profile,
        manifest.stackinstall,
        manifest.created,
        if archive.encrypted {
            ""
        } else {
            " (NOT ENCRYPTED)"
        }
    );
    for member in &manifest.members {
        crate::outln!(
            "  {:<40} {:>10} bytes  sha256 {}",
            member.name,
            member.size,
            member.sha256
        );
    }
    crate::outln!(
        "verified: all {} members match the manifest's SHA-256",
        manifest.members.len()
    );
    Ok(())
}

/// Reads, decrypts and checks the archive `file` (for `--verify` and `restore`).
pub fn open(host: &Host, config: &Config, file: &Path) -> Result<Archive, StepError> {
    let bytes = host::backup::read_member(file)?.ok_or_else(|| {
        StepError::input(
            format!("there is no backup `{}`", file.display()),
            "give the path `stackinstall backup` printed",
        )
    })?;
    let protection = match backup::is_encrypted(&bytes) {
        false => Protection::None,
        true if !backup::needs_passphrase(&bytes) => match backup::key_file(host, config)? {
            Some(key) => Protection::KeyFile(key),
            None => {
                return Err(StepError::input(
                    format!(
                        "`{}` is encrypted to a key, and `[backup] key_file` is not set",
                        file.display()
                    ),
                    "set `[backup] key_file` (in `--config FILE` or STACKINSTALL_BACKUP__KEY_FILE) to the key it was made with",
                ));
            }
        },
        true if crate::ask::can_ask() => {
            Protection::Passphrase(crate::ask::passphrase().map_err(|error| {
                StepError::input(format!("no passphrase given: {error}"), "run it again")
            })?)
        }
        true => {
            return Err(StepError::input(
                format!(
                    "`{}` is encrypted to a passphrase, and there is no terminal to ask it on",
                    file.display()
                ),
                "run it on a terminal",
            ));
        }
    };
    backup::unpack(&bytes, &protection).map_err(|error| refused(file, error))
}

fn refused(file: &Path, error: ArchiveError) -> StepError {
    StepError::failed(
        format!("the backup `{}` is refused: {error}", file.display()),
        "it was changed or damaged after it was written (or it is not a stackinstall backup): use another copy",
    )
}
