//! `dpkg-query` (dpkg-query(1)) and `apt-get` (apt-get(8)) over one
//! package database: every package asked about by name installed
//! (`all_packages_installed`), or the list in `state/dpkg.json` that
//! `apt-get install` and `purge` change (`install` bringing the packages of
//! `package_dependencies` along, as apt brings a server's versioned
//! packages). Unknown options are refused in the tools' words.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::flags::{self, Refused, Spec};
use crate::{Fake, Reply};

const FILE: &str = "dpkg.json";

/// The installed packages of the state.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Database {
    pub installed: BTreeSet<String>,
}

impl Database {
    pub fn load(fake: &Fake) -> Self {
        std::fs::read(fake.state.join(FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save(&self, fake: &Fake) {
        let text = serde_json::to_string_pretty(self).expect("the database serializes");
        std::fs::write(fake.state.join(FILE), text).expect("the state is writable");
    }
}

/// Whether `name` matches `pattern`, whose `*` stands for any text.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head) && (head.len()..=name.len()).any(|at| glob(rest, &name[at..]))
        }
    }
}

/// `dpkg-query --show [--showformat=FORMAT] PACKAGE...`.
pub fn dpkg_query(fake: &Fake) -> Reply {
    const SPEC: Spec = Spec {
        values: &[&["-f", "--showformat"]],
        switches: &[&["-W", "--show"]],
    };
    let parsed = match flags::parse(&fake.args, &SPEC) {
        Ok(parsed) => parsed,
        Err(Refused::Unknown(flag) | Refused::MissingValue(flag)) => {
            return Reply::fail(
                2,
                format!(
                    "dpkg-query: error: unknown option {flag}\n\nUse --help for help about querying packages.\n"
                ),
            );
        }
        Err(Refused::Shorthand(letter, _)) => {
            return Reply::fail(
                2,
                format!(
                    "dpkg-query: error: unknown option -{letter}\n\nUse --help for help about querying packages.\n"
                ),
            );
        }
    };
    if !parsed.switch("-W") {
        return Reply::fail(2, "dpkg-query: error: this fake knows --show (-W) only\n");
    }
    let format = parsed
        .value("-f")
        .unwrap_or("${binary:Package}\t${Version}\n")
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let database = Database::load(fake);
    let mut reply = Reply::ok();
    for pattern in &parsed.positional {
        let found: Vec<String> = match (fake.config.all_packages_installed, pattern.contains('*')) {
            (true, false) => vec![pattern.clone()],
            (true, true) => vec![pattern.replace('*', "")],
            (false, _) => (database.installed.iter())
                .filter(|name| glob(pattern, name))
                .cloned()
                .collect(),
        };
        if found.is_empty() {
            reply.stderr.push_str(&format!(
                "dpkg-query: no packages found matching {pattern}\n"
            ));
            reply.code = 1;
        }
        for name in found {
            reply.stdout.push_str(
                &format
                    .replace("${binary:Package}", &name)
                    .replace("${Package}", &name)
                    .replace("${Status}", "install ok installed")
                    .replace("${Version}", "1.0-1"),
            );
        }
    }
    reply
}

/// `apt-get [-o OPTION=VALUE]... [-q] [-y] (update | install P... | purge P... | remove P...)`.
pub fn apt_get(fake: &Fake) -> Reply {
    const SPEC: Spec = Spec {
        values: &[&["-o", "--option"]],
        switches: &[
            &["-q", "--quiet"],
            &["-qq"],
            &["-y", "--yes", "--assume-yes"],
            &["--no-install-recommends"],
        ],
    };
    let parsed = match flags::parse(&fake.args, &SPEC) {
        Ok(parsed) => parsed,
        Err(Refused::Unknown(flag) | Refused::MissingValue(flag)) => {
            return Reply::fail(
                100,
                format!(
                    "E: Command line option {flag} is not understood in combination with the other options\n"
                ),
            );
        }
        Err(Refused::Shorthand(letter, _)) => {
            return Reply::fail(
                100,
                format!(
                    "E: Command line option '{letter}' [from -{letter}] is not understood in combination with the other options.\n"
                ),
            );
        }
    };
    if fake.config.apt_forbidden {
        return Reply::fail(
            100,
            "E: this test world's packages are all there: apt-get must not run\n",
        );
    }
    let Some((verb, packages)) = parsed.positional.split_first() else {
        return Reply::fail(100, "E: No command given\n");
    };
    let mut database = Database::load(fake);
    let mut reply = Reply::ok();
    match verb.as_str() {
        "update" => reply.stdout.push_str("Reading package lists... Done\n"),
        "install" => {
            for package in packages {
                let brought = fake.config.package_dependencies.get(package);
                for name in std::iter::once(package).chain(brought.into_iter().flatten()) {
                    if database.installed.insert(name.clone()) {
                        reply
                            .stdout
                            .push_str(&format!("Setting up {name} (1.0-1) ...\n"));
                    }
                }
            }
            database.save(fake);
        }
        "purge" | "remove" => {
            for package in packages {
                if database.installed.remove(package) {
                    reply
                        .stdout
                        .push_str(&format!("Removing {package} (1.0-1) ...\n"));
                } else {
                    reply.stdout.push_str(&format!(
                        "Package '{package}' is not installed, so not removed\n"
                    ));
                }
            }
            database.save(fake);
        }
        other => return Reply::fail(100, format!("E: Invalid operation {other}\n")),
    }
    reply
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs() {
        assert!(super::glob("mariadb-server*", "mariadb-server-10.11"));
        assert!(super::glob("mariadb-server*", "mariadb-server"));
        assert!(!super::glob("mariadb-server*", "mysql-server"));
        assert!(super::glob("mongodb-org", "mongodb-org"));
    }
}
