//! `systemctl` (systemd's systemctl(1)): units enabled and active, kept in
//! `state/systemd.json`.
//!
//! A unit is there when the state knows it, when its unit file is in the
//! world's `/etc/systemd/system/`, or, in a world whose servers run
//! (`units_present`), when a package would bring it: not `k3s` or
//! `k3s-agent`, which only K3s's install script makes, nor stackinstall's own units, nor a mount
//! unit. K3s's unit being active is what makes the fake cluster answer.
//! Starting or restarting `k3s` is K3s starting (`host::k3s_starts`: it
//! reads its configuration file and writes its kubeconfig again).
//! Exit codes as systemctl(1) gives them: `is-active` 3 for a unit that is
//! not active, `is-enabled` 1, `start`/`restart` 5 for a unit that is not
//! there.
//!
//! A mount unit written to `/etc/systemd/system/` starts as systemd starts
//! one (systemd.mount(5)): its name must be its `Where=` escaped as
//! `systemd-escape --path` does (else systemd refuses to load it, "Where=
//! setting doesn't match unit name", and `start` says the unit "has a bad
//! unit file setting"), and a bind mount's `What=` must exist (mount(8)
//! fails, and so does the job). Nothing is mounted: the fake keeps books.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::flags::{self, Refused, Spec};
use crate::{Fake, Reply};

const FILE: &str = "systemd.json";

/// The units the state knows.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Units {
    units: BTreeMap<String, Unit>,
}

#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub enabled: bool,
    pub active: bool,
}

/// `k3s` -> `k3s.service`; a unit with a suffix stays as it is.
pub fn unit_name(name: &str) -> String {
    let known = [
        ".service", ".timer", ".socket", ".target", ".mount", ".path",
    ];
    if known.iter().any(|suffix| name.ends_with(suffix)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

impl Units {
    /// The units of the world `fake` runs in.
    pub fn load(fake: &Fake) -> Self {
        Self::load_from(&fake.state)
    }

    /// The units the state directory `state` knows.
    pub fn load_from(state: &Path) -> Self {
        std::fs::read(state.join(FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Saves the units into the state directory `state`.
    pub fn save_to(&self, state: &Path) {
        let text = serde_json::to_string_pretty(self).expect("units serialize");
        std::fs::write(state.join(FILE), text).expect("the state is writable");
    }

    fn save(&self, fake: &Fake) {
        self.save_to(&fake.state);
    }

    /// Sets the unit's state, without saving.
    pub fn put(&mut self, name: &str, unit: Unit) {
        self.units.insert(unit_name(name), unit);
    }

    /// The state's record of the unit (`None`: the state does not know it).
    pub fn known(&self, name: &str) -> Option<Unit> {
        self.units.get(&unit_name(name)).copied()
    }

    /// The unit's state, `None` when it is not there.
    pub fn get(&self, fake: &Fake, name: &str) -> Option<Unit> {
        let name = unit_name(name);
        if let Some(unit) = self.units.get(&name) {
            return Some(*unit);
        }
        if fake
            .host_path(&format!("/etc/systemd/system/{name}"))
            .is_file()
        {
            return Some(Unit::default());
        }
        // A mount unit comes from an administrator's file (or fstab), never
        // a package.
        let packaged = name != "k3s.service"
            && name != "k3s-agent.service"
            && !name.starts_with("stackinstall-")
            && !name.ends_with(".mount");
        (fake.config.units_present && packaged).then_some(Unit {
            enabled: true,
            active: true,
        })
    }

    /// Whether the unit is there and active.
    pub fn active(&self, fake: &Fake, name: &str) -> bool {
        self.get(fake, name).is_some_and(|unit| unit.active)
    }

    /// Sets the unit's state and saves the state. A unit a package brings
    /// (see `get`) is kept only while it differs from how it came: its
    /// restart leaves no trace, as on the host.
    pub fn set(&mut self, fake: &Fake, name: &str, unit: Unit) {
        self.units.remove(&unit_name(name));
        if self.get(fake, name) != Some(unit) {
            self.units.insert(unit_name(name), unit);
        }
        self.save(fake);
    }

    /// Forgets the unit: its files are gone.
    pub fn remove(&mut self, fake: &Fake, name: &str) {
        self.units.remove(&unit_name(name));
        self.save(fake);
    }

    /// K3s stops (its API no longer answers), its unit stays.
    pub fn stop_k3s(&mut self, fake: &Fake) {
        if let Some(unit) = self.get(fake, "k3s") {
            self.set(
                fake,
                "k3s",
                Unit {
                    active: false,
                    ..unit
                },
            );
        }
    }
}

/// The path a mount unit's name stands for: systemd's unescaping of
/// `systemd-escape --path` (`-` is `/`, `\xNN` the byte NN).
fn mount_point(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".mount")?;
    if stem == "-" {
        return Some("/".into());
    }
    let mut bytes = Vec::new();
    let mut rest = stem.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match byte {
            b'-' => {
                bytes.push(b'/');
                rest = tail;
            }
            b'\\' if tail.first() == Some(&b'x') && tail.len() >= 3 => {
                let hex = std::str::from_utf8(&tail[1..3]).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[3..];
            }
            byte => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    Some(format!("/{}", String::from_utf8(bytes).ok()?))
}

/// Why starting the mount unit `name` fails as it would under systemd,
/// `None` for another unit or one that starts.
fn mount_refusal(fake: &Fake, name: &str) -> Option<Reply> {
    let name = unit_name(name);
    let point = mount_point(&name)?;
    let text =
        std::fs::read_to_string(fake.host_path(&format!("/etc/systemd/system/{name}"))).ok()?;
    let setting = |key: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    if setting("Where") != Some(point.as_str()) {
        return Some(Reply::fail(
            1,
            format!("Failed to start {name}: Unit {name} has a bad unit file setting.\n"),
        ));
    }
    let what = setting("What").unwrap_or_default();
    if !fake.host_path(what).exists() {
        return Some(Reply::fail(
            1,
            format!(
                "Job for {name} failed.\nSee \"systemctl status {name}\" and \"journalctl -xeu {name}\" for details.\n"
            ),
        ));
    }
    None
}

const SPEC: Spec = Spec {
    values: &[&["--state"], &["-p", "--property"]],
    switches: &[
        &["-q", "--quiet"],
        &["--now"],
        &["--no-block"],
        &["--no-pager"],
        &["--no-legend"],
        &["-a", "--all"],
    ],
};

pub fn run(fake: &Fake) -> Reply {
    let parsed = match flags::parse(&fake.args, &SPEC) {
        Ok(parsed) => parsed,
        Err(Refused::Unknown(flag)) => {
            return Reply::fail(1, format!("systemctl: unrecognized option '{flag}'\n"));
        }
        Err(Refused::Shorthand(letter, _)) => {
            return Reply::fail(1, format!("systemctl: invalid option -- '{letter}'\n"));
        }
        Err(Refused::MissingValue(flag)) => {
            return Reply::fail(
                1,
                format!("systemctl: option '{flag}' requires an argument\n"),
            );
        }
    };
    let Some((verb, names)) = parsed.positional.split_first() else {
        return Reply::fail(1, "systemctl: this fake lists no units; name a verb\n");
    };
    let quiet = parsed.switch("-q");
    let mut units = Units::load(fake);
    match verb.as_str() {
        "daemon-reload" => Reply::ok(),
        // systemctl(1) `list-unit-files [PATTERN...]`: one line a unit file,
        // `UNIT STATE PRESET` (`--no-legend`: no header or footer); with
        // `--state=enabled`, the enabled ones. The fake knows the units of
        // its state (a package's units in a world whose servers run are not
        // listed: that world has no package database).
        "list-unit-files" => {
            let state = parsed.value("--state");
            let mut reply = Reply::ok();
            for (name, unit) in &units.units {
                let word = if unit.enabled { "enabled" } else { "disabled" };
                let asked = names.is_empty() || names.iter().any(|n| unit_name(n) == *name);
                if asked && state.is_none_or(|state| state == word) {
                    reply.stdout.push_str(&format!("{name} {word} enabled\n"));
                }
            }
            reply
        }
        // systemctl(1) `list-sockets`: `LISTEN UNIT ACTIVATES`; the fake
        // world has no socket units.
        "list-sockets" => Reply::ok(),
        // systemctl(1) `show [UNIT...]`: per unit, its properties as
        // `KEY=VALUE` lines (`--property=A,B`: those alone), units in the
        // order named, an empty line between two units. A unit that is not
        // there has `ActiveState=inactive` and an empty `UnitFileState`
        // (and `LoadState=not-found`). Without a unit it shows the manager,
        // which this fake does not model.
        "show" => {
            if names.is_empty() {
                return Reply::fail(1, "systemctl: this fake shows units only; name one\n");
            }
            let wanted: Vec<&str> = (parsed.values("-p").into_iter())
                .flat_map(|keys| keys.split(','))
                .filter(|key| !key.is_empty())
                .collect();
            let mut blocks = Vec::new();
            for name in names {
                let unit = units.get(fake, name);
                let properties = [
                    ("Id", unit_name(name)),
                    (
                        "LoadState",
                        if unit.is_some() {
                            "loaded"
                        } else {
                            "not-found"
                        }
                        .into(),
                    ),
                    (
                        "ActiveState",
                        match unit {
                            Some(unit) if unit.active => "active",
                            _ => "inactive",
                        }
                        .into(),
                    ),
                    (
                        "UnitFileState",
                        match unit {
                            Some(unit) if unit.enabled => "enabled",
                            Some(_) => "disabled",
                            None => "",
                        }
                        .into(),
                    ),
                ];
                let block: String = (properties.iter())
                    .filter(|(key, _)| wanted.is_empty() || wanted.contains(key))
                    .map(|(key, value)| format!("{key}={value}\n"))
                    .collect();
                blocks.push(block);
            }
            Reply::out(blocks.join("\n"))
        }
        "is-active" => {
            let mut reply = Reply::ok();
            for name in names {
                let active = units.active(fake, name);
                if !quiet {
                    reply
                        .stdout
                        .push_str(if active { "active\n" } else { "inactive\n" });
                }
                if !active {
                    reply.code = 3;
                }
            }
            reply
        }
        "is-enabled" => {
            let mut reply = Reply::ok();
            for name in names {
                match units.get(fake, name) {
                    Some(unit) => {
                        if !quiet {
                            reply.stdout.push_str(if unit.enabled {
                                "enabled\n"
                            } else {
                                "disabled\n"
                            });
                        }
                        if !unit.enabled {
                            reply.code = 1;
                        }
                    }
                    None => {
                        reply.stderr.push_str(&format!(
                            "Failed to get unit file state for {}: No such file or directory\n",
                            unit_name(name)
                        ));
                        reply.code = 1;
                    }
                }
            }
            reply
        }
        "enable" | "disable" => {
            let enable = verb == "enable";
            let now = parsed.switch("--now");
            for name in names {
                let Some(unit) = units.get(fake, name) else {
                    return Reply::fail(
                        1,
                        format!(
                            "Failed to {verb} unit: Unit file {} does not exist.\n",
                            unit_name(name)
                        ),
                    );
                };
                if let Some(refused) = (now && enable).then(|| mount_refusal(fake, name)).flatten()
                {
                    return refused;
                }
                let active = if now { enable } else { unit.active };
                units.set(
                    fake,
                    name,
                    Unit {
                        enabled: enable,
                        active,
                    },
                );
            }
            Reply::ok()
        }
        "start" | "stop" | "restart" => {
            for name in names {
                let Some(unit) = units.get(fake, name) else {
                    return Reply::fail(
                        5,
                        format!(
                            "Failed to {verb} {}: Unit {} not found.\n",
                            unit_name(name),
                            unit_name(name)
                        ),
                    );
                };
                if let Some(refused) = (verb != "stop")
                    .then(|| mount_refusal(fake, name))
                    .flatten()
                {
                    return refused;
                }
                if ["k3s.service", "k3s-agent.service"].contains(&unit_name(name).as_str())
                    && verb != "stop"
                    && let Err(error) = super::host::k3s_starts(fake)
                {
                    units.set(
                        fake,
                        name,
                        Unit {
                            active: false,
                            ..unit
                        },
                    );
                    return Reply::fail(
                        1,
                        format!(
                            "Job for k3s.service failed because the control process exited with error code.\n(k3s: {error})\n"
                        ),
                    );
                }
                units.set(
                    fake,
                    name,
                    Unit {
                        active: verb != "stop",
                        ..unit
                    },
                );
            }
            Reply::ok()
        }
        other => Reply::fail(1, format!("Unknown command verb '{other}'.\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::mount_point;

    #[test]
    fn a_mount_unit_name_stands_for_its_path_as_systemd_unescapes_it() {
        // `systemd-escape --unescape --path` on Debian 12.
        for (name, path) in [
            ("data-stackbill.mount", "/data/stackbill"),
            ("srv-nfs\\x2ddata.mount", "/srv/nfs-data"),
            ("\\x2edot-a.mount", "/.dot/a"),
            ("-.mount", "/"),
        ] {
            assert_eq!(mount_point(name).as_deref(), Some(path), "{name}");
        }
        assert_eq!(mount_point("data.service"), None);
    }
}
