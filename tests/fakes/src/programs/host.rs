//! The host's small programs: `exportfs` (exportfs(8)), K3s's install and
//! uninstall scripts (k3s-io/k3s `install.sh`), `ip -o link` (ip-link(8))
//! and `iptables-save` (iptables-save(8)).

use std::os::unix::fs::PermissionsExt;

use super::systemctl::{Unit, Units};
use crate::flags::{self, Refused, Spec};
use crate::{Fake, Reply};

/// `exportfs -ra` (re-export: the table `/var/lib/nfs/etab` made again
/// from `/etc/exports`, one line per path and client, exportfs(8) FILES;
/// the kernel here has no NFS server, so it only keeps books) and
/// `exportfs -v` (the table as it is).
pub fn exportfs(fake: &Fake) -> Reply {
    let etab = fake.host_path("/var/lib/nfs/etab");
    let mut listed = false;
    let mut reexport = false;
    for arg in &fake.args {
        let Some(letters) = arg.strip_prefix('-') else {
            return Reply::fail(
                1,
                format!("exportfs: this fake exports from /etc/exports only, not `{arg}`\n"),
            );
        };
        for letter in letters.chars() {
            match letter {
                'r' => reexport = true,
                'a' | 'f' | 's' => {}
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
    if reexport {
        let exports = std::fs::read_to_string(fake.host_path("/etc/exports")).unwrap_or_default();
        let mut table = String::new();
        for line in exports.lines().filter(|line| !line.starts_with('#')) {
            let mut words = line.split_whitespace();
            let Some(path) = words.next() else { continue };
            for client in words {
                table.push_str(&format!("{path}\t{client}\n"));
            }
        }
        std::fs::create_dir_all(etab.parent().unwrap()).unwrap();
        std::fs::write(&etab, table).unwrap();
    }
    if !listed {
        return Reply::ok();
    }
    Reply::out(std::fs::read_to_string(&etab).unwrap_or_default())
}

/// Whether the install script makes an agent: `INSTALL_K3S_EXEC` starts
/// with `agent`, or `K3S_URL` is set without `server` (install.sh
/// `setup_env`: `CMD_K3S`), whose unit is `k3s-agent` and whose uninstall
/// script is `k3s-agent-uninstall.sh`.
fn installs_agent(fake: &Fake) -> bool {
    let exec = fake.env.get("INSTALL_K3S_EXEC").map_or("", String::as_str);
    exec.split_whitespace().next() == Some("agent")
        || (fake.env.contains_key("K3S_URL") && !exec.starts_with("server"))
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
    let agent = installs_agent(fake);
    if let Some(version) = fake.env.get("INSTALL_K3S_VERSION") {
        std::fs::write(fake.state.join("k3s-version"), version).unwrap();
    }
    let unit = if agent { "k3s-agent" } else { "k3s" };
    std::fs::write(fake.state.join("k3s-unit"), unit).unwrap();
    if let Err(error) = k3s_starts(fake) {
        return Reply::fail(
            1,
            format!("[ERROR]  Job for {unit}.service failed: k3s: {error}\n"),
        );
    }
    Units::load(fake).set(
        fake,
        unit,
        Unit {
            enabled: true,
            active: true,
        },
    );
    let script = fake.host_path(&format!("/usr/local/bin/{unit}-uninstall.sh"));
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, "#!/bin/sh\nexec k3s-uninstall \"$@\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    if agent {
        return Reply::out("[INFO]  systemd: Starting k3s-agent\n");
    }
    // The server writes its token and, without `--cluster-init`, kine's
    // SQLite datastore (k3s-io/k3s `pkg/cluster/bootstrap.go`,
    // `pkg/cluster/managed.go`): a restart keeps both.
    let server = fake.host_path("/var/lib/rancher/k3s/server");
    std::fs::create_dir_all(server.join("db")).unwrap();
    if !server.join("token").exists() {
        let token = super::members::server_token();
        std::fs::write(server.join("token"), format!("{token}\n")).unwrap();
        std::fs::set_permissions(server.join("token"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    if !server.join("db/state.db").exists() {
        std::fs::write(
            server.join("db/state.db"),
            b"SQLite format 3\0 (the fake cluster's datastore)\n",
        )
        .unwrap();
        let mode = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(server.join("db/state.db"), mode).unwrap();
    }
    for dir in [server.clone(), server.join("db")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    Reply::out("[INFO]  systemd: Starting k3s\n")
}

/// The server flags a K3s configuration file may set here (docs.k3s.io
/// "Configuration File": a key is a `k3s server` flag without `--`; K3s
/// refuses one it does not define, as its CLI refuses the flag).
const K3S_CONFIG_KEYS: [&str; 14] = [
    "node-label",
    "cluster-cidr",
    "service-cidr",
    "https-listen-port",
    "tls-san",
    "disable",
    "write-kubeconfig-mode",
    "cluster-init",
    "cluster-dns",
    "secrets-encryption",
    "server",
    "token-file",
    "node-ip",
    "node-name",
];

/// The keys `k3s agent` defines of those (an agent refuses the server's).
const K3S_AGENT_KEYS: [&str; 5] = ["server", "token-file", "node-ip", "node-name", "node-label"];

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
    let agent =
        std::fs::read_to_string(fake.state.join("k3s-unit")).is_ok_and(|u| u == "k3s-agent");
    let keys: &[&str] = if agent {
        &K3S_AGENT_KEYS
    } else {
        &K3S_CONFIG_KEYS
    };
    if let Some(map) = config.as_mapping() {
        for key in map.keys() {
            let key = key.as_str().unwrap_or_default();
            if !keys.contains(&key) {
                return Err(format!("flag provided but not defined: -{key}"));
            }
        }
    }
    let version = std::fs::read_to_string(fake.state.join("k3s-version"))
        .unwrap_or_else(|_| "v1.29.0+k3s1".into());
    super::members::start(fake, &config, agent, &version)?;
    if agent {
        std::fs::write(fake.state.join("k3s-config"), text).unwrap();
        return Ok(());
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
    Units::load(fake).remove(fake, "k3s-agent");
    let _ = std::fs::remove_file(fake.host_path("/usr/local/bin/k3s-agent-uninstall.sh"));
    let _ = std::fs::remove_dir_all(fake.host_path("/var/lib/rancher/k3s/agent"));
    let _ = std::fs::remove_dir_all(fake.host_path("/etc/rancher/k3s"));
    let _ = std::fs::remove_dir_all(fake.host_path("/var/lib/rancher/k3s"));
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

/// Where the fake's embedded etcd keeps its data (K3s:
/// `server/db/etcd/member/snap/db`, bbolt): present only when K3s runs
/// etcd, which the test sets up by writing it.
const ETCD_DATA: &str = "/var/lib/rancher/k3s/server/db/etcd/member/snap/db";

/// `k3s` (k3s-io/k3s `pkg/cli/cmds/etcd_snapshot.go`, `server.go`;
/// docs.k3s.io "etcd-snapshot" and "Backup and Restore"):
/// `etcd-snapshot save [--name NAME] [--dir DIR]` writes the etcd data as
/// `DIR/NAME-NODE-TIMESTAMP` (`NAME` defaults to `on-demand`, `DIR` to
/// `server/db/snapshots`), and fails as K3s does without etcd;
/// `server --cluster-reset --cluster-reset-restore-path=FILE` (K3s
/// stopped, the token from `--token` or `--token-file`) puts a snapshot
/// back and exits, as K3s does once the reset is done.
pub fn k3s(fake: &Fake) -> Reply {
    const SPEC: Spec = Spec {
        values: &[
            &["--name"],
            &["--dir", "--etcd-snapshot-dir"],
            &["--cluster-reset-restore-path"],
            &["--token-file"],
            &["-t", "--token"],
            &["--ttl"],
            &["--description"],
        ],
        switches: &[&["--cluster-reset"]],
    };
    let parsed = match flags::parse(&fake.args, &SPEC) {
        Ok(parsed) => parsed,
        Err(Refused::Unknown(flag) | Refused::Shorthand(_, flag) | Refused::MissingValue(flag)) => {
            return Reply::fail(
                1,
                format!(
                    "Incorrect Usage: flag provided but not defined: -{}\n",
                    flag.trim_start_matches('-')
                ),
            );
        }
    };
    let words: Vec<&str> = parsed.positional.iter().map(String::as_str).collect();
    let etcd = fake.host_path(ETCD_DATA);
    match words.as_slice() {
        ["token", "create"] => {
            if !Units::load(fake).active(fake, "k3s") {
                return Reply::fail(
                    1,
                    "level=fatal msg=\"failed to get token: Get \\\"https://127.0.0.1:6443/...\\\": connection refused\"\n",
                );
            }
            match super::members::create_token(fake, parsed.value("--ttl")) {
                Ok(token) => Reply::out(format!("{token}\n")),
                Err(error) => Reply::fail(1, format!("level=fatal msg=\"{error}\"\n")),
            }
        }
        ["etcd-snapshot", "save"] => {
            let Ok(data) = std::fs::read(&etcd) else {
                return Reply::fail(
                    1,
                    "time=\"2024-01-01T00:00:00Z\" level=fatal msg=\"etcd datastore disabled\"\n",
                );
            };
            let name = parsed.value("--name").unwrap_or("on-demand");
            let dir = parsed.value("--dir").map_or_else(
                || fake.host_path("/var/lib/rancher/k3s/server/db/snapshots"),
                std::path::PathBuf::from,
            );
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{name}-fakehost-{stamp}"));
            std::fs::write(&file, data).unwrap();
            Reply {
                code: 0,
                stdout: String::new(),
                stderr: format!("level=info msg=\"Snapshot {} saved.\"\n", file.display()),
            }
        }
        ["server"] if parsed.switch("--cluster-reset") => {
            if Units::load(fake)
                .get(fake, "k3s")
                .is_some_and(|unit| unit.active)
            {
                return Reply::fail(
                    1,
                    "level=fatal msg=\"starting kubernetes: preparing server: init cluster datastore and https: listen tcp :6443: bind: address already in use\"\n",
                );
            }
            let token = match (parsed.value("--token-file"), parsed.value("-t")) {
                (Some(file), _) => std::fs::read_to_string(file).unwrap_or_default(),
                (None, Some(token)) => token.to_string(),
                (None, None) => String::new(),
            };
            if token.trim().is_empty() {
                return Reply::fail(
                    1,
                    "level=fatal msg=\"starting kubernetes: preparing server: token is required when restoring a snapshot\"\n",
                );
            }
            let Some(path) = parsed.value("--cluster-reset-restore-path") else {
                return Reply::fail(
                    1,
                    "this fake resets a cluster from a snapshot only (--cluster-reset-restore-path)\n",
                );
            };
            let Ok(snapshot) = std::fs::read(path) else {
                return Reply::fail(
                    1,
                    format!(
                        "level=fatal msg=\"starting kubernetes: preparing server: open {path}: no such file or directory\"\n"
                    ),
                );
            };
            std::fs::create_dir_all(etcd.parent().unwrap()).unwrap();
            std::fs::write(&etcd, snapshot).unwrap();
            super::members::reset(fake);
            Reply {
                code: 0,
                stdout: String::new(),
                stderr: "level=info msg=\"Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes\"\n".into(),
            }
        }
        _ => Reply::fail(
            1,
            format!("this fake does not know `k3s {}`\n", fake.args.join(" ")),
        ),
    }
}
