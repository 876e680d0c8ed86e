//! The Debian host in a box (issue 22): a real Debian root with systemd as
//! its PID 1, booted in namespaces of its own (`tests/it/boxes/box.sh`), with
//! a fresh copy of the binary under test. A test boots one, runs commands
//! in it (`nsenter`), cuts its power (SIGKILL of its PID 1: every process
//! of the box dies at once, its mounts, `/run` and its network go with it,
//! the files on its disk stay) and boots it again. Whatever a box started
//! is ended by [`BoxHost`]'s `Drop`, by PID, also when the test fails.
//!
//! The root is built once per machine and per version of `box.sh` and the
//! stand-in mongod, and cached as a tarball under the test cache
//! (`$STACKINSTALL_TEST_CACHE/box/`, default
//! `/var/cache/stackinstall-test/box/`); each box is a fresh copy of it.
//! Needs root, `debootstrap` (for a cold cache), `unshare`, `nsenter` and
//! `ip`: `tests/run-all.sh` installs what is missing.
//!
//! Self-contained (no `common` module), so that it can move into a single
//! test crate as it is.
#![allow(dead_code, clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The box's address on its LAN, and the LAN's end of it (`box.sh`).
pub const ADDRESS: &str = "10.99.0.2";
pub const LAN_ADDRESS: &str = "10.99.0.1";
/// The box's resolver: an address on its LAN where nothing answers, unless
/// a test records the queries there ([`BoxHost::record_dns`]).
pub const NAMESERVER: &str = "10.99.0.53";

/// Where the binary under test is in the box.
pub const BINARY: &str = "/root/stackinstall";

/// How long a box may take to boot (systemd `is-system-running --wait`).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// A command in the box that takes longer than this is killed (and the
/// test fails): a hang must not hold CI.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(900);

/// Where box.sh's boot part starts: what comes before it builds the root.
const BOOT_PART: &str =
    "# ------------------------------------------------------------------- boot --";

static BOXES: AtomicUsize = AtomicUsize::new(0);

/// A Debian release the box can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Debian 12.
    Bookworm,
    /// Debian 13.
    Trixie,
}

impl Release {
    fn codename(self) -> &'static str {
        match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Release::Bookworm => "debian-12",
            Release::Trixie => "debian-13",
        }
    }
}

/// What a command in the box did.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub script: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Both streams, for assertion messages.
    pub fn text(&self) -> String {
        format!(
            "$ {}\nexit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.script, self.code, self.stdout, self.stderr
        )
    }
}

/// The test cache (`STACKINSTALL_TEST_CACHE`, as in `tests/run-all.sh`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("STACKINSTALL_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/stackinstall-test"))
        .join("box")
}

fn box_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/boxes")
}

/// The cached root of `release`, built first when this machine has none
/// of this version of the build (one build at a time, under a lock).
pub fn root_tarball(release: Release) -> PathBuf {
    // What the root is made of: the build part of box.sh (a change to how
    // a box boots needs no new root) and the stand-in mongod.
    let script = fs::read_to_string(box_dir().join("box.sh")).expect("tests/it/boxes is there");
    let build = script.split(BOOT_PART).next().unwrap();
    let mut hash = Sha256::new();
    hash.update(build);
    hash.update(fs::read(box_dir().join("mongod-standin.py")).expect("tests/it/boxes is there"));
    let version = hex::encode(hash.finalize());
    let cache = cache_dir();
    fs::create_dir_all(&cache).expect("the test cache can be made");
    let tarball = cache.join(format!("{}-{}.tar", release.name(), &version[..12]));
    if tarball.exists() {
        return tarball;
    }
    let lock = fs::File::create(cache.join("build.lock")).expect("the build lock");
    // SAFETY: flock on a descriptor we own; released when `lock` closes.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    if tarball.exists() {
        return tarball;
    }
    let started = Instant::now();
    eprintln!(
        "box: building the {} root (once per machine): {}",
        release.name(),
        tarball.display()
    );
    let status = Command::new("bash")
        .arg(box_dir().join("box.sh"))
        .args(["build", release.codename()])
        .arg(&tarball)
        .stdin(Stdio::null())
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "building the {} root failed: {status}",
        release.name()
    );
    eprintln!(
        "box: built the {} root in {:.0} s ({} MB)",
        release.name(),
        started.elapsed().as_secs_f64(),
        fs::metadata(&tarball).map_or(0, |m| m.len() / 1_000_000)
    );
    for entry in fs::read_dir(&cache).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(release.name()) && name.ends_with(".tar") && entry.path() != tarball {
            let _ = fs::remove_file(entry.path());
        }
    }
    tarball
}

/// The cgroup2 directory of this process, where a box gets its subtree.
fn own_cgroup() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let mount = mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .map(|fields| PathBuf::from(fields[1]))
        .expect("a cgroup2 hierarchy is mounted (systemd in the box needs one)");
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or("/");
    mount.join(path.trim_start_matches('/'))
}

/// A booted Debian host in a box.
pub struct BoxHost {
    pub release: Release,
    /// The box's root directory, seen from the machine.
    pub root: PathBuf,
    cgroup: PathBuf,
    launcher: Option<Child>,
    pid: Option<u32>,
    /// The machine-id the root had before its first boot.
    pub machine_id: String,
    /// How long the last boot took (until every unit had started).
    pub boot_time: Duration,
    /// Commands started in the background with [`BoxHost::spawn`].
    background: Vec<Child>,
}

impl BoxHost {
    /// A fresh copy of the cached root of `release`, with the binary under
    /// test as [`BINARY`], booted.
    pub fn boot(release: Release) -> BoxHost {
        remove_stale_boxes();
        let tarball = root_tarball(release);
        let number = BOXES.fetch_add(1, Ordering::SeqCst);
        let name = format!("stackinstall-box-{}-{number}", std::process::id());
        let root = cache_dir().join("run").join(&name);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let mut host = BoxHost {
            release,
            root,
            cgroup: own_cgroup().join(&name),
            launcher: None,
            pid: None,
            machine_id: String::new(),
            boot_time: Duration::ZERO,
            background: Vec::new(),
        };
        let status = Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-xf"])
            .arg(&tarball)
            .arg("-C")
            .arg(&host.root)
            .status()
            .unwrap();
        assert!(status.success(), "tar -xf {} failed", tarball.display());
        host.machine_id = fs::read_to_string(host.path("/etc/machine-id")).unwrap();
        host.copy_in(Path::new(env!("CARGO_BIN_EXE_stackinstall")), BINARY, 0o755);
        host.start();
        host
    }

    /// `path` of the box, seen from the machine.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Copies the machine's file `from` into the box as `to`.
    pub fn copy_in(&self, from: &Path, to: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let target = self.path(to);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(from, &target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Writes `contents` to the box's `path`.
    pub fn write(&self, path: &str, contents: &str) {
        let target = self.path(path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, contents).unwrap();
    }

    /// What `box.sh boot` and the box's console printed (beside the root).
    pub fn log(&self) -> PathBuf {
        self.root.with_extension("log")
    }

    /// The box's PID 1, seen from the machine, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Boots the box (again): systemd as PID 1, until it has started every
    /// unit (`systemctl is-system-running --wait`).
    pub fn start(&mut self) {
        assert!(self.pid.is_none(), "the box is running");
        fs::create_dir_all(&self.cgroup).expect("a cgroup for the box");
        let mut launcher = Command::new("unshare");
        launcher
            .args(["--net", "--", "bash"])
            .arg(box_dir().join("box.sh"))
            .arg("boot")
            .arg(&self.root)
            .arg(&self.cgroup)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(self.log()).unwrap())
            .process_group(0);
        // SAFETY: prctl only, between fork and exec. Should this test
        // process die without its Drop (SIGKILL), the launcher gets SIGKILL;
        // box.sh passes that on to the box's PID 1 (`setpriv --pdeathsig`,
        // `unshare --kill-child`).
        unsafe {
            launcher.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut launcher = launcher.spawn().expect("unshare runs");
        let stdout = launcher.stdout.take().unwrap();
        self.launcher = Some(launcher);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let pid = line
            .strip_prefix("box ")
            .and_then(|pid| pid.trim().parse().ok())
            .unwrap_or_else(|| panic!("box.sh boot printed {line:?}, not `box PID`"));
        self.pid = Some(pid);
        let started = Instant::now();
        let state = loop {
            assert!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "the box's PID 1 ended while it booted:\n{}",
                fs::read_to_string(self.log()).unwrap_or_default()
            );
            let output = self.sh_with_timeout("systemctl is-system-running --wait", BOOT_TIMEOUT);
            // Before systemd's bus is up it cannot answer yet.
            if output.stdout.trim() != "" && output.stdout.trim() != "offline" {
                break output.stdout.trim().to_string();
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "the box did not boot: {}",
                output.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        self.boot_time = started.elapsed();
        // `degraded`: a unit failed (the NFS server cannot run in a box).
        if state != "running" && state != "degraded" {
            let failed = self.sh("systemctl --failed --no-pager --no-legend; journalctl -b --no-pager -p warning | tail -40");
            panic!("the box booted {state}:\n{}", failed.text());
        }
    }

    /// Cuts the box's power: SIGKILL of its PID 1 takes every process of
    /// the box with it, without a shutdown.
    pub fn power_cut(&mut self) {
        let pid = self.pid.take().expect("the box is running");
        // SAFETY: kill of the box's PID 1, a process this box started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        await_gone(pid);
        if let Some(mut launcher) = self.launcher.take() {
            let _ = launcher.wait();
        }
        for mut child in self.background.drain(..) {
            let _ = child.wait();
        }
        self.await_empty_cgroup();
    }

    /// Waits until no process is left in the box's cgroup subtree.
    fn await_empty_cgroup(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.processes().is_empty() {
            assert!(
                Instant::now() < deadline,
                "processes outlived the box: {:?}",
                self.processes()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The processes (machine PIDs) in the box's cgroup subtree.
    pub fn processes(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let mut stack = vec![self.cgroup.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|pid| pid.parse::<u32>().ok()));
        }
        pids
    }

    fn command(&self, script: &str) -> Command {
        let pid = self.pid.expect("the box is running").to_string();
        let mut command = Command::new("nsenter");
        command
            .args([
                "-t", &pid, "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--",
            ])
            .args(["/usr/bin/env", "-i"])
            .args([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
                "TERM=dumb",
            ])
            .args(["bash", "-c", script])
            .current_dir("/")
            .stdin(Stdio::null())
            .process_group(0);
        command
    }

    /// Runs `script` with bash in the box, as root at `/root`, in a login's
    /// environment.
    pub fn sh(&self, script: &str) -> Output {
        self.sh_with_timeout(script, COMMAND_TIMEOUT)
    }

    /// Like [`BoxHost::sh`], failing the test unless it exits 0; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let output = self.sh(script);
        assert!(
            output.success(),
            "a command failed in the box:\n{}",
            output.text()
        );
        output.stdout
    }

    /// Like [`BoxHost::sh`] with a time limit.
    pub fn sh_with_timeout(&self, script: &str, timeout: Duration) -> Output {
        let files = tempfile::tempdir().unwrap();
        let (out, err) = (files.path().join("out"), files.path().join("err"));
        let mut child = self
            .command(&format!("cd /root && {script}"))
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("nsenter runs");
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                // SAFETY: the process group of a command this box started.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                panic!(
                    "`{script}` did not end within {} s in the box:\n{}",
                    timeout.as_secs(),
                    fs::read_to_string(&out).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            code,
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
            script: script.to_string(),
        }
    }

    /// Starts `script` in the box in the background (its output in the
    /// box's `log`); it ends with the box at the latest.
    pub fn spawn(&mut self, script: &str, log: &str) {
        let child = self
            .command(&format!("cd /root && exec >{log} 2>&1 && {script}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsenter runs");
        self.background.push(child);
    }

    /// Makes the box's resolver (`NAMESERVER` of box.sh, on its LAN) a
    /// recorder: every query's name is appended to the returned file of the
    /// machine, and none is answered (a host without working DNS). Until
    /// the box's next power cut.
    pub fn record_dns(&mut self) -> PathBuf {
        const RECORDER: &str = r#"
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((sys.argv[1], 53))
out = open(sys.argv[2], "a", buffering=1)
print("ready", flush=True)
while True:
    data, _ = server.recvfrom(4096)
    labels, i = [], 12
    while i < len(data) and data[i]:
        labels.append(data[i + 1:i + 1 + data[i]].decode(errors="replace"))
        i += 1 + data[i]
    out.write(".".join(labels) + "\n")
"#;
        let launcher = self
            .launcher
            .as_ref()
            .expect("the box is running")
            .id()
            .to_string();
        let lan = ["-t", launcher.as_str(), "-n"];
        let status = Command::new("nsenter")
            .args(lan)
            .args([
                "ip",
                "addr",
                "add",
                &format!("{NAMESERVER}/24"),
                "dev",
                "gw0",
            ])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the recorder's address could not be added"
        );
        let file = self.root.with_extension("dns");
        fs::write(&file, "").unwrap();
        let mut child = Command::new("nsenter")
            .args(lan)
            .args(["python3", "-c", RECORDER, NAMESERVER])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the DNS recorder did not start");
        self.background.push(child);
        file
    }

    /// Runs the binary under test in the box with `arguments` (a shell
    /// text), its standard input empty.
    pub fn stackinstall(&self, arguments: &str) -> Output {
        self.sh(&format!("{BINARY} {arguments} </dev/null"))
    }

    /// Ends the box and removes its root: what `Drop` does.
    fn end(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: kill of the box's PID 1, which this box started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            await_gone(pid);
        }
        if let Some(mut launcher) = self.launcher.take() {
            // SAFETY: the launcher's own process group (`process_group(0)`).
            unsafe { libc::kill(-(launcher.id() as i32), libc::SIGKILL) };
            let _ = launcher.wait();
        }
        for mut child in self.background.drain(..) {
            // SAFETY: the process group of a command this box started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        remove_cgroup(&self.cgroup);
        let _ = Command::new("rm").arg("-rf").arg(&self.root).status();
        let _ = fs::remove_file(self.log());
        let _ = fs::remove_file(self.root.with_extension("dns"));
    }
}

/// Waits (up to 30 s) until the process `pid` is gone, reaped by its
/// parent (the box's `unshare`, which then ends too).
fn await_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for BoxHost {
    fn drop(&mut self) {
        self.end();
    }
}

/// Removes what boxes of test processes that are gone left (a test process
/// killed without its Drop: its boxes died with it, see `start`): their
/// roots and cgroups.
pub fn remove_stale_boxes() {
    let gone = |name: &str| {
        let pid = name
            .strip_prefix("stackinstall-box-")
            .and_then(|rest| rest.split('-').next());
        pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let run = cache_dir().join("run");
    for entry in fs::read_dir(&run).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if gone(&name) {
            let _ = Command::new("rm").arg("-rf").arg(entry.path()).status();
        }
    }
    for entry in fs::read_dir(own_cgroup()).into_iter().flatten().flatten() {
        if gone(&entry.file_name().to_string_lossy()) {
            remove_cgroup(&entry.path());
        }
    }
}

/// Removes a cgroup directory and those systemd made below it, deepest
/// first (a cgroup directory is removed with rmdir once it is empty).
fn remove_cgroup(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The lines of `text` as a sorted list, for comparing sets.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines.dedup();
    lines
}

/// What is in `after` and not in `before`, and the other way round.
pub fn difference(before: &[String], after: &[String]) -> String {
    let mut text = String::new();
    for line in after.iter().filter(|line| !before.contains(line)) {
        let _ = writeln!(text, "+ {line}");
    }
    for line in before.iter().filter(|line| !after.contains(line)) {
        let _ = writeln!(text, "- {line}");
    }
    text
}
