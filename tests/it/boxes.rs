//! The host lane on a real Debian host in a box (issue 22): systemd as PID
//! 1, real `apt-get`, `dpkg` and units, a power cut. See `boxes/harness.rs`.
//! `tests/run-all.sh` runs these in a phase of their own (`harness::`).

mod harness;

use std::path::Path;

use harness::{BoxHost, Release, sorted_lines};

/// The harness itself: the box boots as a configured host, isolated from
/// the machine, survives a power cut with its disk, and leaves nothing.
#[test]
fn a_box_boots_as_a_configured_host_and_comes_back_after_a_power_cut() {
    let mut host = BoxHost::boot(Release::Bookworm);
    assert_eq!(host.ok("cat /proc/1/comm").trim(), "systemd");
    assert_eq!(host.ok("systemctl is-system-running").trim(), "running");
    // A configured host: the machine-id it was given before its first
    // boot, so systemd applied no presets.
    assert_eq!(host.ok("cat /etc/machine-id"), host.machine_id);
    assert_eq!(
        host.sh("systemctl is-enabled systemd-udevd.service systemd-udev-trigger.service")
            .stdout
            .lines()
            .collect::<Vec<_>>(),
        ["masked", "masked"]
    );
    // None of the machine's devices: the minimal /dev and nothing else (the
    // console is a file with the machine's /dev/null bound on it).
    let devices = host.ok("find /dev \\( -type c -o -type b \\) -not -path '/dev/pts/*'");
    assert_eq!(
        sorted_lines(&devices),
        sorted_lines("/dev/null\n/dev/random\n/dev/tty\n/dev/urandom\n/dev/zero\n"),
        "{devices}"
    );
    assert_eq!(host.ok("readlink /dev/ptmx").trim(), "pts/ptmx");
    // The console is the machine's /dev/null, not its console.
    assert_eq!(host.ok("stat -c %t:%T /dev/console").trim(), "1:3");
    let sys = host.sh("touch /sys/kernel/stackinstall-test");
    assert!(!sys.success(), "/sys is writable in the box");
    assert!(
        !host.sh("echo 1 > /proc/sys/kernel/sysrq").success(),
        "/proc/sys is writable"
    );
    // A host-like network of its own: an address and a default route on
    // the box's LAN, which the machine does not see.
    assert_eq!(host.ok("hostname -I").trim(), harness::ADDRESS);
    assert_eq!(host.ok("hostname").trim(), "box-host");
    assert!(!Path::new("/sys/class/net/gw0").exists());

    host.ok("echo on-disk > /root/kept && echo in-run > /run/gone && sync");
    let old = host.pid().unwrap();
    host.power_cut();
    assert!(
        !Path::new(&format!("/proc/{old}")).exists(),
        "PID 1 outlived the power cut"
    );
    assert_eq!(
        host.processes(),
        Vec::<u32>::new(),
        "a process outlived the power cut"
    );
    host.start();
    assert_ne!(host.pid(), Some(old));
    assert_eq!(host.ok("cat /root/kept").trim(), "on-disk");
    assert!(
        !host.sh("test -e /run/gone").success(),
        "/run survived the power cut"
    );
    assert_eq!(host.ok("systemctl is-system-running").trim(), "running");
    eprintln!(
        "box: booted, cut and booted again; the second boot took {:.1} s",
        host.boot_time.as_secs_f64()
    );
}

/// A test that fails with a box running still ends it: its PID 1 and every
/// process gone, its root removed.
#[test]
fn a_failing_test_still_ends_its_box() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let host = BoxHost::boot(Release::Bookworm);
        host.ok("systemctl is-active dbus.service");
        seen = Some((host.pid().unwrap(), host.root.clone()));
        panic!("a failing test");
    }));
    assert!(result.is_err());
    let (pid, root) = seen.expect("the box booted");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the box's PID 1 {pid} still runs"
    );
    assert!(!root.exists(), "{} is still there", root.display());
}

/// The profile's settings for the box: its two CPUs are enough, and
/// MongoDB's repository and signing key are the stand-in's, pinned to the
/// fingerprint of the box's test key.
fn configure(host: &BoxHost) {
    let fingerprint = host.ok("cat /srv/mongodb-repo/server-7.0.fingerprint");
    host.write(
        "/root/box.toml",
        &format!(
            r#"[requirements]
cpus = 1
memory_mib = 1024
disk_gib = 1

[downloads]
mongodb_repository = "file:///srv/mongodb-repo"
mongodb_key = "file:///srv/mongodb-repo/server-{{version}}.asc"

[mongodb.signing_keys."7.0"]
fingerprint = "{}"
source = "the box's test key (tests/it/boxes/box.sh)"
"#,
            fingerprint.trim()
        ),
    );
}

/// The host lane as an operator runs it (the kernel's NFS server cannot
/// run in a box: `nfs` runs on its own).
const LANE: &str = "--only packages --only credentials --only mysql --only mongodb --only rabbitmq";

fn install(host: &BoxHost, steps: &str) -> harness::Output {
    host.stackinstall(&format!(
        "--config /root/box.toml --domain demo.example.com --self-signed --yes {steps}"
    ))
}

/// The units the lane's servers run as.
const UNITS: [&str; 3] = [
    "mariadb.service",
    "mongod.service",
    "rabbitmq-server.service",
];

/// What uninstall must leave as it found: the packages and the enabled units.
fn host_state(host: &BoxHost) -> (Vec<String>, Vec<String>) {
    let packages = host.ok("dpkg-query -W -f '${Package} ${Version} ${Status}\\n'");
    let units = host
        .ok("systemctl list-unit-files --state=enabled --no-legend --no-pager | awk '{print $1}'");
    (sorted_lines(&packages), sorted_lines(&units))
}

fn assert_every_step_already_done(output: &harness::Output) {
    assert!(output.success(), "{}", output.text());
    for step in ["packages", "mysql", "mongodb", "rabbitmq"] {
        let line = output
            .stderr
            .lines()
            .find(|line| line.contains(&format!("] {step} ")) && line.starts_with('✓'))
            .unwrap_or_else(|| panic!("no result line for {step}:\n{}", output.text()));
        assert!(
            line.contains("already done"),
            "{step} changed something on a re-run: {line}\n{}",
            output.text()
        );
    }
}

fn assert_servers_run(host: &BoxHost) {
    for unit in UNITS {
        assert_eq!(
            host.sh(&format!("systemctl is-enabled {unit}"))
                .stdout
                .trim(),
            "enabled",
            "{unit}"
        );
        assert_eq!(
            host.sh(&format!("systemctl is-active {unit}"))
                .stdout
                .trim(),
            "active",
            "{unit}"
        );
    }
}

/// Issue 22 items 2 to 5 and issue 23 item 1, for real: the lane installs
/// (the stand-in mongodb-org from its signed repository, the key checked
/// against its pin), every server is enabled and active with the
/// profile's effective settings, a re-run changes nothing, the NFS server
/// is said plainly not to run, a power cut and a boot bring every server
/// back (mongod too: never enabled before) with the logins working, and
/// `uninstall --delete-db` leaves the packages and enabled units as found.
#[test]
fn the_host_lane_survives_a_power_cut_and_uninstall_leaves_the_host_as_found() {
    let mut host = BoxHost::boot(Release::Bookworm);
    configure(&host);
    let before = host_state(&host);

    let first = install(&host, LANE);
    assert!(first.success(), "{}", first.text());
    assert!(
        !first.stderr.contains("NOT PINNED"),
        "the stand-in's key was not checked:\n{}",
        first.text()
    );
    assert_servers_run(&host);
    // The profile's settings are the server's: stackbill.cnf is read after
    // the distribution's own files.
    let settings = host.ok(
        "mariadb -N -B -e 'SELECT @@bind_address, @@sql_mode, @@wait_timeout, @@interactive_timeout, @@connect_timeout, @@max_connections, @@max_connect_errors, @@skip_name_resolve, @@log_bin_trust_function_creators'",
    );
    assert_eq!(
        settings.trim(),
        "0.0.0.0\tSTRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION\t28800\t230400\t36000\t1000\t100000\t1\t1"
    );
    // mongod listens on every address with authorization on.
    let mongo = host.ok(&format!(
        "/usr/lib/mongodb-org-standin/venv/bin/python3 -c \"import pymongo; c = pymongo.MongoClient('{}', 27017, directConnection=True, serverSelectionTimeoutMS=5000)
try:
    c.admin.command('listDatabases'); print('open')
except pymongo.errors.OperationFailure: print('authorization required')\"",
        harness::ADDRESS
    ));
    assert_eq!(mongo.trim(), "authorization required");
    let recorded = host
        .ok("grep -A3 -E '^(added_packages|enabled_units) = ' /var/lib/stackinstall/state.toml");
    eprintln!("box: the state records what the transaction added:\n{recorded}");

    let rerun = install(&host, LANE);
    assert_every_step_already_done(&rerun);

    // The kernel's NFS server cannot run in a box: the step says so.
    let nfs = install(&host, "--only nfs");
    assert!(!nfs.success(), "{}", nfs.text());
    assert!(
        nfs.stderr
            .contains("the kernel's NFS server cannot run in this container"),
        "{}",
        nfs.text()
    );
    let status = host.stackinstall("status");
    for step in ["mysql", "mongodb", "rabbitmq"] {
        let line = status.stdout.lines().find(|l| l.starts_with(step)).unwrap();
        assert!(line.contains("health: ok"), "{}", status.text());
    }
    let nfs_line = status
        .stdout
        .lines()
        .find(|l| l.starts_with("nfs"))
        .unwrap();
    assert!(
        nfs_line.contains("failed")
            && nfs_line.contains("`nfs-server.service` is not enabled and does not run")
            || nfs_line.contains("`nfs-server.service` is enabled but does not run"),
        "{}",
        status.text()
    );
    assert!(nfs_line.contains("container"), "{}", status.text());
    let doctor = host.stackinstall("doctor --checks host --output json");
    let report: serde_json::Value =
        serde_json::from_str(&doctor.stdout).unwrap_or_else(|_| panic!("{}", doctor.text()));
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap()
    };
    for name in ["host.mysql", "host.mongodb", "host.rabbitmq"] {
        assert_eq!(check(name)["outcome"], "ok", "{name}: {}", doctor.stdout);
    }
    let services = check("host.services");
    let findings = services["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{services}");
    assert_eq!(findings[0]["class"], "service-not-running");
    assert!(
        findings[0]["what"]
            .as_str()
            .unwrap()
            .contains("nfs-server.service"),
        "{services}"
    );

    host.power_cut();
    host.start();
    assert_servers_run(&host);
    let after_cut = install(&host, LANE);
    assert_every_step_already_done(&after_cut);
    let doctor = host.stackinstall("doctor --checks host --output json");
    let report: serde_json::Value =
        serde_json::from_str(&doctor.stdout).unwrap_or_else(|_| panic!("{}", doctor.text()));
    for name in ["host.mysql", "host.mongodb", "host.rabbitmq"] {
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap();
        assert_eq!(
            check["outcome"], "ok",
            "{name} after the power cut: {}",
            doctor.stdout
        );
    }

    let uninstall = host.stackinstall("uninstall --delete-db --yes");
    assert!(uninstall.success(), "{}", uninstall.text());
    let after = host_state(&host);
    assert_eq!(
        (&after.0, &after.1),
        (&before.0, &before.1),
        "uninstall left the host otherwise than it found it:\npackages:\n{}units:\n{}",
        harness::difference(&before.0, &after.0),
        harness::difference(&before.1, &after.1)
    );
}

/// Issue 22 item 7: the ECR renewal units as the `registry` step renders
/// them, loaded by the box's systemd: `systemd-analyze verify` finds
/// nothing, the timer is scheduled, and after a power cut it is again.
#[test]
fn the_renewal_timer_is_verified_scheduled_and_survives_a_power_cut() {
    const TIMER: &str = "stackinstall-ecr-refresh.timer";
    const SERVICE: &str = "stackinstall-ecr-refresh.service";
    let mut host = BoxHost::boot(Release::Bookworm);
    host.ok("/root/stackinstall render --domain demo.example.com --out /root/rendered </dev/null");
    let rendered = host.ok("find /root/rendered -name 'stackinstall-ecr-refresh.*'");
    assert_eq!(sorted_lines(&rendered).len(), 2, "{rendered}");
    // Where the registry step puts them, with the binary the service runs.
    host.ok(&format!(
        "for f in {rendered}; do install -m 0644 $f /etc/systemd/system/; done && install -m 0755 /root/stackinstall /usr/local/bin/stackinstall",
        rendered = rendered.split_whitespace().collect::<Vec<_>>().join(" ")
    ));
    let verify = host.sh(&format!(
        "systemd-analyze verify /etc/systemd/system/{SERVICE} /etc/systemd/system/{TIMER}"
    ));
    assert!(verify.success(), "{}", verify.text());
    let complaints: Vec<&str> = (verify.stderr.lines())
        .filter(|line| line.contains("stackinstall-ecr-refresh"))
        .collect();
    assert!(complaints.is_empty(), "{}", verify.text());
    host.ok(&format!(
        "systemctl daemon-reload && systemctl enable --now {TIMER}"
    ));
    let scheduled = |host: &BoxHost| {
        let timers = host.ok(&format!(
            "systemctl list-timers --all --no-legend --no-pager {TIMER}"
        ));
        let line = timers
            .lines()
            .find(|line| line.contains(TIMER))
            .unwrap_or_default()
            .to_string();
        assert!(
            !line.is_empty() && !line.starts_with("n/a"),
            "no next run: {timers}"
        );
        line
    };
    eprintln!("box: {}", scheduled(&host));
    host.power_cut();
    host.start();
    assert_eq!(
        host.sh(&format!("systemctl is-active {TIMER}"))
            .stdout
            .trim(),
        "active"
    );
    assert_eq!(
        host.sh(&format!("systemctl is-enabled {TIMER}"))
            .stdout
            .trim(),
        "enabled"
    );
    eprintln!("box: after the power cut: {}", scheduled(&host));
}

/// Issue 22 fault 3: on a host whose name resolves only through a DNS
/// server that does not answer (an air-gapped host; here the box's name is
/// taken out of /etc/hosts after the install), a no-op re-run asks no name
/// at all. RabbitMQ looked its host's name up for every AMQP connection
/// (its default cluster name) and the verification's login waited for it.
#[test]
fn a_no_op_rerun_on_a_host_without_dns_looks_up_no_name() {
    let mut host = BoxHost::boot(Release::Bookworm);
    configure(&host);
    let lane = "--only packages --only credentials --only mysql --only rabbitmq";
    let first = install(&host, lane);
    assert!(first.success(), "{}", first.text());
    host.ok("sed -i '/box-host/d' /etc/hosts");
    let queries = host.record_dns();
    let rerun = install(&host, lane);
    assert!(rerun.success(), "{}", rerun.text());
    let asked = std::fs::read_to_string(&queries).unwrap();
    assert_eq!(
        asked,
        "",
        "a no-op re-run looked names up:\n{asked}\n{}",
        rerun.text()
    );
}

/// Debian 13 builds and boots as a box too; stackinstall supports Debian
/// 12 only (and MongoDB publishes no packages for 13), and its preflight
/// says so before anything changes.
#[test]
fn a_debian_13_box_boots_and_preflight_refuses_it_by_name() {
    let host = BoxHost::boot(Release::Trixie);
    assert_eq!(host.ok("cat /proc/1/comm").trim(), "systemd");
    assert_eq!(
        host.ok(". /etc/os-release && echo $VERSION_ID").trim(),
        "13"
    );
    configure(&host);
    let before = host_state(&host);
    let run = install(&host, LANE);
    assert_eq!(run.code, Some(2), "{}", run.text());
    assert!(
        run.stderr
            .contains("Debian GNU/Linux 13 (trixie) is not supported"),
        "{}",
        run.text()
    );
    assert_eq!(host_state(&host), before, "preflight changed the host");
}

/// The PIDs (in the box) of the processes named `name`.
fn pids_of(host: &BoxHost, name: &str) -> Vec<String> {
    let found = host.sh(&format!(
        "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = {name} ] && echo ${{p#/proc/}}; done"
    ));
    found
        .stdout
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Polls `script` in the box until it succeeds (a test's own limit: the
/// box's command timeout).
fn wait_until(host: &BoxHost, script: &str) {
    let deadline = std::time::Instant::now() + harness::COMMAND_TIMEOUT;
    while !host.sh(script).success() {
        assert!(
            std::time::Instant::now() < deadline,
            "never true in the box: {script}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The lane's install command, for a run in the background.
fn install_command() -> String {
    format!(
        "{} --config /root/box.toml --domain demo.example.com --self-signed --yes {LANE} </dev/null",
        harness::BINARY
    )
}

/// Issue 22 item 6, first kind: stackinstall killed during the real
/// `apt-get install` while dpkg works (apt and dpkg go on and hold dpkg's
/// lock: the re-run waits for it) converges to the uninterrupted result,
/// and the killed run's transaction is still recorded: uninstall leaves the
/// host as found.
#[test]
fn stackinstall_killed_during_the_real_apt_install_converges() {
    let mut host = BoxHost::boot(Release::Bookworm);
    configure(&host);
    let before = host_state(&host);
    host.spawn(&install_command(), "/root/killed.log");
    wait_until(
        &host,
        "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = dpkg ] && exit 0; done; exit 1",
    );
    let killed = pids_of(&host, "stackinstall");
    assert_eq!(killed.len(), 1, "{killed:?}");
    host.ok(&format!("kill -9 {}", killed[0]));
    let apt_left = !pids_of(&host, "apt-get").is_empty();
    let rerun = install(&host, LANE);
    assert!(
        rerun.success(),
        "apt still ran: {apt_left}\n{}\nmongod's journal:\n{}",
        rerun.text(),
        host.sh("journalctl -u mongod --no-pager -n 40").text()
    );
    assert_servers_run(&host);
    assert_every_step_already_done(&install(&host, LANE));
    let uninstall = host.stackinstall("uninstall --delete-db --yes");
    assert!(uninstall.success(), "{}", uninstall.text());
    let after = host_state(&host);
    assert_eq!(
        after,
        before,
        "after a kill during apt, uninstall left:\npackages:\n{}units:\n{}",
        harness::difference(&before.0, &after.0),
        harness::difference(&before.1, &after.1)
    );
    eprintln!(
        "box: stackinstall killed while dpkg ran (apt-get still running after the kill: {apt_left}): converged, uninstalled to the host as found"
    );
}

/// Issue 22 item 6, second kind: a power cut while dpkg unpacks leaves it
/// half done (`dpkg --audit` names packages); the re-run has it finish
/// (`dpkg --configure -a`) and converges.
#[test]
fn a_power_cut_during_the_real_apt_install_is_repaired_by_the_next_run() {
    let mut host = BoxHost::boot(Release::Bookworm);
    configure(&host);
    host.spawn(&install_command(), "/root/cut.log");
    wait_until(
        &host,
        "grep -qE '^Status: install ok (unpacked|half-configured|half-installed)' /var/lib/dpkg/status",
    );
    host.power_cut();
    host.start();
    let audit = host.sh("dpkg --audit");
    assert!(
        !audit.stdout.trim().is_empty(),
        "the power cut left dpkg whole: {}",
        audit.text()
    );
    let repaired = install(&host, LANE);
    assert!(repaired.success(), "{}", repaired.text());
    assert_eq!(host.sh("dpkg --audit").stdout.trim(), "");
    assert_servers_run(&host);
    assert_every_step_already_done(&install(&host, LANE));
    eprintln!(
        "box: power cut while dpkg unpacked ({} lines of `dpkg --audit`): repaired and converged",
        audit.stdout.lines().count()
    );
}

/// A test process killed without running its Drop (SIGKILL) takes its box
/// along: the launcher dies with the test's thread (a parent-death signal),
/// the box's PID 1 with the launcher.
#[test]
fn a_killed_test_process_takes_its_box_along() {
    if let Ok(root) = std::env::var("STACKINSTALL_TEST_BOX_CHILD") {
        let host = BoxHost::boot(Release::Bookworm);
        std::fs::write(
            &root,
            format!("{} {}", host.pid().unwrap(), host.root.display()),
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(600));
        unreachable!("the parent kills this process");
    }
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            // The full path: every test module shares the one `it` binary.
            concat!(
                module_path!(),
                "::a_killed_test_process_takes_its_box_along"
            )
            .trim_start_matches("it::"),
            "--nocapture",
        ])
        .env("STACKINSTALL_TEST_BOX_CHILD", report.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + harness::COMMAND_TIMEOUT;
    let written = loop {
        let text = std::fs::read_to_string(report.path()).unwrap_or_default();
        if !text.is_empty() {
            break text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended ({status}) before it booted its box");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never booted its box"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (pid, root) = written.split_once(' ').unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let proc = format!("/proc/{pid}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Path::new(&proc).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !Path::new(&proc).exists(),
        "the box's PID 1 {pid} outlived its killed test"
    );
    // What Drop would have removed is left; a later box does not need it.
    let _ = std::process::Command::new("rm")
        .args(["-rf", root])
        .status();
    let _ = std::fs::remove_file(Path::new(root).with_extension("log"));
}
