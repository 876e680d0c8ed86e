//! The host data steps (`mysql`, `rabbitmq`, `nfs`) against the real
//! MariaDB and RabbitMQ that `tests/run-all.sh` starts on 127.0.0.1, with
//! packages reported installed and `systemctl`/`exportfs` faked. Every test
//! uses its own user and database names, so tests can run side by side, and
//! checks the result with its own client connections.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "support/servers.rs"]
mod servers;

use common::{World, stderr};
use servers::{block_on, setting, unique};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

const DEBIAN_12: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

/// A Debian world whose packages are all installed, with a recording
/// `systemctl` that says every unit runs and an `apt-get` that must not run.
fn world(user: &str) -> World {
    let mut world = World::new();
    world.write("/etc/os-release", DEBIAN_12);
    world.fake("dpkg-query", common::DPKG_ALL_INSTALLED);
    world.fake(
        "apt-get",
        "echo 'apt-get must not run: the packages are installed' >&2; exit 1",
    );
    world.fake("systemctl", "exit 0");
    world.set_env(
        "STACKINSTALL_MYSQL__SOCKET",
        &setting("STACKINSTALL_TEST_MYSQL_SOCKET"),
    );
    world.set_env(
        "STACKINSTALL_MYSQL__PORT",
        &setting("STACKINSTALL_TEST_MYSQL_PORT"),
    );
    world.set_env("STACKINSTALL_MYSQL__HOST", "127.0.0.1");
    world.set_env("STACKINSTALL_MYSQL__USERNAME", user);
    world.set_env(
        "STACKINSTALL_MYSQL__DATABASES",
        &format!(r#"["{user}_app", "{user}_conf"]"#),
    );
    world.set_env(
        "STACKINSTALL_RABBITMQ__PORT",
        &setting("STACKINSTALL_TEST_RABBITMQ_PORT"),
    );
    world.set_env(
        "STACKINSTALL_RABBITMQ__MANAGEMENT_PORT",
        &setting("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT"),
    );
    world.set_env("STACKINSTALL_RABBITMQ__HOST", "127.0.0.1");
    world.set_env("STACKINSTALL_RABBITMQ__USERNAME", user);
    if let Ok(node) = std::env::var("RABBITMQ_NODENAME") {
        world.set_env("RABBITMQ_NODENAME", &node);
    }
    // The test RabbitMQ runs with its management plugin on.
    world.write("/etc/rabbitmq/enabled_plugins", "[rabbitmq_management].\n");
    world
}

fn run(world: &World, steps: &[&str], extra: &[&str]) -> String {
    let mut args: Vec<&str> = vec!["--only", "credentials"];
    for step in steps {
        args.extend(["--only", step]);
    }
    args.extend(extra);
    let assert = world.install(&args);
    let text = stderr(&assert);
    assert!(
        assert.get_output().status.success(),
        "install failed:\n{text}"
    );
    text
}

/// The password the credentials file holds for `service`.
fn password(world: &World, service: &str) -> String {
    let credentials: toml::Table =
        toml::from_str(&world.read("/etc/stackinstall/credentials.toml")).unwrap();
    credentials[service]["password"]
        .as_str()
        .unwrap()
        .to_string()
}

fn outcome(output: &str, step: &str) -> String {
    output
        .lines()
        .rev()
        .filter_map(common::finished_step)
        .find(|(id, _)| id == step)
        .map(|(_, result)| result.to_string())
        .unwrap_or_else(|| panic!("no finished line for {step}:\n{output}"))
}

// ------------------------------------------------------------------ MySQL --

async fn root() -> MySqlConnection {
    let options = MySqlConnectOptions::new()
        .socket(setting("STACKINSTALL_TEST_MYSQL_SOCKET"))
        .username("root");
    MySqlConnection::connect_with(&options.disable_statement_logging())
        .await
        .expect("root logs in over the socket")
}

async fn tcp_login(user: &str, password: &str) -> Result<MySqlConnection, sqlx::Error> {
    let port: u16 = setting("STACKINSTALL_TEST_MYSQL_PORT").parse().unwrap();
    let options = MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(user)
        .password(password);
    MySqlConnection::connect_with(&options).await
}

async fn sql(connection: &mut MySqlConnection, statement: &str) {
    sqlx::raw_sql(statement)
        .execute(connection)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn password_hash(connection: &mut MySqlConnection, user: &str) -> String {
    sqlx::query_scalar(
        "SELECT CAST(authentication_string AS CHAR) FROM mysql.user WHERE User = ? AND Host = '%'",
    )
    .bind(user)
    .fetch_one(connection)
    .await
    .unwrap()
}

#[test]
fn mysql_creates_databases_and_user_and_a_second_run_changes_nothing() {
    let user = unique("my");
    let bystander = unique("by");
    let world = world(&user);
    block_on(async {
        let mut root = root().await;
        sql(&mut root, &format!("CREATE DATABASE `{bystander}`")).await;
        sql(
            &mut root,
            &format!("CREATE USER '{bystander}'@'%' IDENTIFIED BY 'BystanderPass1'"),
        )
        .await;
    });
    let bystander_hash = block_on(async { password_hash(&mut root().await, &bystander).await });

    let first = run(&world, &["mysql"], &[]);
    assert_eq!(outcome(&first, "mysql"), "changed", "{first}");
    let password = password(&world, "mysql");
    block_on(async {
        let mut login = tcp_login(&user, &password)
            .await
            .expect("the user logs in over TCP with the file's password");
        let databases: Vec<String> =
            sqlx::query_scalar("SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA")
                .fetch_all(&mut login)
                .await
                .unwrap();
        assert!(
            databases.contains(&format!("{user}_app"))
                && databases.contains(&format!("{user}_conf")),
            "{databases:?}"
        );
        let grants: Vec<String> = sqlx::query_scalar("SHOW GRANTS")
            .fetch_all(&mut login)
            .await
            .unwrap();
        let all = grants
            .iter()
            .any(|g| g.contains("GRANT ALL PRIVILEGES ON *.*") && g.contains("WITH GRANT OPTION"));
        assert!(all, "{grants:?}");
        let plugin: String = sqlx::query_scalar(
            "SELECT CAST(plugin AS CHAR) FROM mysql.user WHERE User = ? AND Host = '%'",
        )
        .bind(&user)
        .fetch_one(&mut root().await)
        .await
        .unwrap();
        assert_eq!(plugin, "mysql_native_password");
    });
    let restarts = |world: &World| {
        world
            .calls()
            .iter()
            .filter(|c| c.line() == "systemctl restart mariadb")
            .count()
    };
    assert_eq!(
        restarts(&world),
        1,
        "the new settings file restarts the server once"
    );
    let cnf = world.read("/etc/mysql/mariadb.conf.d/stackbill.cnf");
    insta::assert_snapshot!("mariadb_cnf", cnf);

    world.clear_calls();
    let second = run(&world, &["mysql"], &["--redo", "mysql"]);
    assert_eq!(outcome(&second, "mysql"), "unchanged", "{second}");
    assert_eq!(
        restarts(&world),
        0,
        "an unchanged settings file restarts nothing"
    );
    assert_eq!(world.read("/etc/mysql/mariadb.conf.d/stackbill.cnf"), cnf);

    block_on(async {
        let mut root = root().await;
        assert_eq!(
            password_hash(&mut root, &bystander).await,
            bystander_hash,
            "the bystander user is untouched"
        );
        let exists: Option<String> = sqlx::query_scalar("SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(&bystander).fetch_optional(&mut root).await.unwrap();
        assert!(exists.is_some(), "the bystander database is untouched");
        sql(&mut root, &format!("DROP USER '{bystander}'@'%'")).await;
        sql(&mut root, &format!("DROP DATABASE `{bystander}`")).await;
        drop_user(&mut root, &user).await;
    });
}

async fn drop_user(root: &mut MySqlConnection, user: &str) {
    sql(root, &format!("DROP USER IF EXISTS '{user}'@'%'")).await;
    sql(root, &format!("DROP DATABASE IF EXISTS `{user}_app`")).await;
    sql(root, &format!("DROP DATABASE IF EXISTS `{user}_conf`")).await;
}

#[test]
fn mysql_password_changed_behind_our_back_is_set_back() {
    let user = unique("dr");
    let world = world(&user);
    run(&world, &["mysql"], &[]);
    block_on(async {
        sql(
            &mut root().await,
            &format!("ALTER USER '{user}'@'%' IDENTIFIED BY 'ChangedByHand99'"),
        )
        .await
    });
    let password = password(&world, "mysql");
    assert!(
        block_on(tcp_login(&user, &password)).is_err(),
        "the drift is real"
    );

    let output = run(&world, &["mysql"], &[]);
    assert!(
        output.contains(&format!(
            "the password of `{user}`@`%` was not the credentials file's"
        )),
        "{output}"
    );
    assert_eq!(outcome(&output, "mysql"), "changed", "{output}");
    assert!(!output.contains(&password), "the password is never printed");
    block_on(async {
        tcp_login(&user, &password)
            .await
            .expect("the file's password works again");
        drop_user(&mut root().await, &user).await;
    });
}

#[test]
fn mysql_plan_shows_the_statements_with_the_password_masked() {
    let user = unique("pl");
    let world = world(&user);
    let assert = world
        .command()
        .args([
            "install",
            "--domain",
            common::DOMAIN,
            "--self-signed",
            "--plan",
            "--output",
            "json",
            "--only",
            "mysql",
        ])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    // The `packages` step installs the server (one apt transaction), then
    // `mysql` configures it.
    let actions = common::plan_lines(&plan, &["packages", "mysql"]);
    insta::with_settings!({ filters => vec![(user.as_str(), "[user]"), (r"MariaDB \S+ answers", "MariaDB [version] answers")] }, {
        insta::assert_snapshot!("mysql_plan", actions.join("\n"));
    });
    assert!(
        world
            .calls()
            .iter()
            .all(|c| c.program != "systemctl" || c.args[0] == "is-active"),
        "a plan changes nothing"
    );
}

// --------------------------------------------------------------- RabbitMQ --

/// Wraps the real `rabbitmqctl` in a recording fake, stdin passed on.
fn record_rabbitmqctl(world: &World) {
    let real = which("rabbitmqctl");
    world.fake(
        "rabbitmqctl",
        &format!("printf %s \"$STDIN\" | {real} \"$@\""),
    );
}

fn which(program: &str) -> String {
    let output = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn management(path: &str, user: &str, password: &str) -> reqwest::blocking::Response {
    let port = setting("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT");
    reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/{path}"))
        .basic_auth(user, Some(password))
        .send()
        .unwrap()
}

fn amqp_login(user: &str, password: &str) -> Result<(), lapin::Error> {
    let port = setting("STACKINSTALL_TEST_RABBITMQ_PORT");
    let uri = format!("amqp://{user}:{password}@127.0.0.1:{port}/%2f");
    block_on(async {
        let connection =
            lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await?;
        connection.close(200, "test").await
    })
}

/// Whether `stored` is RabbitMQ's SHA-256 hash of `password`: base64 of a
/// 4-byte salt and SHA-256(salt + password).
fn sha256_hash_matches(stored: &str, password: &str) -> bool {
    use base64::Engine;
    use sha2::Digest;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .unwrap();
    let (salt, digest) = bytes.split_at(4);
    sha2::Sha256::new()
        .chain_update(salt)
        .chain_update(password)
        .finalize()
        .as_slice()
        == digest
}

fn rabbitmqctl(args: &[&str], stdin: &str) {
    let mut child = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "rabbitmqctl {args:?}");
}

#[test]
fn rabbitmq_user_logs_in_over_amqp_and_the_api_and_a_second_run_changes_nothing() {
    let user = unique("rb");
    let bystander = unique("rbby");
    let world = world(&user);
    record_rabbitmqctl(&world);
    record_rabbitmq_plugins(&world);
    // As on a host whose running RabbitMQ never had the plugin enabled.
    std::fs::remove_file(world.path("/etc/rabbitmq/enabled_plugins")).unwrap();
    rabbitmqctl(&["add_user", &bystander], "BystanderPass1");
    rabbitmqctl(&["add_vhost", &bystander], "");

    let first = run(&world, &["rabbitmq"], &[]);
    assert_eq!(outcome(&first, "rabbitmq"), "changed", "{first}");
    let password = password(&world, "rabbitmq");
    amqp_login(&user, &password).expect("AMQP login with the file's password");
    let me: serde_json::Value = management("whoami", &user, &password).json().unwrap();
    assert_eq!(me["name"], user.as_str());
    assert!(me["tags"].to_string().contains("administrator"), "{me}");
    let permissions: serde_json::Value =
        management(&format!("permissions/%2F/{user}"), &user, &password)
            .json()
            .unwrap();
    assert_eq!(
        (
            &permissions["configure"],
            &permissions["write"],
            &permissions["read"]
        ),
        (&".*".into(), &".*".into(), &".*".into())
    );
    let calls = world.calls();
    let lines: Vec<String> = calls.iter().map(|c| c.line()).collect();
    assert!(
        lines.contains(&"rabbitmq-plugins enable rabbitmq_management".to_string()),
        "{lines:?}"
    );
    let import = calls
        .iter()
        .find(|c| c.line() == "rabbitmqctl import_definitions --format json")
        .expect("import_definitions ran");
    let definitions: serde_json::Value = serde_json::from_str(&import.stdin).unwrap();
    let entry = &definitions["users"][0];
    assert_eq!(
        (&entry["name"], &entry["hashing_algorithm"], &entry["tags"]),
        (
            &user.as_str().into(),
            &"rabbit_password_hashing_sha256".into(),
            &"administrator".into()
        )
    );
    assert!(
        sha256_hash_matches(entry["password_hash"].as_str().unwrap(), &password),
        "{entry}"
    );
    assert!(
        calls
            .iter()
            .all(|c| !c.args.iter().any(|a| a.contains(&password)) && !c.stdin.contains(&password)),
        "the password is never in argv, nor in clear on stdin"
    );
    eprintln!("cold rabbitmq step with the plugin off: {lines:?}");

    world.clear_calls();
    let second = run(&world, &["rabbitmq"], &["--redo", "rabbitmq"]);
    assert_eq!(outcome(&second, "rabbitmq"), "unchanged", "{second}");
    let changing = ["import_definitions", "enable"];
    assert!(
        world
            .calls()
            .iter()
            .all(|c| !changing.contains(&c.args.first().map_or("", String::as_str))),
        "{:?}",
        world.calls()
    );

    amqp_login(&bystander, "BystanderPass1")
        .expect_err("the bystander has no permissions on / (untouched)");
    let by: serde_json::Value = management(&format!("users/{bystander}"), &user, &password)
        .json()
        .unwrap();
    assert_eq!(
        by["name"],
        bystander.as_str(),
        "the bystander user is still there"
    );
    assert_eq!(
        management(&format!("vhosts/{bystander}"), &user, &password).status(),
        200,
        "the bystander vhost is still there"
    );
    for args in [
        vec!["delete_user", user.as_str()],
        vec!["delete_user", bystander.as_str()],
        vec!["delete_vhost", bystander.as_str()],
    ] {
        rabbitmqctl(&args, "");
    }
}

#[test]
fn rabbitmq_password_changed_behind_our_back_is_set_back() {
    let user = unique("rd");
    let world = world(&user);
    run(&world, &["rabbitmq"], &[]);
    rabbitmqctl(&["change_password", &user], "ChangedByHand99");
    let password = password(&world, "rabbitmq");
    assert!(amqp_login(&user, &password).is_err(), "the drift is real");

    let output = run(&world, &["rabbitmq"], &[]);
    assert!(
        output.contains(&format!(
            "the password of RabbitMQ user `{user}` was not the credentials file's"
        )),
        "{output}"
    );
    amqp_login(&user, &password).expect("the file's password works again");
    rabbitmqctl(&["delete_user", &user], "");
}

/// Wraps the real `rabbitmq-plugins` in a recording fake; what `enable`
/// writes to the host's `enabled_plugins` is copied into the world's root.
fn record_rabbitmq_plugins(world: &World) {
    let real = which("rabbitmq-plugins");
    let file = world.path("/etc/rabbitmq/enabled_plugins");
    world.fake(
        "rabbitmq-plugins",
        &format!(
            "{real} \"$@\" || exit $?\n[ \"$1\" != enable ] || {{ mkdir -p {dir}; cp /etc/rabbitmq/enabled_plugins {file}; }}",
            dir = file.parent().unwrap().display(),
            file = file.display()
        ),
    );
}

/// A cold mysql + rabbitmq provisioning against the real servers: each
/// `rabbitmqctl` or `rabbitmq-plugins` boots an Erlang VM (0.25 to 1.2 s),
/// so the step runs at most two of them, and a plain re-run none.
#[test]
fn rabbitmq_cold_provisioning_runs_at_most_two_erlang_programs_and_a_rerun_none() {
    let user = unique("rc");
    let world = world(&user);
    record_rabbitmqctl(&world);
    record_rabbitmq_plugins(&world);
    let erlang = |world: &World| {
        world
            .calls()
            .iter()
            .filter(|c| c.program.starts_with("rabbitmq"))
            .map(|c| c.line())
            .collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    run(&world, &["mysql", "rabbitmq"], &[]);
    let seconds = started.elapsed().as_secs_f64();
    let cold = erlang(&world);
    eprintln!(
        "cold mysql + rabbitmq: {seconds:.2} s, {} programs spawned, {} of them Erlang: {cold:?}",
        world.calls().len(),
        cold.len()
    );
    amqp_login(&user, &password(&world, "rabbitmq")).expect("the file's password logs in");

    world.clear_calls();
    let started = std::time::Instant::now();
    let again = run(&world, &["mysql", "rabbitmq"], &[]);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(outcome(&again, "rabbitmq"), "already-done", "{again}");
    let rerun = erlang(&world);
    eprintln!(
        "re-run: {seconds:.2} s, {} programs spawned, {} of them Erlang",
        world.calls().len(),
        rerun.len()
    );
    rabbitmqctl(&["delete_user", &user], "");
    block_on(async { drop_user(&mut root().await, &user).await });
    assert!(cold.len() <= 2, "cold run: {cold:?}");
    assert!(rerun.is_empty(), "re-run: {rerun:?}");
}

// -------------------------------------------------------------------- NFS --

fn nfs_world() -> World {
    let mut world = World::new();
    world.set_env("STACKINSTALL_CLUSTER__HOST_IP", "10.1.2.3");
    world.fake("dpkg-query", common::DPKG_ALL_INSTALLED);
    world.fake("systemctl", "exit 0");
    world.fake_exportfs();
    world.write(
        "/etc/exports",
        "# /etc/exports: the access control list\n/srv/backup 192.168.1.0/24(ro,sync)\n",
    );
    world
}

#[test]
fn nfs_exports_the_directory_keeping_foreign_lines_and_reexports_only_on_change() {
    let mut world = nfs_world();
    let exportfs_ra = |world: &World| {
        world
            .calls()
            .iter()
            .filter(|c| c.line() == "exportfs -ra")
            .count()
    };
    run(&world, &["nfs"], &[]);
    insta::assert_snapshot!("exports_first", world.read("/etc/exports"));
    assert_eq!(exportfs_ra(&world), 1);
    let metadata = std::fs::metadata(world.path("/data/stackbill")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (metadata.mode() & 0o7777, metadata.uid(), metadata.gid()),
        (0o777, 65534, 65534)
    );

    world.clear_calls();
    let second = run(&world, &["nfs"], &["--redo", "nfs"]);
    assert_eq!(outcome(&second, "nfs"), "unchanged", "{second}");
    assert_eq!(exportfs_ra(&world), 0, "nothing changed: no re-export");

    world.write(
        "/etc/exports",
        &format!("{}/srv/other *(ro)\n", world.read("/etc/exports")),
    );
    world.set_env("STACKINSTALL_CLUSTER__POD_CIDR", "10.50.0.0/16");
    let third = run(&world, &["nfs"], &[]);
    assert_eq!(outcome(&third, "nfs"), "changed", "{third}");
    insta::assert_snapshot!("exports_changed_cidr", world.read("/etc/exports"));
    assert_eq!(
        exportfs_ra(&world),
        1,
        "the changed line is re-exported once"
    );
}
