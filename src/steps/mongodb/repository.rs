//! MongoDB's own apt repository for the host's release: the signing key
//! (ASCII-armoured, which apt reads from a `.asc` `signed-by` file, so no
//! `gpg` is needed), checked against the fingerprint the profile pins for
//! the series (`[mongodb.signing_keys]`), refused when the file holds a
//! second key, and written as that one key armoured again (nothing else
//! the download held reaches apt), and one source list. Both are only
//! added when mongodb-org is still to be installed. The series is the
//! profile's `[mongodb] version`, or, when that is empty, the first of 7.0
//! and 8.0 that MongoDB publishes packages of for the host's release.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::SigningKey;
use crate::context::Context;
use crate::host;
use crate::pgp;
use crate::steps::{Action, ActionKind, Change, StepError};

const KEY_BEGINNING: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// The series chosen, in this order, when the profile pins none: the
/// architecture document's 7.0, then 8.0 (the only one for Ubuntu 24.04).
const SERIES: [&str; 2] = ["7.0", "8.0"];

/// The releases MongoDB publishes packages of each series for, from its
/// installation pages (Community Edition on Ubuntu and on Debian): 7.0 for
/// Ubuntu 20.04 and 22.04 and Debian 12, 8.0 for Ubuntu 20.04, 22.04 and
/// 24.04 and Debian 12.
fn releases(version: &str) -> &'static [&'static str] {
    match version {
        "7.0" => &["focal", "jammy", "bookworm"],
        "8.0" => &["focal", "jammy", "noble", "bookworm"],
        _ => &[],
    }
}

/// The host's release: os-release `ID` and codename (from `VERSION_ID`
/// for a supported release whose os-release names none).
pub fn host_release(context: &Context) -> (String, String) {
    let fields =
        host::system::os_release(&context.host.path("/etc/os-release")).unwrap_or_default();
    let field = |key: &str| fields.get(key).cloned().unwrap_or_default();
    let (os, version) = (field("ID"), field("VERSION_ID"));
    let known = match (os.as_str(), version.as_str()) {
        ("ubuntu", "20.04") => "focal",
        ("ubuntu", "22.04") => "jammy",
        ("ubuntu", "24.04") => "noble",
        ("debian", "12") => "bookworm",
        _ => "",
    };
    let codename = [field("VERSION_CODENAME"), field("UBUNTU_CODENAME")]
        .into_iter()
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| known.to_string());
    (os, codename)
}

/// The mongodb-org series for `os` `codename`: `pinned` when MongoDB
/// publishes it there, the first of [`SERIES`] that it publishes when
/// `pinned` is empty; otherwise an input error naming where it exists.
pub fn series_for(os: &str, codename: &str, pinned: Option<&str>) -> Result<String, StepError> {
    let available = |series: &str| source_list(os, codename, series).is_some();
    let Some(pinned) = pinned else {
        return SERIES
            .into_iter()
            .find(|series| available(series))
            .map(str::to_string)
            .ok_or_else(|| {
                StepError::input(
                    format!("MongoDB publishes no mongodb-org packages for {os} `{codename}` (series {} looked at)", SERIES.join(", ")),
                    "install mongodb-org yourself and run again, or use Ubuntu 20.04, 22.04, 24.04 or Debian 12",
                )
            });
    };
    if available(pinned) {
        return Ok(pinned.to_string());
    }
    let fitting: Vec<&str> = SERIES.into_iter().filter(|s| available(s)).collect();
    let advice = match fitting.as_slice() {
        [] => String::new(),
        series => format!(" (for this host: {})", series.join(" or ")),
    };
    Err(StepError::input(
        format!("MongoDB publishes no mongodb-org {pinned} packages for {os} `{codename}`"),
        format!(
            "its {pinned} packages are for {}; set `[mongodb] version` to a series made for this release{advice}, or leave it empty to have one chosen",
            match releases(pinned) {
                [] => "no release stackinstall knows".to_string(),
                names => names.join(", "),
            }
        ),
    ))
}

/// The series this install uses on this host.
pub fn series(context: &Context) -> Result<String, StepError> {
    let (os, codename) = host_release(context);
    series_for(&os, &codename, context.config.mongodb.version.as_deref())
}

/// Where the signing key of `version` comes from (`[downloads]
/// mongodb_key`).
fn key_url(context: &Context, version: &str) -> String {
    context
        .config
        .downloads
        .mongodb_key
        .replace("{version}", version)
}

/// The signing key at `url`: fetched, or read from the host for a
/// `file://` path (a local mirror's copy).
fn fetch_key(context: &Context, url: &str) -> Result<Vec<u8>, StepError> {
    match url.strip_prefix("file://") {
        Some(path) => Ok(host::fs::read_bytes(&context.host.path(path))?),
        None => Ok(host::download::fetch(url, Duration::from_secs(120))?),
    }
}

/// Where the signing key goes.
pub fn key_path(version: &str) -> String {
    format!("/usr/share/keyrings/mongodb-server-{version}.asc")
}

pub fn list_path(version: &str) -> String {
    format!("/etc/apt/sources.list.d/mongodb-org-{version}.list")
}

/// The source list for `os` (os-release `ID`) `codename`, or `None` where
/// MongoDB publishes no `version` packages.
pub fn source_list(os: &str, codename: &str, version: &str) -> Option<String> {
    source_list_from("https://repo.mongodb.org/apt", os, codename, version)
}

/// [`source_list`] for the repository at `repository` (`[downloads]
/// mongodb_repository`).
pub fn source_list_from(
    repository: &str,
    os: &str,
    codename: &str,
    version: &str,
) -> Option<String> {
    let repository = repository.trim_end_matches('/');
    if !releases(version).contains(&codename) {
        return None;
    }
    let key = key_path(version);
    let line = match (os, codename) {
        ("debian", "bookworm") => format!(
            "deb [ signed-by={key} ] {repository}/debian {codename}/mongodb-org/{version} main"
        ),
        ("ubuntu", "focal" | "jammy" | "noble") => format!(
            "deb [ arch=amd64,arm64 signed-by={key} ] {repository}/ubuntu {codename}/mongodb-org/{version} multiverse"
        ),
        _ => return None,
    };
    Some(format!(
        "# Added by stackinstall for mongodb-org {version}\n{line}\n"
    ))
}

/// Uninstall: removes the source lists and keys of every series that the
/// install added (only a server the install put there gets them).
pub fn removals(context: &Context) -> Vec<Action> {
    let mut actions = Vec::new();
    for version in SERIES {
        for path in [list_path(version), key_path(version)] {
            let file = context.host.path(&path);
            if file.exists() {
                actions.push(Action::remove(context.host.reached(file.clone())));
            }
        }
    }
    actions
}

/// The actions that add the repository, before the packages are installed.
pub fn actions(context: &Context) -> Result<Vec<Action>, StepError> {
    let (os, codename) = host_release(context);
    let version = &series_for(&os, &codename, context.config.mongodb.version.as_deref())?;
    let repository = &context.config.downloads.mongodb_repository;
    let text = source_list_from(repository, &os, &codename, version)
        .expect("series_for checked the release");
    let mut actions = Vec::new();
    let key = context.host.path(key_path(version));
    if !key.exists() {
        actions.extend(Action::change(AddSigningKey {
            series: version.clone(),
            url: key_url(context, version),
            pin: context.config.mongodb.signing_keys.get(version).cloned(),
            path: key.clone(),
            shown: context.shown(&key),
        }));
    }
    let list = context.host.path(list_path(version));
    if host::fs::read_optional(&list)?.as_deref() != Some(text.as_str()) {
        actions.push(Action::write(
            context.host.reached(list.clone()),
            text.into_bytes(),
            0o644,
        ));
    }
    Ok(actions)
}

/// Downloads the series' signing key, checks that it is one key whose
/// fingerprint is the profile's pin for the series the step resolved (the
/// one the plan names), and writes that key alone for apt.
struct AddSigningKey {
    series: String,
    url: String,
    pin: Option<SigningKey>,
    path: PathBuf,
    shown: PathBuf,
}

impl Change for AddSigningKey {
    fn kind(&self) -> ActionKind {
        ActionKind::File
    }

    fn lines(&self) -> Vec<String> {
        let check = match &self.pin {
            Some(pinned) => format!(
                "check its fingerprint is {} (from {})",
                pgp::normalize(&pinned.fingerprint),
                pinned.source
            ),
            None => format!(
                "NOT PINNED: no fingerprint for series {} in [mongodb.signing_keys], the key is trusted as served",
                self.series
            ),
        };
        vec![format!(
            "download {}, {check}, write {}",
            self.url,
            self.shown.display()
        )]
    }

    fn apply(self: Box<Self>, context: &mut Context) -> Result<bool, StepError> {
        let url = &self.url;
        let key = fetch_key(context, url)?;
        if !String::from_utf8_lossy(&key)
            .trim_start()
            .starts_with(KEY_BEGINNING)
        {
            return Err(StepError::failed(
                format!("`{url}` did not answer with a PGP public key"),
                "check the host's network access to www.mongodb.org (a proxy or captive portal?), then run again",
            ));
        }
        let key = self.checked_key(context, &key)?;
        Ok(host::fs::ensure_file(
            &self.path,
            key.armoured().as_bytes(),
            0o644,
        )?)
    }
}

impl AddSigningKey {
    /// The one key in the download, refused when its fingerprint is not
    /// the pinned one or when the file holds another key beside it; warns
    /// when the series has no pin (refuses with `[downloads]
    /// require_pins`). What apt is given is this key alone.
    fn checked_key(&self, context: &Context, key: &[u8]) -> Result<pgp::PublicKey, StepError> {
        let (url, series) = (&self.url, &self.series);
        let key = pgp::single_key(&String::from_utf8_lossy(key)).map_err(|error| {
            StepError::failed(
                format!("the signing key from `{url}` is unusable: {error}; it was not installed"),
                "something between this host and www.mongodb.org serves another file than MongoDB's key: do not install from it; check the network, then run again",
            )
        })?;
        let found = &key.fingerprint;
        let Some(pinned) = &self.pin else {
            if context.config.downloads.require_pins {
                return Err(StepError::input(
                    format!(
                        "`[downloads] require_pins` is set, but MongoDB {series}'s signing key has no pinned fingerprint (it has {found})"
                    ),
                    format!(
                        "add `[mongodb.signing_keys.\"{series}\"]` with the `fingerprint` MongoDB publishes and its `source`"
                    ),
                ));
            }
            context.ui.warn(&format!(
                "MongoDB {series}'s signing key is NOT PINNED: its fingerprint {found} is trusted as served by `{url}`"
            ));
            return Ok(key);
        };
        let expected = pgp::normalize(&pinned.fingerprint);
        if *found != expected {
            return Err(StepError::failed(
                format!(
                    "the signing key from `{url}` has fingerprint {found}, but the profile pins {expected} (from {}); it was not installed",
                    pinned.source
                ),
                "something between this host and www.mongodb.org serves another key: do not install from it; check the network, then run again",
            ));
        }
        Ok(key)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_macros)]
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

    #[test]
    fn the_series_fits_the_release_unless_pinned_where_it_has_no_packages() {
        let releases = [
            ("ubuntu", "focal"),
            ("ubuntu", "jammy"),
            ("ubuntu", "noble"),
            ("debian", "bookworm"),
        ];
        // (pinned, the series chosen per release; None: refused in preflight)
        let table: [(Option<&str>, [Option<&str>; 4]); 3] = [
            (None, [Some("7.0"), Some("7.0"), Some("8.0"), Some("7.0")]),
            (Some("7.0"), [Some("7.0"), Some("7.0"), None, Some("7.0")]),
            (
                Some("8.0"),
                [Some("8.0"), Some("8.0"), Some("8.0"), Some("8.0")],
            ),
        ];
        let mut refused = 0;
        for (pinned, expected) in table {
            for ((os, codename), wanted) in releases.iter().zip(expected) {
                let chosen = series_for(os, codename, pinned);
                match wanted {
                    Some(series) => {
                        assert_eq!(chosen.unwrap(), series, "{os} {codename} {pinned:?}")
                    }
                    None => {
                        let error = chosen.unwrap_err();
                        assert!(error.is_input(), "{error}");
                        assert!(
                            error.hint().unwrap().contains("for this host: 8.0"),
                            "{error:?}"
                        );
                        refused += 1;
                    }
                }
            }
        }
        let error = series_for("ubuntu", "jammy", Some("6.0")).unwrap_err();
        assert!(
            error.to_string().contains("no mongodb-org 6.0 packages"),
            "{error}"
        );
        eprintln!(
            "series table: 12 cases (4 releases x unpinned, 7.0, 8.0), {refused} refused, plus an unknown series"
        );
    }
}
