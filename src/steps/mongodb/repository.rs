//! MongoDB's own apt repository for the host's release: the signing key
//! (ASCII-armoured, which apt reads from a `.asc` `signed-by` file, so no
//! `gpg` is needed), checked against the fingerprint the profile pins for
//! the series (`[mongodb.signing_keys]`), and one source list. Both are only
//! added when mongodb-org is still to be installed.

use std::time::Duration;

use crate::context::Context;
use crate::host;
use crate::pgp;
use crate::steps::{Action, ActionKind, StepError};

/// The custom action that downloads the signing key.
pub const ADD_KEY: &str = "add-repository-key";
const REPOSITORY: &str = "https://repo.mongodb.org/apt";
const KEY_BEGINNING: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// The releases MongoDB publishes packages of each series for.
fn releases(version: &str) -> &'static [&'static str] {
    match version {
        "7.0" => &["focal", "jammy", "bookworm"],
        "8.0" => &["focal", "jammy", "noble", "bookworm"],
        _ => &[],
    }
}

fn key_url(version: &str) -> String {
    format!("https://www.mongodb.org/static/pgp/server-{version}.asc")
}

/// Where the signing key goes.
pub fn key_path(version: &str) -> String {
    format!("/usr/share/keyrings/mongodb-server-{version}.asc")
}

fn list_path(version: &str) -> String {
    format!("/etc/apt/sources.list.d/mongodb-org-{version}.list")
}

/// The source list for `os` (os-release `ID`) `codename`, or `None` where
/// MongoDB publishes no `version` packages.
pub fn source_list(os: &str, codename: &str, version: &str) -> Option<String> {
    if !releases(version).contains(&codename) {
        return None;
    }
    let key = key_path(version);
    let line = match (os, codename) {
        ("debian", "bookworm") => format!(
            "deb [ signed-by={key} ] {REPOSITORY}/debian {codename}/mongodb-org/{version} main"
        ),
        ("ubuntu", "focal" | "jammy" | "noble") => format!(
            "deb [ arch=amd64,arm64 signed-by={key} ] {REPOSITORY}/ubuntu {codename}/mongodb-org/{version} multiverse"
        ),
        _ => return None,
    };
    Some(format!(
        "# Added by stackinstall for mongodb-org {version}\n{line}\n"
    ))
}

/// The actions that add the repository, before the packages are installed.
pub fn actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let version = &context.config.mongodb.version;
    let fields =
        host::system::os_release(&context.host.path("/etc/os-release")).unwrap_or_default();
    let field = |key: &str| fields.get(key).cloned().unwrap_or_default();
    let os = field("ID");
    let codename = match field("VERSION_CODENAME") {
        empty if empty.is_empty() => field("UBUNTU_CODENAME"),
        codename => codename,
    };
    let text = source_list(&os, &codename, version).ok_or_else(|| {
        StepError::input(
            format!("MongoDB publishes no mongodb-org {version} packages for {os} `{codename}`"),
            format!(
                "its {version} packages are for {}; set `[mongodb] version` to a series made for this release, or install mongodb-org yourself and run again",
                releases(version).join(", ")
            ),
        )
    })?;
    let mut actions = Vec::new();
    let key = context.host.path(key_path(version));
    if !key.exists() {
        let check = match context.config.mongodb.signing_keys.get(version) {
            Some(pinned) => format!(
                "check its fingerprint is {} (from {})",
                pgp::normalize(&pinned.fingerprint),
                pinned.source
            ),
            None => format!(
                "NOT PINNED: no fingerprint for series {version} in [mongodb.signing_keys], the key is trusted as served"
            ),
        };
        let detail = format!(
            "download {}, {check}, write {}",
            key_url(version),
            context.shown(&key).display()
        );
        actions.push(Action::custom(ActionKind::File, ADD_KEY, detail));
    }
    let list = context.host.path(list_path(version));
    if host::fs::read_optional(&list)?.as_deref() != Some(text.as_str()) {
        actions.push(Action::write(
            list.clone(),
            &context.shown(&list),
            text.into_bytes(),
            0o644,
        ));
    }
    Ok(actions)
}

/// Downloads the signing key; returns whether it wrote it.
pub fn add_key(context: &Context) -> Result<bool, StepError> {
    let version = &context.config.mongodb.version;
    let url = key_url(version);
    let key = host::download::fetch(&url, Duration::from_secs(120))?;
    if !String::from_utf8_lossy(&key)
        .trim_start()
        .starts_with(KEY_BEGINNING)
    {
        return Err(StepError::failed(
            format!("`{url}` did not answer with a PGP public key"),
            "check the host's network access to www.mongodb.org (a proxy or captive portal?), then run again",
        ));
    }
    check_fingerprint(context, &url, &key)?;
    Ok(host::fs::ensure_file(
        &context.host.path(key_path(version)),
        &key,
        0o644,
    )?)
}

/// Refuses a key whose fingerprint is not the pinned one; warns when the
/// series has no pin (refuses with `[downloads] require_pins`).
fn check_fingerprint(context: &Context, url: &str, key: &[u8]) -> Result<(), StepError> {
    let version = &context.config.mongodb.version;
    let found = pgp::fingerprint(&String::from_utf8_lossy(key)).map_err(|error| {
        StepError::failed(
            format!("the signing key from `{url}` is unusable: {error}"),
            "check the host's network access to www.mongodb.org, then run again",
        )
    })?;
    let Some(pinned) = context.config.mongodb.signing_keys.get(version) else {
        if context.config.downloads.require_pins {
            return Err(StepError::input(
                format!(
                    "`[downloads] require_pins` is set, but MongoDB {version}'s signing key has no pinned fingerprint (it has {found})"
                ),
                format!(
                    "add `[mongodb.signing_keys.\"{version}\"]` with the `fingerprint` MongoDB publishes and its `source`"
                ),
            ));
        }
        context.ui.warn(&format!(
            "MongoDB {version}'s signing key is NOT PINNED: its fingerprint {found} is trusted as served by `{url}`"
        ));
        return Ok(());
    };
    let expected = pgp::normalize(&pinned.fingerprint);
    if found != expected {
        return Err(StepError::failed(
            format!(
                "the signing key from `{url}` has fingerprint {found}, but the profile pins {expected} (from {}); it was not installed",
                pinned.source
            ),
            "something between this host and www.mongodb.org serves another key: do not install from it; check the network, then run again",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_release_gets_its_own_repository_line() {
        let jammy = source_list("ubuntu", "jammy", "7.0").unwrap();
        assert!(jammy.ends_with("deb [ arch=amd64,arm64 signed-by=/usr/share/keyrings/mongodb-server-7.0.asc ] https://repo.mongodb.org/apt/ubuntu jammy/mongodb-org/7.0 multiverse\n"), "{jammy}");
        let bookworm = source_list("debian", "bookworm", "7.0").unwrap();
        assert!(bookworm.ends_with("deb [ signed-by=/usr/share/keyrings/mongodb-server-7.0.asc ] https://repo.mongodb.org/apt/debian bookworm/mongodb-org/7.0 main\n"), "{bookworm}");
        assert_eq!(
            source_list("ubuntu", "noble", "7.0"),
            None,
            "7.0 has no noble packages"
        );
        assert!(source_list("ubuntu", "noble", "8.0").is_some());
        assert_eq!(source_list("ubuntu", "bionic", "7.0"), None);
    }
}
