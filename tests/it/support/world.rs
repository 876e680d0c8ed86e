//! A temp-dir world per test: a root directory for `--root`, a `bin/` of
//! fake programs first on PATH that record their argv and stdin, and the
//! real binary run with assert_cmd.
#![allow(dead_code, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use tempfile::TempDir;

/// The os-release of the world's host: a supported Ubuntu.
pub const UBUNTU_2204: &str = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n";

/// The demo domain of the tests.
pub const DOMAIN: &str = "demo.example.com";

/// A `dpkg-query` that finds every package it is asked about installed.
pub const DPKG_ALL_INSTALLED: &str = r#"for p in "$@"; do case "$p" in -*) ;; *) printf '%s\tinstall ok installed\n' "$p" ;; esac; done"#;

/// One recorded call of a fake program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub program: String,
    pub args: Vec<String>,
    pub stdin: String,
    /// The environment variables the fake saw whose names start with one of
    /// the recorded prefixes (see `World::fake`).
    pub env: Vec<(String, String)>,
    /// Every environment variable the fake saw, as `env` printed them.
    pub full_env: String,
}

impl Call {
    /// `program arg arg ...`.
    pub fn line(&self) -> String {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A test world.
pub struct World {
    pub dir: TempDir,
    pub root: PathBuf,
    pub bin: PathBuf,
    pub record: PathBuf,
    pub env: Vec<(String, String)>,
}

impl World {
    /// A world with a supported OS, small requirements, and no fakes yet.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        let record = dir.path().join("record");
        for path in [&root, &bin, &record] {
            fs::create_dir_all(path).unwrap();
        }
        let world = Self {
            root,
            bin,
            record,
            dir,
            env: Vec::new(),
        };
        world.write("/etc/os-release", UBUNTU_2204);
        fs::create_dir_all(world.root.join("root")).unwrap();
        world
    }

    /// `path` (absolute host path) inside the world's root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Writes a host file in the world.
    pub fn write(&self, path: &str, contents: &str) {
        let path = self.path(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// Reads a host file of the world.
    pub fn read(&self, path: &str) -> String {
        fs::read_to_string(self.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Adds a fake program `name` that records its call and then runs the
    /// bash `body` (with `$@` and the recorded stdin in `$STDIN`).
    pub fn fake(&self, name: &str, body: &str) {
        let script = format!(
            r#"#!/bin/bash
STDIN=""
if [ ! -t 0 ]; then STDIN=$(cat; echo x); STDIN=${{STDIN%x}}; fi
# Steps run side by side: one call's record is written whole (under a lock).
exec 9>>"{record}/calls.lock"
flock 9
{{
  printf 'CALL %s\n' "$(basename "$0")"
  for a in "$@"; do printf 'ARG %s\n' "$(printf %s "$a" | base64 -w0)"; done
  printf 'STDIN %s\n' "$(printf %s "$STDIN" | base64 -w0)"
  env | grep -E '^(AWS_|KUBECONFIG|HELM_|STACKINSTALL_|DEBIAN_FRONTEND|INSTALL_K3S)' | while IFS= read -r line; do printf 'ENV %s\n' "$(printf %s "$line" | base64 -w0)"; done
  printf 'FULLENV %s\n' "$(env | base64 -w0)"
  printf 'END\n'
}} >> "{record}/calls.log"
flock -u 9
exec 9>&-
STATE="{record}/state"
mkdir -p "$STATE"
# A world that wants its fakes slow (something to interrupt) says how slow.
if [ -f "{record}/delay" ]; then sleep "$(cat "{record}/delay")"; fi
# The kill tests: `record/kill-at` holding "N before" or "N after" sends the
# calling stackinstall SIGKILL as the N-th recorded call starts (the call
# has no effect) or once it has done its work (its effect is not recorded).
if [ -f "{record}/kill-at" ]; then
  read -r kill_at kill_when < "{record}/kill-at"
  if [ "$(grep -c '^END$' "{record}/calls.log")" = "$kill_at" ]; then
    rm -f "{record}/kill-at"
    if [ "$kill_when" = before ]; then kill -KILL "$PPID"; exit 1; fi
    trap 'kill -KILL "$PPID"' EXIT
  fi
fi
{body}
"#,
            record = self.record.display()
        );
        let path = self.bin.join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A fake `exportfs` whose `-v` lists the world's `/etc/exports` (the
    /// kernel here has no NFS server: `exportfs` only keeps books).
    pub fn fake_exportfs(&self) {
        let exports = self.path("/etc/exports");
        self.fake(
            "exportfs",
            &format!(
                r#"[ "$1" = -v ] && grep -v '^#' {} ; exit 0"#,
                exports.display()
            ),
        );
    }

    /// A `mongodb` system user that is the test's own uid, and the MongoDB
    /// admin account's `password` in `file` (mode 0600) inside the root.
    pub fn mongodb_accounts(&self, file: &str, password: &str) {
        use std::os::unix::fs::MetadataExt;
        let metadata = fs::metadata(&self.root).unwrap();
        let (uid, gid) = (metadata.uid(), metadata.gid());
        self.write(
            "/etc/passwd",
            &format!("mongodb:x:{uid}:{gid}::/var/lib/mongodb:/usr/sbin/nologin\n"),
        );
        self.write("/etc/group", &format!("mongodb:x:{gid}:\n"));
        self.write(file, &format!("{password}\n"));
        fs::set_permissions(self.path(file), fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Every call the fakes recorded, in order.
    pub fn calls(&self) -> Vec<Call> {
        let text = fs::read_to_string(self.record.join("calls.log")).unwrap_or_default();
        let decode = |s: &str| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .unwrap(),
            )
            .unwrap()
        };
        let mut calls = Vec::new();
        let mut current: Option<Call> = None;
        for line in text.lines() {
            if let Some(program) = line.strip_prefix("CALL ") {
                current = Some(Call {
                    program: program.into(),
                    args: vec![],
                    stdin: String::new(),
                    env: vec![],
                    full_env: String::new(),
                });
            } else if let Some(arg) = line.strip_prefix("ARG ") {
                current.as_mut().unwrap().args.push(decode(arg));
            } else if let Some(stdin) = line.strip_prefix("STDIN ") {
                current.as_mut().unwrap().stdin = decode(stdin);
            } else if let Some(env) = line.strip_prefix("ENV ") {
                let pair = decode(env);
                let (key, value) = pair.split_once('=').unwrap();
                current
                    .as_mut()
                    .unwrap()
                    .env
                    .push((key.into(), value.into()));
            } else if let Some(env) = line.strip_prefix("FULLENV ") {
                current.as_mut().unwrap().full_env = decode(env);
            } else if line == "END" {
                calls.extend(current.take());
            }
        }
        calls
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        let _ = fs::remove_file(self.record.join("calls.log"));
    }

    /// Sets an environment variable for every run of the binary.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    /// Drops an environment variable set with `set_env`.
    pub fn unset_env(&mut self, key: &str) {
        self.env.retain(|(name, _)| name != key);
    }

    /// The binary, set up for this world.
    pub fn command(&self) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::from_std(self.std_command());
        command.timeout(std::time::Duration::from_secs(120));
        command
    }

    /// The binary, set up for this world, as a plain `std` command (for
    /// tests that signal it while it runs).
    pub fn std_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("stackinstall"));
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command
            .env_clear()
            .env("PATH", path)
            .env("HOME", "/root")
            .env("NO_COLOR", "1")
            .env("STACKINSTALL_ROOT", &self.root)
            .env("STACKINSTALL_TEST_RECORD", &self.record)
            .env("STACKINSTALL_REQUIREMENTS__CPUS", "1")
            .env("STACKINSTALL_REQUIREMENTS__MEMORY_MIB", "256")
            .env("STACKINSTALL_REQUIREMENTS__DISK_GIB", "0")
            .env(
                "STACKINSTALL_MONGODB__SERVER_PROGRAMS",
                r#"["mongod", "secantusd-py", "python3"]"#,
            );
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// `install` with `args` after `--domain demo.example.com --self-signed`.
    pub fn install(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.command()
            .args(["install", "--domain", DOMAIN, "--self-signed"])
            .args(args)
            .assert()
    }

    /// Every file under the root with its bytes (the log directory left out
    /// unless `with_logs`).
    pub fn files(&self, with_logs: bool) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        collect(&self.root, &self.root, &mut files);
        if !with_logs {
            files.retain(|path, _| !path.starts_with("/var/log/stackinstall/"));
        }
        files
    }
}

/// Every file below `dir`, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let shown = format!("/{}", path.strip_prefix(root).unwrap().display());
            files.insert(shown, fs::read(&path).unwrap_or_default());
        }
    }
}

/// Prints a test's figures so that they show when it passes too (the test
/// harness captures `eprintln!`, not writes to the stderr handle).
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The stdout of an assertion as text.
pub fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// The stderr of an assertion as text.
pub fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// A finished step's line as its time in seconds and its id.
pub fn finished_step_time(line: &str) -> Option<(f64, String)> {
    let (id, _) = finished_step(line)?;
    let seconds = line.rsplit_once(" (")?.1.strip_suffix("s)")?.parse().ok()?;
    Some((seconds, id))
}

/// A finished step's line (`✓ [ 3/16] k3s  Install K3s: done (1.2s)`) as
/// the step id and its result in the words of `--output json`: `changed`
/// (`done`, `updated`), `unchanged` (`already in place`, `ok`),
/// `already-done`, `failed` (also `interrupted`); `None` for other lines.
pub fn finished_step(line: &str) -> Option<(String, &'static str)> {
    let rest = line
        .strip_prefix("✓ [")
        .or_else(|| line.strip_prefix("✗ ["))?;
    let (_, rest) = rest.split_once("] ")?;
    let id = rest.split_whitespace().next()?.to_string();
    let head = line.rsplit_once(" (")?.0;
    let (_, words) = head.rsplit_once(": ")?;
    let result = match words {
        "done" | "updated" => "changed",
        "already in place" | "ok" => "unchanged",
        "already done" => "already-done",
        "failed" | "interrupted" => "failed",
        _ => return None,
    };
    Some((id, result))
}

/// The actions of the steps `ids` in a `--plan --output json` report, one
/// line each: step id, kind, detail.
pub fn plan_lines(plan: &serde_json::Value, ids: &[&str]) -> Vec<String> {
    (plan["steps"].as_array().unwrap().iter())
        .filter(|step| ids.iter().any(|id| step["id"] == *id))
        .flat_map(|step| {
            let id = step["id"].as_str().unwrap().to_string();
            let actions = step["actions"].as_array().unwrap().clone();
            actions.into_iter().map(move |action| {
                format!(
                    "{:<9} {:<9} {}",
                    id,
                    action["kind"].as_str().unwrap(),
                    action["detail"].as_str().unwrap()
                )
            })
        })
        .collect()
}
