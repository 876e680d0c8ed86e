//! Scheduled backups (`[backup] schedule` and `keep`, the `backups` step)
//! after a full install with the real servers: the timer and service
//! written with the schedule and the command the timer runs, a re-run
//! changing nothing; the scheduled backup itself (`backup --scheduled`, as
//! the service runs it) keeping the newest `keep` of its own archives and
//! touching nothing else (a link planted under an archive's name is not
//! followed nor counted); the schedule removed from the configuration, or
//! an uninstall, taking the timer away; a schedule without a key file (or
//! with one that is missing), or that is no calendar event, refused before
//! anything changes; a key file `backup` refuses (another account's)
//! refused by the install's preflight in the same words.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::backup::installed_world;
use crate::support::{World, outcomes, report, stderr, stdout};

const KEY_FILE: &str = "/etc/stackinstall/backup.key";

const TIMER: &str = "/etc/systemd/system/stackinstall-backup.timer";
const SERVICE: &str = "/etc/systemd/system/stackinstall-backup.service";
const CONFIG: &str = "/etc/stackinstall/backup.toml";
const BACKUPS: &str = "/var/lib/stackinstall/backups";

/// The fake systemd's record of the backup timer: (enabled, active).
fn timer_state(world: &World) -> (bool, bool) {
    let text = fs::read_to_string(world.state("systemd.json")).unwrap_or_default();
    let units: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let unit = &units["units"]["stackinstall-backup.timer"];
    (
        unit["enabled"].as_bool().unwrap_or(false),
        unit["active"].as_bool().unwrap_or(false),
    )
}

fn changed(assert: &assert_cmd::assert::Assert) -> Vec<String> {
    (outcomes(assert).into_iter())
        .filter(|(_, result)| result == "changed")
        .map(|(step, _)| step)
        .collect()
}

#[test]
fn a_schedule_installs_a_timer_whose_backups_keep_the_newest_and_nothing_else_is_touched() {
    let (mut world, _user, key) = installed_world("schedule");

    // Refused before anything changes: no key file, and no calendar event.
    let before = world.files(false);
    for (variable, value, words) in [
        (
            "STACKINSTALL_BACKUP__KEY_FILE",
            "",
            "needs `backup.key_file`",
        ),
        (
            "STACKINSTALL_BACKUP__SCHEDULE",
            "every day at 2",
            "must be a systemd calendar event",
        ),
        (
            "STACKINSTALL_BACKUP__KEY_FILE",
            "/etc/stackinstall/no-such.key",
            "`[backup] key_file` `/etc/stackinstall/no-such.key` does not exist",
        ),
    ] {
        let mut command = world.command();
        command
            .args([
                "install",
                "--domain",
                crate::support::DOMAIN,
                "--self-signed",
            ])
            .args(["--yes"])
            .env("STACKINSTALL_BACKUP__SCHEDULE", "daily")
            .env(variable, value);
        let said = stderr(&command.assert().code(2));
        assert!(said.contains(words), "{variable}={value:?}: {said}");
        assert_eq!(world.files(false), before, "{variable}={value:?}");
    }

    world.set_env("STACKINSTALL_BACKUP__SCHEDULE", "Mon..Fri 02:30");
    world.set_env("STACKINSTALL_BACKUP__KEEP", "2");
    let first = world.install(&["--yes", "--output", "json"]).success();
    assert_eq!(changed(&first), ["backups"], "{}", stderr(&first));
    let timer = world.read(TIMER);
    assert!(timer.contains("\nOnCalendar=Mon..Fri 02:30\n"), "{timer}");
    assert!(timer.contains("\nPersistent=true\n"), "{timer}");
    assert!(timer.contains("\nWantedBy=timers.target\n"), "{timer}");
    let service = world.read(SERVICE);
    assert!(
        service.contains(
            "\nExecStart=/usr/local/bin/stackinstall backup --scheduled --config /etc/stackinstall/backup.toml\n"
        ),
        "{service}"
    );
    assert!(service.contains("\nType=oneshot\n"), "{service}");
    let config = world.read(CONFIG);
    assert!(config.contains("schedule = \"Mon..Fri 02:30\""), "{config}");
    assert!(config.contains("keep = 2"), "{config}");
    assert!(
        config.contains("key_file = \"/etc/stackinstall/backup.key\""),
        "{config}"
    );
    let mode = fs::metadata(world.path(CONFIG))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(timer_state(&world), (true, true));

    let again = world.install(&["--yes", "--output", "json"]).success();
    assert!(changed(&again).is_empty(), "{:?}", changed(&again));

    // A new schedule: the timer is rewritten, reloaded and restarted (a
    // loaded timer keeps its old schedule until then); once.
    world.set_env("STACKINSTALL_BACKUP__SCHEDULE", "Sat 04:00");
    world.clear_calls();
    let moved = world.install(&["--yes", "--output", "json"]).success();
    assert_eq!(changed(&moved), ["backups"], "{}", stderr(&moved));
    assert!(world.read(TIMER).contains("\nOnCalendar=Sat 04:00\n"));
    let systemctl = world.lines_of("systemctl");
    let restarts = |lines: &[String]| {
        (lines.iter())
            .filter(|line| line.contains("restart stackinstall-backup.timer"))
            .count()
    };
    assert_eq!(restarts(&systemctl), 1, "{systemctl:?}");
    assert!(systemctl.iter().any(|line| line.contains("daemon-reload")));
    world.clear_calls();
    let settled = world.install(&["--yes", "--output", "json"]).success();
    assert!(changed(&settled).is_empty(), "{:?}", changed(&settled));
    assert_eq!(restarts(&world.lines_of("systemctl")), 0);

    // What the timer runs, with older archives, others' files and a link
    // planted under an archive's name in the directory.
    let backups = world.path(BACKUPS);
    fs::create_dir_all(&backups).unwrap();
    for name in [
        "scheduled-backup-20200101T020000Z.tar.gz.age",
        "scheduled-backup-20200102T020000Z.tar.gz.age",
        "scheduled-backup-20200103T020000Z.tar.gz.age",
        "backup-20200101T000000Z.tar.gz.age",
        "notes.txt",
    ] {
        fs::write(backups.join(name), name).unwrap();
    }
    let outside = world.dir.path().join("precious.txt");
    fs::write(&outside, "not a backup").unwrap();
    let link = backups.join("scheduled-backup-20000101T000000Z.tar.gz.age");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let config_path = world.path(CONFIG).display().to_string();
    let run = world
        .command()
        .args(["backup", "--scheduled", "--config", &config_path])
        .assert();
    let said = format!("{}{}", stdout(&run), stderr(&run));
    assert!(run.get_output().status.success(), "{said}");
    let mut names: Vec<String> = fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    let new = (names.iter())
        .find(|name| {
            name.starts_with("scheduled-backup-")
                && !name.starts_with("scheduled-backup-2020")
                && !name.starts_with("scheduled-backup-2000")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no new scheduled backup in {names:?}"));
    let mut expected = vec![
        "backup-20200101T000000Z.tar.gz.age".to_string(),
        "notes.txt".to_string(),
        "scheduled-backup-20000101T000000Z.tar.gz.age".to_string(),
        "scheduled-backup-20200103T020000Z.tar.gz.age".to_string(),
        new.clone(),
    ];
    expected.sort();
    assert_eq!(names, expected, "{said}");
    assert!(
        said.contains(
            "Removed the older scheduled backup scheduled-backup-20200101T020000Z.tar.gz.age"
        ),
        "{said}"
    );
    assert_eq!(fs::read_to_string(&outside).unwrap(), "not a backup");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let bytes = fs::read(backups.join(&new)).unwrap();
    stackinstall::backup::unpack(&bytes, &stackinstall::backup::Protection::KeyFile(key))
        .expect("the scheduled backup decrypts with the key and verifies");

    // The schedule taken out of the configuration: the timer goes.
    world.unset_env("STACKINSTALL_BACKUP__SCHEDULE");
    let removed = world.install(&["--yes", "--output", "json"]).success();
    assert_eq!(changed(&removed), ["backups"], "{}", stderr(&removed));
    for path in [TIMER, SERVICE, CONFIG] {
        assert!(!world.path(path).exists(), "{path} is still there");
    }
    assert!(!timer_state(&world).1, "the timer still runs");
    assert!(backups.join(&new).exists(), "an archive was removed");

    // Back again, then an uninstall takes it away and keeps the archives.
    world.set_env("STACKINSTALL_BACKUP__SCHEDULE", "daily");
    world.install(&["--yes"]).success();
    assert_eq!(timer_state(&world), (true, true));
    let uninstall = world.command().args(["uninstall", "--yes"]).assert();
    assert!(
        uninstall.get_output().status.success(),
        "{}",
        stderr(&uninstall)
    );
    for path in [TIMER, SERVICE, CONFIG] {
        assert!(
            !world.path(path).exists(),
            "{path} is still there after uninstall"
        );
    }
    assert!(!timer_state(&world).1);
    assert!(backups.join(&new).exists(), "uninstall removed an archive");
    report(
        "scheduled backups: a schedule without a key file, with a missing one, and one that is no calendar event refused before any change; `Mon..Fri 02:30` keep 2 wrote the timer, service and 0600 config (re-run: nothing); the scheduled backup kept the newest 2 of its own archives, left a manual backup, a note and a planted link (and its target) alone, and decrypts; the schedule removed (and an uninstall) took the timer away, archives kept",
    );
}

#[test]
fn a_key_file_backup_refuses_is_refused_by_the_installs_preflight_in_the_same_words() {
    let mut world = World::engine();
    world.install(&["--only", "credentials", "--yes"]).success();
    crate::backup::with_key(&mut world);
    // Root's mode 0600, but another account's file: it could swap the key.
    let key = world.path(KEY_FILE);
    std::os::unix::fs::chown(&key, Some(65534), Some(65534)).unwrap();
    let words = "cannot be used: it belongs to uid 65534, not root";

    let said = crate::backup::refused_backup(&world);
    assert!(said.contains(words), "{said}");

    world.set_env("STACKINSTALL_BACKUP__SCHEDULE", "daily");
    let before = world.files(false);
    for args in [&["--only", "backups", "--plan"][..], &["--only", "backups"]] {
        let refused = world.install(args).code(2);
        let said = stderr(&refused);
        assert!(
            said.contains(&format!("`[backup] key_file` `{KEY_FILE}` {words}")),
            "{args:?}: {said}"
        );
        assert!(said.contains("chown root:root"), "{args:?}: {said}");
    }
    assert_eq!(world.files(false), before, "nothing changed");

    // Root's again: the install goes on.
    std::os::unix::fs::chown(&key, Some(0), Some(0)).unwrap();
    let plan = world.install(&["--only", "backups", "--plan"]).success();
    assert!(
        stdout(&plan).contains(&format!("are encrypted to `{KEY_FILE}`")),
        "{}",
        stdout(&plan)
    );
    report(
        "scheduled backups: a key file of uid 65534 (mode 0600) refused by `backup` and by the install's preflight (plan and run) in the same words, nothing changed; root's again, accepted",
    );
}
