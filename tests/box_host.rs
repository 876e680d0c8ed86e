//! The host lane on a real Debian host in a box (issue 22): systemd as PID
//! 1, real `apt-get`, `dpkg` and units, a power cut. See `boxes/mod.rs`.
#![allow(clippy::disallowed_methods)]

mod boxes;

use std::path::Path;

use boxes::{BoxHost, Release, sorted_lines};

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
    assert_eq!(host.ok("hostname -I").trim(), boxes::ADDRESS);
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
