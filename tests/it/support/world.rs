//! A temp-dir world per test (rustup's `src/test/clitools.rs`, uv's test
//! context): a root directory for `--root`, a `bin/` of fake programs first
//! on PATH (links to the one fake binary of `tests/fakes/`), a `record/`
//! where the fakes log every call and keep their state, and the real binary
//! run with assert_cmd.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

pub use stackinstall_fakes::config::{Action, Config, CopyBack, Passthrough, Rule};
use stackinstall_fakes::programs::systemctl::{Unit, Units};
pub use stackinstall_fakes::record::Call;
use stackinstall_fakes::store::{Resource, Store};
use tempfile::TempDir;

/// The os-release files of the hosts the tests pretend to be.
pub mod os {
    pub const UBUNTU_2004: &str = "PRETTY_NAME=\"Ubuntu 20.04.6 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"20.04\"\nVERSION_CODENAME=focal\nID=ubuntu\nID_LIKE=debian\n";
    /// A supported Ubuntu: every world's host unless a test says otherwise.
    pub const UBUNTU_2204: &str = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n";
    pub const UBUNTU_2404: &str = "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n";
    pub const DEBIAN_12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
}

/// The demo domain of the tests.
pub const DOMAIN: &str = "demo.example.com";

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
        for path in [&root, &bin, &record, &record.join("state")] {
            fs::create_dir_all(path).unwrap();
        }
        let world = Self {
            root,
            bin,
            record,
            dir,
            env: Vec::new(),
        };
        world.write("/etc/os-release", os::UBUNTU_2204);
        fs::create_dir_all(world.root.join("root")).unwrap();
        // Booted with systemd (`sd_booted()`), as preflight requires.
        fs::create_dir_all(world.root.join("run/systemd/system")).unwrap();
        world.configure(|config| config.root = world.root.clone());
        world
    }

    /// A world for the engine alone: its own steps (`credentials`,
    /// `summary`), no fakes.
    pub fn engine() -> Self {
        let mut world = Self::new();
        world.set_env("STACKINSTALL_ONLY", "credentials,summary");
        world
    }

    /// Puts the fake `program` on the world's PATH.
    pub fn fake(&self, program: &str) {
        assert!(
            stackinstall_fakes::PROGRAMS.contains(&program),
            "there is no fake `{program}`"
        );
        let link = self.bin.join(program);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(fake_binary(), link).unwrap();
    }

    /// Puts the fakes `programs` on the world's PATH.
    pub fn fakes(&self, programs: &[&str]) {
        for program in programs {
            self.fake(program);
        }
    }

    /// A host whose server packages are installed and whose units run:
    /// `dpkg-query` finds every package, `apt-get` must not run, every
    /// systemd unit is there and active.
    pub fn host_fakes(&self) {
        self.fakes(&["dpkg-query", "apt-get", "systemctl"]);
        self.configure(|config| {
            config.all_packages_installed = true;
            config.apt_forbidden = true;
            config.units_present = true;
        });
    }

    /// Changes the fakes' configuration.
    pub fn configure(&self, change: impl FnOnce(&mut Config)) {
        let mut config = Config::load(&self.record);
        change(&mut config);
        config.save(&self.record);
    }

    /// Adds a behaviour of a fake (see `Rule`).
    pub fn rule(&self, rule: Rule) {
        self.configure(|config| config.rules.push(rule));
    }

    /// `path` in the fakes' state directory.
    pub fn state(&self, path: &str) -> PathBuf {
        self.record.join("state").join(path)
    }

    /// Makes the state file `path` (a marker a rule waits on).
    pub fn touch_state(&self, path: &str) {
        let file = self.state(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, "").unwrap();
    }

    /// The fake cluster's objects.
    pub fn cluster(&self) -> Store {
        Store::new(&self.record.join("state"))
    }

    /// Puts `object` into the fake cluster, as the chart or someone else
    /// left it.
    pub fn put_object(&self, object: serde_json::Value) {
        self.cluster().put(&object).unwrap();
    }

    /// The object of the fake cluster, as stored.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<serde_json::Value> {
        let resource = Resource::named(kind).unwrap_or_else(|| panic!("no kind {kind}"));
        self.cluster().get(resource, Some(namespace), name)
    }

    /// Removes an object from the fake cluster.
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) {
        let resource = Resource::named(kind).unwrap_or_else(|| panic!("no kind {kind}"));
        assert!(self.cluster().delete(resource, Some(namespace), name));
    }

    /// Whether K3s runs (its unit is active).
    pub fn k3s_running(&self) -> bool {
        let units = Units::load_from(&self.record.join("state"));
        units.known("k3s").is_some_and(|unit| unit.active)
    }

    /// K3s runs (its unit active): the fake cluster answers.
    pub fn start_k3s(&self) {
        self.set_k3s(true);
    }

    /// The systemd unit `name` is there, enabled and active as given.
    pub fn set_unit(&self, name: &str, enabled: bool, active: bool) {
        let state = self.record.join("state");
        let mut units = Units::load_from(&state);
        units.put(name, Unit { enabled, active });
        units.save_to(&state);
    }

    /// K3s stops: the fake cluster's API refuses every call.
    pub fn stop_k3s(&self) {
        self.set_k3s(false);
    }

    fn set_k3s(&self, active: bool) {
        let state = self.record.join("state");
        let mut units = Units::load_from(&state);
        let enabled = units.known("k3s").is_some_and(|unit| unit.enabled);
        units.put("k3s", Unit { enabled, active });
        units.save_to(&state);
    }

    /// The application's pods (`{"items": [...]}`), what its Deployments
    /// would run.
    pub fn set_pods(&self, pods: &serde_json::Value) {
        fs::write(self.state("pods.json"), pods.to_string()).unwrap();
    }

    /// dpkg's database holds exactly `installed` (which `apt-get`, where it
    /// may run, changes).
    pub fn set_packages(&self, installed: &[&str]) {
        self.configure(|config| config.all_packages_installed = false);
        let database = serde_json::json!({ "installed": installed });
        fs::write(self.state("dpkg.json"), database.to_string()).unwrap();
    }

    /// The packages dpkg's database holds.
    pub fn packages(&self) -> Vec<String> {
        let text = fs::read_to_string(self.state("dpkg.json")).unwrap_or_default();
        let database: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        (database["installed"].as_array().into_iter().flatten())
            .filter_map(|name| name.as_str().map(String::from))
            .collect()
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
        stackinstall_fakes::record::read(&self.record)
    }

    /// The recorded calls of `program`, as lines.
    pub fn lines_of(&self, program: &str) -> Vec<String> {
        (self.calls().iter())
            .filter(|call| call.program == program)
            .map(Call::line)
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        stackinstall_fakes::record::clear(&self.record);
    }

    /// Sets an environment variable for every run of the binary.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.unset_env(key);
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
        command.env_clear().envs(self.environment());
        command
    }

    /// The whole environment the binary runs with in this world: the
    /// world's fakes first on `PATH`, small requirements, the world's own
    /// variables last (they win).
    pub fn environment(&self) -> Vec<(String, String)> {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut environment: Vec<(String, String)> = [
            ("PATH", path.as_str()),
            ("HOME", "/root"),
            ("NO_COLOR", "1"),
            // The instance metadata service the install asks for an
            // instance role: a port on 127.0.0.1 where nothing listens (a
            // test never sends anything to 169.254.169.254).
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9"),
            ("STACKINSTALL_ROOT", &self.root.display().to_string()),
            ("STACKINSTALL_REQUIREMENTS__CPUS", "1"),
            ("STACKINSTALL_REQUIREMENTS__MEMORY_MIB", "256"),
            ("STACKINSTALL_REQUIREMENTS__DISK_GIB", "0"),
            (
                "STACKINSTALL_MONGODB__SERVER_PROGRAMS",
                r#"["mongod", "secantusd-py", "python3"]"#,
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        environment.extend(self.env.iter().cloned());
        environment
    }

    /// `install` with `args` after `--domain demo.example.com --self-signed`.
    pub fn install(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.command()
            .args(["install", "--domain", DOMAIN, "--self-signed"])
            .args(args)
            .assert()
    }

    /// `install` with `args`, killed at the kill point `point` (see
    /// `src/host/killpoint.rs`); fails the test unless it died there.
    pub fn install_killed_at(&self, point: &str, args: &[&str]) {
        let install = ["install", "--domain", DOMAIN, "--self-signed"];
        let args: Vec<&str> = install.iter().chain(args).copied().collect();
        assert!(self.killed_at(&args, point), "not killed at {point}");
    }

    /// The kill points a run of `args` reaches, in order (the run must
    /// succeed).
    pub fn kill_trace<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Vec<String> {
        let trace = self.dir.path().join("kill-trace");
        let _ = fs::remove_file(&trace);
        let assert = self
            .command()
            .args(args)
            .env("STACKINSTALL_TEST_KILL_TRACE", &trace)
            .assert();
        assert!(
            assert.get_output().status.success(),
            "{}",
            String::from_utf8_lossy(&assert.get_output().stderr)
        );
        fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Runs `args` killed at `point`; whether it died there.
    pub fn killed_at<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], point: &str) -> bool {
        let output = self
            .command()
            .args(args)
            .env("STACKINSTALL_TEST_KILL_AT", point)
            .output()
            .unwrap();
        std::os::unix::process::ExitStatusExt::signal(&output.status) == Some(libc::SIGKILL)
    }

    /// Every file under the root with its bytes (the log directory left out
    /// unless `with_logs`).
    pub fn files(&self, with_logs: bool) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        for path in walk(&self.root) {
            let shown = format!("/{}", path.strip_prefix(&self.root).unwrap().display());
            files.insert(shown, fs::read(&path).unwrap_or_default());
        }
        if !with_logs {
            files.retain(|path, _| !path.starts_with("/var/log/stackinstall/"));
        }
        files
    }

    /// The text of the run logs under `/var/log/stackinstall/`.
    pub fn logs(&self) -> String {
        (self.files(true).into_iter())
            .filter(|(path, _)| path.starts_with("/var/log/stackinstall/"))
            .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
            .collect()
    }
}

/// Every file below `dir`, sorted (links not followed).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every directory below `dir` (links not followed).
pub fn walk_directories(dir: &Path) -> Vec<PathBuf> {
    let mut directories = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            directories.push(entry.path());
            directories.extend(walk_directories(&entry.path()));
        }
    }
    directories
}

/// The fake programs' binary, `stackinstall-fake` in the target
/// directory's `debug/`. `cargo build` makes it (the fakes are a member of
/// the workspace); a test run that finds it missing or older than its
/// sources builds it first.
pub fn fake_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/PROFILE/deps/it-HASH (or target/PROFILE/examples/...).
        let target = exe
            .ancestors()
            .nth(3)
            .expect("the target directory")
            .to_path_buf();
        let binary = target.join("debug").join("stackinstall-fake");
        let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes");
        let built = fs::metadata(&binary).and_then(|m| m.modified()).ok();
        if built.is_none_or(|built| newest(&sources) > built) {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "stackinstall-fakes"])
                .args(["--bin", "stackinstall-fake", "--target-dir"])
                .arg(&target)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "cargo could not build the fakes");
        }
        binary
    })
}

/// The newest modification time of the files below `dir`.
fn newest(dir: &Path) -> SystemTime {
    (walk(dir).iter())
        .filter(|path| !path.components().any(|part| part.as_os_str() == "target"))
        .filter_map(|path| fs::metadata(path).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}
