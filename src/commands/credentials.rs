//! `stackinstall credentials`: where the credentials file is, which
//! passwords it holds, and with `--reveal` the passwords themselves;
//! `credentials set SERVICE` puts an existing password into it (from
//! standard input, not echoed on a terminal, or from a 0600 file: never
//! from the command line).

use std::io::Read;
use std::path::Path;

use super::Result;

use crate::ask;
use crate::cli::{CredentialsAction, CredentialsArgs, CredentialsSetArgs};
use crate::config::Flags;
use crate::credentials::{Account, CredentialsFile};
use crate::host::{self, Host};
use crate::secret::Secret;
use crate::steps::StepError;

/// The longest password read from standard input or a file.
const PASSWORD_LIMIT: u64 = 4096;

/// Runs `credentials`.
pub fn run(root: &Path, args: CredentialsArgs) -> Result<()> {
    if let Some(CredentialsAction::Set(set)) = args.action {
        return set_password(root, set);
    }
    let file = CredentialsFile::new(&Host::new(root), &super::home_dir());
    let Some(credentials) = file.load()? else {
        return Err(StepError::failed(
            format!(
                "there is no credentials file `{}` yet",
                file.path().display()
            ),
            "`sudo stackinstall install` generates it",
        )
        .into());
    };
    crate::outln!(
        "Credentials file: {} (mode 0600, root only)",
        file.path().display()
    );
    for (service, account) in &credentials.accounts {
        if args.reveal {
            crate::outln!(
                "  {service:<10} user {:<12} password {}",
                account.username,
                account.password.expose()
            );
        } else {
            crate::outln!("  {service:<10} user {:<12} password set", account.username);
        }
    }
    if !args.reveal {
        crate::outln!("Add --reveal to print the passwords.");
    }
    Ok(())
}

/// Runs `credentials set SERVICE`.
fn set_password(root: &Path, args: CredentialsSetArgs) -> Result<()> {
    crate::steps::preflight::check_root()?;
    let config = super::load_config(&args.config, Flags::default())?;
    let service = args.service.as_str();
    let username = config.service_usernames()[service].clone();
    let password = match &args.from_file {
        Some(path) => read_password_file(path)?,
        None if ask::can_ask() => ask::password(service).map_err(|error| {
            StepError::input(
                format!("no password given: {error}"),
                "pipe it in, or pass --from-file FILE",
            )
        })?,
        None => read_password_stdin()?,
    };
    let file = CredentialsFile::new(&Host::new(root), &super::home_dir());
    let replaced = file.set(service, Account { username, password })?;
    crate::errln!(
        "the {service} password is in `{}`{}; `stackinstall install --skip-db` uses it",
        file.path().display(),
        if replaced {
            " (it replaced a different one)"
        } else {
            ""
        }
    );
    Ok(())
}

fn read_password_stdin() -> Result<Secret, StepError> {
    let mut text = String::new();
    std::io::stdin()
        .take(PASSWORD_LIMIT)
        .read_to_string(&mut text)
        .map_err(|error| {
            StepError::input(
                format!("cannot read the password from standard input: {error}"),
                "pipe in the password as one line of text",
            )
        })?;
    password_from(&text, "standard input")
}

fn read_password_file(path: &Path) -> Result<Secret, StepError> {
    let shown = path.display();
    match host::fs::mode_of(path) {
        None => {
            return Err(StepError::input(
                format!("--from-file `{shown}` cannot be read"),
                "give the path of a file holding the password (mode 0600)",
            ));
        }
        Some(mode) if mode & 0o077 != 0 => {
            return Err(StepError::input(
                format!("--from-file `{shown}` is mode {mode:04o}: others may read the password"),
                format!("run `chmod 600 {shown}` first"),
            ));
        }
        Some(_) => {}
    }
    let bytes = host::fs::read_bytes(path)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        StepError::input(
            format!("--from-file `{shown}` is not text"),
            "the file holds the password as one line of text",
        )
    })?;
    password_from(&text, &format!("`{shown}`"))
}

/// One line of text, without its line end.
fn password_from(text: &str, origin: &str) -> Result<Secret, StepError> {
    let line = text
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(text);
    if line.is_empty() {
        return Err(StepError::input(
            format!("no password in {origin}"),
            "give the password as one line of text",
        ));
    }
    if line.contains('\n') || line.len() as u64 >= PASSWORD_LIMIT {
        return Err(StepError::input(
            format!("{origin} holds more than one line: a password is one line"),
            "give the password as one line of text",
        ));
    }
    Ok(Secret::new(line))
}
