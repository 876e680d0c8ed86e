//! `stackinstall credentials`: where the credentials file is, which
//! passwords it holds, and with `--reveal` the passwords themselves.

use std::path::Path;

use anyhow::{Result, bail};

use crate::cli::CredentialsArgs;
use crate::credentials::CredentialsFile;
use crate::host::Host;

/// Runs `credentials`.
pub fn run(root: &Path, args: CredentialsArgs) -> Result<()> {
    let file = CredentialsFile::new(&Host::new(root), &super::home_dir());
    let Some(credentials) = file.load()? else {
        bail!(
            "there is no credentials file `{}` yet\nhint: `sudo stackinstall install` generates it",
            file.path().display()
        );
    };
    println!(
        "Credentials file: {} (mode 0600, root only)",
        file.path().display()
    );
    for (service, account) in &credentials.accounts {
        if args.reveal {
            println!(
                "  {service:<10} user {:<12} password {}",
                account.username,
                account.password.expose()
            );
        } else {
            println!("  {service:<10} user {:<12} password set", account.username);
        }
    }
    if !args.reveal {
        println!("Add --reveal to print the passwords.");
    }
    Ok(())
}
