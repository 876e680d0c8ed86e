//! The host's small programs: `exportfs` (exportfs(8)), K3s's install and
//! uninstall scripts (k3s-io/k3s `install.sh`), `ip -o link` (ip-link(8))
//! and `iptables-save` (iptables-save(8)).

use std::os::unix::fs::PermissionsExt;

use super::systemctl::{Unit, Units};
use crate::flags::{self, Refused, Spec};
use crate::{Fake, Reply};

/// `exportfs -ra` (re-export; the kernel here has no NFS server, so it
/// only keeps books) and `exportfs -v` (the export table: the world's
/// `/etc/exports` without its comments).
pub fn exportfs(fake: &Fake) -> Reply {
    let mut listed = false;
    for arg in &fake.args {
        let Some(letters) = arg.strip_prefix('-') else {
            return Reply::fail(
                1,
                format!("exportfs: this fake exports from /etc/exports only, not `{arg}`\n"),
            );
        };
        for letter in letters.chars() {
            match letter {
                'r' | 'a' | 'f' | 's' => {}
                'v' => listed = true,
                other => {
                    return Reply::fail(
                        1,
                        format!(
                            "exportfs: invalid option -- '{other}'\nusage: exportfs [-adfhioruvs] [host:/path]\n"
                        ),
                    );
                }
            }
        }
    }
    if !listed {
        return Reply::ok();
    }
    let exports = std::fs::read_to_string(fake.host_path("/etc/exports")).unwrap_or_default();
    Reply::out(
        exports
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    )
}

/// K3s's install script, run with `INSTALL_K3S_SKIP_DOWNLOAD=true`: makes
/// and starts the `k3s` unit, writes `k3s-uninstall.sh`, and K3s starts
/// (`k3s_starts`). `state/k3s-starts` gets a line saying whether the
/// kubelet's credential provider (config and plugin) was in place as K3s
/// started: K3s reads them only then.
pub fn k3s_install(fake: &Fake) -> Reply {
    let config = fake.host_path("/var/lib/rancher/credentialprovider/config.yaml");
    let plugin = fake.host_path("/var/lib/rancher/credentialprovider/bin/stackinstall");
    let executable = std::fs::metadata(&plugin).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    let line = match config.is_file() && executable {
        true => "provider in place\n",
        false => "no provider\n",
    };
    let starts = fake.state.join("k3s-starts");
    let before = std::fs::read_to_string(&starts).unwrap_or_default();
    std::fs::write(&starts, before + line).unwrap();
    if let Err(error) = k3s_starts(fake) {
        return Reply::fail(1, format!("[ERROR]  k3s: {error}\n"));
    }
    Units::load(fake).set(
        fake,
        "k3s",
        Unit {
            enabled: true,
            active: true,
        },
    );
    let script = fake.host_path("/usr/local/bin/k3s-uninstall.sh");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, "#!/bin/sh\nexec k3s-uninstall \"$@\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Reply::out("[INFO]  systemd: Starting k3s\n")
}

/// The server flags a K3s configuration file may set here (docs.k3s.io
/// "Configuration File": a key is a `k3s server` flag without `--`; K3s
/// refuses one it does not define, as its CLI refuses the flag).
const K3S_CONFIG_KEYS: [&str; 6] = [
    "cluster-cidr",
    "service-cidr",
    "https-listen-port",
    "tls-san",
    "disable",
    "write-kubeconfig-mode",
];

/// K3s starting (its install script, or `systemctl start`/`restart k3s`):
/// it reads `/etc/rancher/k3s/config.yaml` (the flags in `INSTALL_K3S_EXEC`
/// win over it), and writes its kubeconfig `/etc/rancher/k3s/k3s.yaml` at
/// every start (k3s `pkg/server/server.go` `writeKubeConfig`), its server
/// on `https-listen-port` (6443 without it), with the mode of
/// `write-kubeconfig-mode` (0600 without it). `state/k3s-config` keeps the
/// configuration file K3s last started with.
pub fn k3s_starts(fake: &Fake) -> Result<(), String> {
    let path = fake.host_path("/etc/rancher/k3s/config.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let config: serde_yaml_ng::Value = match text.trim().is_empty() {
        true => serde_yaml_ng::Value::Null,
        false => serde_yaml_ng::from_str(&text).map_err(|e| format!("config.yaml: {e}"))?,
    };
    if let Some(map) = config.as_mapping() {
        for key in map.keys() {
            let key = key.as_str().unwrap_or_default();
            if !K3S_CONFIG_KEYS.contains(&key) {
                return Err(format!("flag provided but not defined: -{key}"));
            }
        }
    }
    let exec = (fake.env.get("INSTALL_K3S_EXEC")).map_or("", String::as_str);
    let words: Vec<&str> = exec.split_whitespace().collect();
    let flag = (words.windows(2))
        .find(|pair| pair[0] == "--write-kubeconfig-mode")
        .map(|pair| pair[1].to_string());
    let from_file = match config.get("write-kubeconfig-mode") {
        Some(serde_yaml_ng::Value::String(mode)) => Some(mode.clone()),
        Some(serde_yaml_ng::Value::Number(mode)) => Some(mode.to_string()),
        _ => None,
    };
    let mode = (flag.or(from_file))
        .and_then(|mode| u32::from_str_radix(&mode, 8).ok())
        .unwrap_or(0o600);
    let port = (config.get("https-listen-port"))
        .and_then(serde_yaml_ng::Value::as_u64)
        .unwrap_or(6443);
    let kubeconfig = fake.host_path("/etc/rancher/k3s/k3s.yaml");
    std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:{port}\n  name: default\nusers:\n- name: default\n  user:\n    client-key-data: ZmFrZSBrZXk=\n"),
    )
    .unwrap();
    std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::write(fake.state.join("k3s-config"), text).unwrap();
    Ok(())
}

/// K3s's uninstall script: stops and removes the `k3s` unit, removes
/// `/etc/rancher/k3s` and itself.
pub fn k3s_uninstall(fake: &Fake) -> Reply {
    Units::load(fake).remove(fake, "k3s");
    let _ = std::fs::remove_dir_all(fake.host_path("/etc/rancher/k3s"));
    let _ = std::fs::remove_file(fake.host_path("/usr/local/bin/k3s-uninstall.sh"));
    Reply::ok()
}

/// `ip -o link [show]`: the world's links, one line each.
pub fn ip(fake: &Fake) -> Reply {
    let words: Vec<&str> = fake.args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["-o", "link"] | ["-o", "link", "show"] | ["link"] | ["link", "show"] => Reply::out(
            (fake.config.ip_links.iter())
                .map(|link| format!("{link}\n"))
                .collect::<String>(),
        ),
        [object, ..] if !object.starts_with('-') => Reply::fail(
            1,
            format!("Object \"{object}\" is unknown, try \"ip help\".\n"),
        ),
        _ => Reply::fail(
            255,
            format!(
                "Option \"{}\" is unknown, try \"ip -help\".\n",
                words.first().unwrap_or(&"")
            ),
        ),
    }
}

/// `iptables-save`: the filter table with the world's chains.
pub fn iptables_save(fake: &Fake) -> Reply {
    const SPEC: Spec = Spec {
        values: &[&["-t", "--table"]],
        switches: &[&["-c", "--counters"]],
    };
    match flags::parse(&fake.args, &SPEC) {
        Ok(_) => {}
        Err(Refused::Unknown(flag) | Refused::MissingValue(flag)) => {
            return Reply::fail(1, format!("iptables-save: unrecognized option '{flag}'\n"));
        }
        Err(Refused::Shorthand(letter, _)) => {
            return Reply::fail(1, format!("iptables-save: invalid option -- '{letter}'\n"));
        }
    }
    let mut text = String::from("*filter\n");
    for chain in &fake.config.iptables_chains {
        text.push_str(chain);
        text.push('\n');
    }
    text.push_str("COMMIT\n");
    Reply::out(text)
}
