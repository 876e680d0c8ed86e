//! The `mongodb` step against the SecantusDB that `tests/run-all.sh` starts
//! on 127.0.0.1 (MongoDB wire protocol, `--auth`, SCRAM-SHA-256 users, an
//! admin account), with the package reported installed and `systemctl`
//! faked. SecantusDB has no localhost exception, so the step administers
//! through the test's admin account (`[mongodb] admin_username`) or as the
//! user itself; the localhost exception, the apt repository and mongod
//! itself are exercised in `vagrant/`. Every test uses its own user name.

use std::os::unix::fs::MetadataExt;

use mongodb::bson::doc;

use crate::support::servers::{
    block_on, mongodb_admin as admin, mongodb_client as client, setting, unique,
};
use crate::support::{DOMAIN, World, os, outcomes, plan_lines, report, servers, stderr};

/// A Debian world whose packages are installed, whose units run (the fake
/// `systemctl` records what is asked of it), where `apt-get` must not run,
/// with the test SecantusDB for `user` through the admin account.
fn world(user: &str) -> World {
    let mut world = World::new();
    world.write("/etc/os-release", os::DEBIAN_12);
    world.host_fakes();
    servers::with_mongodb(&mut world, user);
    world
}

/// Runs `credentials` and `mongodb`; returns stderr and, when it
/// succeeded, the result of `mongodb` (`--output json`).
fn try_run(world: &World, extra: &[&str]) -> (String, Option<String>) {
    let mut args = vec![
        "--output",
        "json",
        "--only",
        "credentials",
        "--only",
        "mongodb",
    ];
    args.extend(extra);
    let assert = world.install(&args);
    let result =
        (assert.get_output().status.success()).then(|| outcomes(&assert)["mongodb"].clone());
    (stderr(&assert), result)
}

/// `try_run`, checked to succeed: stderr and the result of `mongodb`.
fn run(world: &World, extra: &[&str]) -> (String, String) {
    let (text, result) = try_run(world, extra);
    let result = result.unwrap_or_else(|| panic!("install failed:\n{text}"));
    (text, result)
}

fn password(world: &World) -> String {
    let credentials: toml::Table =
        toml::from_str(&world.read("/etc/stackinstall/credentials.toml")).unwrap();
    credentials["mongodb"]["password"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Logs in as `user` with SCRAM-SHA-256 and asks for its own roles.
fn login(user: &str, password: &str) -> Result<Vec<String>, mongodb::error::Error> {
    let command = doc! { "usersInfo": { "user": user, "db": "admin" } };
    let reply = block_on(async {
        let client = client(Some((user, password)));
        client.database("admin").run_command(command).await
    })?;
    let users = reply.get_array("users").unwrap();
    let roles = users[0].as_document().unwrap().get_array("roles").unwrap();
    Ok(roles
        .iter()
        .map(|role| {
            let role = role.as_document().unwrap();
            format!(
                "{}@{}",
                role.get_str("role").unwrap(),
                role.get_str("db").unwrap()
            )
        })
        .collect())
}

fn drop_user(user: &str) {
    let _ = admin(doc! { "dropUser": user });
}

fn restarts(world: &World) -> usize {
    let calls = world.calls();
    calls
        .iter()
        .filter(|c| c.line() == "systemctl restart mongod")
        .count()
}

#[test]
fn mongodb_creates_the_user_with_its_roles_and_a_second_run_changes_nothing() {
    let user = unique("mg");
    let bystander = unique("mgby");
    let mut world = world(&user);
    admin(doc! { "createUser": &bystander, "pwd": "BystanderPass1", "roles": [{ "role": "read", "db": "admin" }] }).unwrap();

    let (first, result) = run(&world, &[]);
    assert_eq!(result, "changed", "{first}");
    let password = password(&world);
    let roles = login(&user, &password).expect("SCRAM-SHA-256 login with the file's password");
    assert_eq!(roles, ["root@admin", "readWriteAnyDatabase@admin"]);
    let refused = login(&user, "NotThePassword1").expect_err("a wrong password is refused");
    assert!(refused.to_string().contains("uthentication"), "{refused}");
    assert!(!first.contains(&password), "the password is never printed");
    for (path, bytes) in world.files(true) {
        if path.starts_with("/var/log/") {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&password), "{path} holds the password");
        }
    }

    let conf = world.read("/etc/mongod.conf");
    insta::assert_snapshot!("mongod_conf", conf);
    assert_eq!(
        restarts(&world),
        1,
        "the new mongod.conf restarts mongod once"
    );
    let key_path = world.path("/var/lib/mongodb/encryption");
    let key = world.read("/var/lib/mongodb/encryption");
    assert_eq!(key.trim_end().len(), 1008, "756 random bytes in base64");
    assert_eq!(std::fs::metadata(&key_path).unwrap().mode() & 0o7777, 0o600);
    assert!(
        !conf.contains("keyFile"),
        "the seed's conf does not use the key file"
    );

    world.clear_calls();
    let (second, result) = run(&world, &["--redo", "mongodb"]);
    assert_eq!(result, "unchanged", "{second}");
    assert_eq!(
        restarts(&world),
        0,
        "an unchanged mongod.conf restarts nothing"
    );
    assert_eq!(world.read("/etc/mongod.conf"), conf);
    assert_eq!(
        world.read("/var/lib/mongodb/encryption"),
        key,
        "the key is made once"
    );

    world.set_env("STACKINSTALL_MONGODB__ADMIN_USERNAME", "");
    let (third, result) = run(&world, &["--redo", "mongodb"]);
    assert_eq!(result, "unchanged", "the user administers itself: {third}");

    let seen = admin(doc! { "usersInfo": { "user": &bystander, "db": "admin" } }).unwrap();
    let roles = seen.get_array("users").unwrap()[0]
        .as_document()
        .unwrap()
        .get_array("roles");
    assert_eq!(
        roles.unwrap().len(),
        1,
        "the bystander keeps its one role: {seen}"
    );
    let ping = block_on(async {
        let client = client(Some((&bystander, "BystanderPass1")));
        client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
    });
    ping.expect("the bystander's password is untouched");
    drop_user(&bystander);
    drop_user(&user);
}

#[test]
fn mongodb_password_changed_behind_our_back_is_set_back() {
    let user = unique("md");
    let mut world = world(&user);
    run(&world, &[]);
    admin(doc! { "updateUser": &user, "pwd": "ChangedByHand99" }).unwrap();
    let password = password(&world);
    assert!(login(&user, &password).is_err(), "the drift is real");

    world.set_env("STACKINSTALL_MONGODB__ADMIN_USERNAME", "");
    let (refused, result) = try_run(&world, &[]);
    assert!(
        result.is_none(),
        "without an account that logs in, nothing can repair it"
    );
    assert!(refused.contains("`[mongodb] admin_username`"), "{refused}");

    world.set_env(
        "STACKINSTALL_MONGODB__ADMIN_USERNAME",
        &setting("STACKINSTALL_TEST_MONGODB_ADMIN_USER"),
    );
    let (output, result) = run(&world, &[]);
    assert!(
        output.contains(&format!(
            "the password of MongoDB user `{user}` was not the credentials file's"
        )),
        "{output}"
    );
    assert_eq!(result, "changed", "{output}");
    assert!(!output.contains(&password), "the password is never printed");
    login(&user, &password).expect("the file's password works again");
    drop_user(&user);
}

fn plan(world: &World) -> assert_cmd::assert::Assert {
    world
        .command()
        .args(["install", "--domain", DOMAIN, "--self-signed"])
        .args(["--plan", "--output", "json", "--only", "mongodb"])
        .assert()
}

#[test]
fn mongodb_plan_adds_the_repository_and_masks_the_password() {
    let user = unique("mp");
    let world = world(&user);
    world.write("/etc/os-release", os::UBUNTU_2204);
    world.set_packages(&[]);
    let assert = plan(&world).success();
    let plan: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    // The `packages` step installs the server (one apt transaction), then
    // `mongodb` configures it.
    let actions = plan_lines(&plan, &["packages", "mongodb"]);
    insta::with_settings!({ filters => vec![(user.as_str(), "[user]")] }, {
        insta::assert_snapshot!("mongodb_plan", actions.join("\n"));
    });
    assert!(
        world.calls().iter().all(|c| c.program != "apt-get"
            && (c.program != "systemctl"
                || ["is-active", "is-enabled", "show"].contains(&c.args[0].as_str()))),
        "a plan changes nothing"
    );
    assert!(!world.path("/etc/mongod.conf").exists());
}

/// The os-release of each release MongoDB's series are looked up for.
const RELEASES: [(&str, &str); 4] = [
    ("focal", os::UBUNTU_2004),
    ("jammy", os::UBUNTU_2204),
    ("noble", os::UBUNTU_2404),
    ("bookworm", os::DEBIAN_12),
];

/// The source list a plan would write, or the exit code and error.
fn planned_series(world: &World) -> Result<String, (i32, String)> {
    let output = plan(world).get_output().clone();
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        return Err((output.status.code().unwrap_or(-1), text));
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let found = text
        .split("/etc/apt/sources.list.d/mongodb-org-")
        .nth(1)
        .and_then(|rest| rest.split(".list").next())
        .expect("the plan writes a source list");
    Ok(found.to_string())
}

#[test]
fn mongodb_series_fits_the_host_unless_pinned_and_a_bad_pin_stops_in_preflight() {
    // (pinned, the series per release in RELEASES' order; None: refused)
    let table: [(&str, [Option<&str>; 4]); 3] = [
        ("", [Some("7.0"), Some("7.0"), Some("8.0"), Some("7.0")]),
        ("7.0", [Some("7.0"), Some("7.0"), None, Some("7.0")]),
        ("8.0", [Some("8.0"), Some("8.0"), Some("8.0"), Some("8.0")]),
    ];
    let (mut cases, mut refused) = (0, 0);
    for (pinned, expected) in table {
        for ((codename, os_release), wanted) in RELEASES.iter().zip(expected) {
            let mut world = world(&unique("ms"));
            world.write("/etc/os-release", os_release);
            world.set_packages(&[]);
            world.set_env("STACKINSTALL_MONGODB__VERSION", &format!("\"{pinned}\""));
            cases += 1;
            match (planned_series(&world), wanted) {
                (Ok(series), Some(wanted)) => assert_eq!(series, wanted, "{codename} {pinned:?}"),
                (Err((code, text)), None) => {
                    assert_eq!(code, 2, "{text}");
                    assert!(text.contains(&format!("MongoDB publishes no mongodb-org {pinned} packages for ubuntu `{codename}`")), "{text}");
                    assert!(
                        text.contains("focal, jammy, bookworm")
                            && text.contains("for this host: 8.0"),
                        "{text}"
                    );
                    refused += 1;
                }
                (got, wanted) => {
                    panic!("{codename} pinned {pinned:?}: got {got:?}, wanted {wanted:?}")
                }
            }
        }
    }
    report(&format!(
        "mongodb series: {cases} plans (4 releases x unpinned, 7.0, 8.0), {refused} refused with exit 2"
    ));
}

#[test]
fn a_pinned_series_without_packages_stops_the_install_before_apt_get() {
    let mut world = world(&unique("mn"));
    world.write("/etc/os-release", RELEASES[2].1);
    world.set_packages(&[]);
    world.set_env("STACKINSTALL_MONGODB__VERSION", "\"7.0\"");
    let assert = world
        .install(&["--only", "credentials", "--only", "mongodb"])
        .code(2);
    let text = stderr(&assert);
    assert!(
        text.contains("MongoDB publishes no mongodb-org 7.0 packages for ubuntu `noble`"),
        "{text}"
    );
    assert!(
        world.calls().iter().all(|c| c.program != "apt-get"),
        "apt-get never ran"
    );
    assert!(
        !world.path("/etc/apt").exists(),
        "no source list was written"
    );
    assert!(
        !world.path("/etc/stackinstall/credentials.toml").exists(),
        "nothing changed"
    );
}

/// The tests' signing key and its fingerprint (as gpg gives it).
const KEY: &str = include_str!("../fixtures/test-signing-key.asc");
const KEY_FINGERPRINT: &str = "28BB7FC053F6C2A0AF6AF521F010861042996F61";
/// Another key (gpg's fingerprint 6EF3AC95B26EB356BAC5D63727118245C71BD54A).
const OTHER_KEY: &str = include_str!("../fixtures/other-signing-key.asc");

/// A Debian world in the default profile (no `[mongodb] version`)
/// without mongodb-org, where `apt-get` may run, whose MongoDB signing
/// key URL is the tests' download server serving `served` as the key of
/// every series, and 7.0 pinned to the tests' key. Returns the world and
/// the server's log of requests.
fn key_world(user: &str, served: &str) -> (World, crate::support::cluster::Releases) {
    let world = world(user);
    world.fakes(&["dpkg-query", "apt-get"]);
    world.set_packages(&[]);
    world.configure(|config| config.apt_forbidden = false);
    let releases = crate::support::cluster::Releases::default();
    for series in ["7.0", "8.0"] {
        releases.put(
            &format!("/mongodb/server-{series}.asc"),
            served.as_bytes().to_vec(),
        );
    }
    let base = releases.serve();
    let mut world = world;
    world.set_env(
        "STACKINSTALL_DOWNLOADS__MONGODB_KEY",
        &format!("{base}/mongodb/server-{{version}}.asc"),
    );
    world.set_env(
        "STACKINSTALL_MONGODB__SIGNING_KEYS",
        &format!(
            "{{ \"7.0\" = {{ fingerprint = \"{KEY_FINGERPRINT}\", source = \"the tests' key\" }} }}"
        ),
    );
    (world, releases)
}

const KEYRING: &str = "/usr/share/keyrings/mongodb-server-7.0.asc";

#[test]
fn the_signing_key_the_plan_names_is_the_one_checked_and_written_alone() {
    let user = unique("mk");
    let (world, releases) = key_world(&user, KEY);
    let planned = plan(&world).success();
    let text = String::from_utf8_lossy(&planned.get_output().stdout).into_owned();
    assert!(
        text.contains(&format!(
            "check its fingerprint is {KEY_FINGERPRINT} (from the tests' key)"
        )),
        "the plan names the pin of the series it resolved: {text}"
    );
    let (output, _) = run(&world, &[]);
    assert!(!output.contains("NOT PINNED"), "{output}");
    assert_eq!(releases.requests(), ["/mongodb/server-7.0.asc"]);
    let written = world.read(KEYRING);
    assert_eq!(
        stackinstall::pgp::fingerprint(&written).unwrap(),
        KEY_FINGERPRINT
    );
    assert_eq!(
        written,
        stackinstall::pgp::single_key(KEY).unwrap().armoured(),
        "apt's keyring is the checked key armoured again, nothing else"
    );
    assert!(
        world
            .lines_of("apt-get")
            .iter()
            .any(|l| l.contains("install")),
        "mongodb-org was installed from the repository"
    );
    drop_user(&user);
}

/// `served` is refused: the error says `says`, nothing reaches apt.
fn refused(served: &str, says: &str) {
    let user = unique("mk");
    let (world, _releases) = key_world(&user, served);
    let (output, result) = try_run(&world, &[]);
    assert_eq!(result, None, "the install stops: {output}");
    assert!(output.contains(says), "{output}");
    assert!(output.contains("it was not installed"), "{output}");
    assert!(!world.path(KEYRING).exists(), "no keyring for apt");
    assert!(
        !world
            .path("/etc/apt/sources.list.d/mongodb-org-7.0.list")
            .exists()
    );
    assert!(world.lines_of("apt-get").is_empty(), "apt-get never ran");
}

#[test]
fn a_signing_key_with_another_fingerprint_is_refused() {
    refused(
        OTHER_KEY,
        &format!(
            "has fingerprint 6EF3AC95B26EB356BAC5D63727118245C71BD54A, but the profile pins {KEY_FINGERPRINT}"
        ),
    );
}

#[test]
fn the_right_signing_key_with_a_second_key_appended_is_refused() {
    refused(
        &format!("{KEY}{OTHER_KEY}"),
        "holds 2 primary keys (fingerprints 28BB7FC053F6C2A0AF6AF521F010861042996F61, 6EF3AC95B26EB356BAC5D63727118245C71BD54A)",
    );
}
