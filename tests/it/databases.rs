//! The host data steps (`mysql`, `rabbitmq`, `nfs`) against the real
//! MariaDB and RabbitMQ that `tests/run-all.sh` starts on 127.0.0.1, with
//! packages reported installed and `systemctl`/`exportfs` faked. Every test
//! uses its own user and database names, so tests can run side by side, and
//! checks the result with its own client connections.

use std::collections::BTreeMap;

use sqlx::mysql::MySqlConnection;

use crate::support::servers::{
    amqp_login, block_on, drop_mysql_user, mysql_login as tcp_login, mysql_root as root,
    rabbitmq_management as management, rabbitmqctl, sql, unique,
};
use crate::support::world::{CopyBack, Passthrough};
use crate::support::{DOMAIN, World, os, outcomes, plan_lines, servers, stderr};

/// A Debian world whose packages are all installed, whose units run (the
/// fake `systemctl` records what is asked of it), where `apt-get` must not
/// run, with the test MariaDB and RabbitMQ for `user`.
fn world(user: &str) -> World {
    let mut world = World::new();
    world.write("/etc/os-release", os::DEBIAN_12);
    world.host_fakes();
    servers::with_mysql(&mut world, user);
    servers::with_rabbitmq(&mut world, user);
    world
}

/// A run of `credentials` and `steps`: each step's result and the progress.
struct Run {
    outcomes: BTreeMap<String, String>,
    stderr: String,
}

impl Run {
    fn outcome(&self, step: &str) -> &str {
        (self.outcomes.get(step))
            .unwrap_or_else(|| panic!("no result for {step}:\n{}", self.stderr))
    }
}

fn run(world: &World, steps: &[&str], extra: &[&str]) -> Run {
    let mut args: Vec<&str> = vec!["--output", "json", "--only", "credentials"];
    for step in steps {
        args.extend(["--only", step]);
    }
    args.extend(extra);
    let assert = world.install(&args);
    let text = stderr(&assert);
    assert!(
        assert.get_output().status.success(),
        "install failed:\n{text}\n{}",
        crate::support::stdout(&assert)
    );
    Run {
        outcomes: outcomes(&assert),
        stderr: text,
    }
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

// ------------------------------------------------------------------ MySQL --

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
    assert_eq!(first.outcome("mysql"), "changed", "{}", first.stderr);
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
            .filter(|c| c.line() == "systemctl restart mariadb.service")
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
    assert_eq!(second.outcome("mysql"), "unchanged", "{}", second.stderr);
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
        drop_mysql_user(&mut root, &user).await;
    });
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

    let run = run(&world, &["mysql"], &[]);
    let output = &run.stderr;
    assert!(
        output.contains(&format!(
            "the password of `{user}`@`%` was not the credentials file's"
        )),
        "{output}"
    );
    assert_eq!(run.outcome("mysql"), "changed", "{output}");
    assert!(!output.contains(&password), "the password is never printed");
    block_on(async {
        tcp_login(&user, &password)
            .await
            .expect("the file's password works again");
        drop_mysql_user(&mut root().await, &user).await;
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
            DOMAIN,
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
    let actions = plan_lines(&plan, &["packages", "mysql"]);
    insta::with_settings!({ filters => vec![(user.as_str(), "[user]"), (r"MariaDB \S+ answers", "MariaDB [version] answers")] }, {
        insta::assert_snapshot!("mysql_plan", actions.join("\n"));
    });
    assert!(
        world.calls().iter().all(|c| c.program != "systemctl"
            || ["is-active", "is-enabled", "show"].contains(&c.args[0].as_str())),
        "a plan changes nothing"
    );
}

/// The plugin of `user`@'%' as the server records it.
fn plugin_of(user: &str) -> String {
    block_on(async {
        sqlx::query_scalar(
            "SELECT CAST(plugin AS CHAR) FROM mysql.user WHERE User = ? AND Host = '%'",
        )
        .bind(user)
        .fetch_one(&mut root().await)
        .await
        .unwrap()
    })
}

#[test]
fn mysql_user_gets_the_plugin_the_profile_asks_for_and_is_checked_by_logging_in() {
    let user = unique("mp");
    let mut world = world(&user);
    world.set_env("STACKINSTALL_MYSQL__AUTH_PLUGIN", "mysql_native_password");
    let first = run(&world, &["mysql"], &[]);
    assert_eq!(first.outcome("mysql"), "changed", "{}", first.stderr);
    assert_eq!(plugin_of(&user), "mysql_native_password");
    let password = password(&world, "mysql");
    block_on(async { tcp_login(&user, &password).await.expect("logs in over TCP") });
    let again = run(&world, &["mysql"], &["--redo", "mysql"]);
    assert_eq!(
        again.outcome("mysql"),
        "unchanged",
        "the login says the password is current: {}",
        again.stderr
    );
    block_on(async { drop_mysql_user(&mut root().await, &user).await });
}

/// The server's own reading of its option files: `my_print_defaults` (from
/// the MariaDB packages that run the tests' server) reads a copy of the
/// distribution's layout (`/etc/mysql/mariadb.cnf`: `!includedir
/// /etc/mysql/conf.d/` then `!includedir /etc/mysql/mariadb.conf.d/`, each
/// directory's `.cnf` files in sorted order) with the package's own
/// `50-server.cnf` (`bind-address = 127.0.0.1`) beside the step's
/// `stackbill.cnf`: the last `bind-address` is the step's, and so the one
/// the server uses. MySQL's `mysql.conf.d/mysqld.cnf` sorts before
/// `stackbill.cnf` too.
#[test]
fn mysql_settings_file_is_read_after_the_distributions_server_config() {
    let user = unique("mo");
    let world = world(&user);
    run(&world, &["mysql"], &[]);
    let layout = tempfile::tempdir().unwrap();
    let (conf, server) = (
        layout.path().join("conf.d"),
        layout.path().join("mariadb.conf.d"),
    );
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&server).unwrap();
    let package_file = "/etc/mysql/mariadb.conf.d/50-server.cnf";
    let package_text = std::fs::read_to_string(package_file)
        .unwrap_or_else(|error| panic!("the MariaDB package's {package_file}: {error}"));
    assert!(package_text.contains("bind-address            = 127.0.0.1"));
    std::fs::write(server.join("50-server.cnf"), package_text).unwrap();
    std::fs::write(
        server.join("stackbill.cnf"),
        world.read("/etc/mysql/mariadb.conf.d/stackbill.cnf"),
    )
    .unwrap();
    let main = layout.path().join("my.cnf");
    std::fs::write(
        &main,
        format!(
            "[client-server]\nsocket = /run/mysqld/mysqld.sock\n!includedir {}/\n!includedir {}/\n",
            conf.display(),
            server.display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new("my_print_defaults")
        .arg(format!("--defaults-file={}", main.display()))
        .arg("mysqld")
        .output()
        .expect("my_print_defaults, from the MariaDB packages the test server runs from");
    let text = String::from_utf8(output.stdout).unwrap();
    let binds: Vec<&str> = (text.lines())
        .filter(|line| line.starts_with("--bind-address="))
        .collect();
    assert_eq!(
        binds,
        ["--bind-address=127.0.0.1", "--bind-address=0.0.0.0"],
        "the package's first, the step's last (the one that wins): {text}"
    );
    let mut names = ["mysqld.cnf", "stackbill.cnf"];
    names.sort();
    assert_eq!(names[1], "stackbill.cnf", "MySQL's own file sorts first");
    block_on(async { drop_mysql_user(&mut root().await, &user).await });
}

// --------------------------------------------------------------- RabbitMQ --

/// Records the real `rabbitmqctl` and `rabbitmq-plugins`: the fakes pass
/// each call on to the real program; what `rabbitmq-plugins enable` writes
/// to the host's `enabled_plugins` is copied into the world's root.
fn record_real_rabbitmq(world: &World) {
    world.fakes(&["rabbitmqctl", "rabbitmq-plugins"]);
    let real = |program: &str| {
        let output = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .unwrap();
        std::path::PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    };
    world.configure(|config| {
        config.passthrough.insert(
            "rabbitmqctl".into(),
            Passthrough {
                program: real("rabbitmqctl"),
                copy: None,
            },
        );
        config.passthrough.insert(
            "rabbitmq-plugins".into(),
            Passthrough {
                program: real("rabbitmq-plugins"),
                copy: Some(CopyBack {
                    after: "enable".into(),
                    from: "/etc/rabbitmq/enabled_plugins".into(),
                    to: "/etc/rabbitmq/enabled_plugins".into(),
                }),
            },
        );
    });
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

#[test]
fn rabbitmq_user_logs_in_over_amqp_and_the_api_and_a_second_run_changes_nothing() {
    let user = unique("rb");
    let bystander = unique("rbby");
    let world = world(&user);
    record_real_rabbitmq(&world);
    // As on a host whose running RabbitMQ never had the plugin enabled.
    std::fs::remove_file(world.path("/etc/rabbitmq/enabled_plugins")).unwrap();
    rabbitmqctl(&["add_user", &bystander], "BystanderPass1");
    rabbitmqctl(&["add_vhost", &bystander], "");

    let first = run(&world, &["rabbitmq"], &[]);
    assert_eq!(first.outcome("rabbitmq"), "changed", "{}", first.stderr);
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
    assert_eq!(second.outcome("rabbitmq"), "unchanged", "{}", second.stderr);
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
        ["delete_user", user.as_str()],
        ["delete_user", bystander.as_str()],
        ["delete_vhost", bystander.as_str()],
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

    let output = run(&world, &["rabbitmq"], &[]).stderr;
    assert!(
        output.contains(&format!(
            "the password of RabbitMQ user `{user}` was not the credentials file's"
        )),
        "{output}"
    );
    amqp_login(&user, &password).expect("the file's password works again");
    rabbitmqctl(&["delete_user", &user], "");
}

#[test]
fn rabbitmq_an_import_whose_tags_and_permissions_land_late_is_waited_for() {
    let user = unique("rl");
    let world = world(&user);
    run(&world, &["rabbitmq"], &[]);
    // Someone took the user's tags: it still logs in over AMQP.
    rabbitmqctl(&["set_user_tags", &user], "");
    let password = password(&world, "rabbitmq");
    amqp_login(&user, &password).expect("the login alone says nothing of the tags");
    // The import is applied after the command returns: the user (without
    // its tags) now, its tags and permissions a second later.
    servers::quick_rabbitmqctl(&world);
    world.configure(|config| config.rabbitmq_import_lag_seconds = 1.0);
    world.clear_calls();
    let again = run(&world, &["rabbitmq"], &["--redo", "rabbitmq"]);
    assert_eq!(again.outcome("rabbitmq"), "changed", "{}", again.stderr);
    let imports = (world.lines_of("rabbitmqctl").iter())
        .filter(|line| line.contains("import_definitions"))
        .count();
    assert_eq!(imports, 1, "the tags were imported again");
    let me: serde_json::Value = management("whoami", &user, &password).json().unwrap();
    assert!(me["tags"].to_string().contains("administrator"), "{me}");
    let permissions: serde_json::Value =
        management(&format!("permissions/%2F/{user}"), &user, &password)
            .json()
            .unwrap();
    assert_eq!(permissions["configure"], ".*", "{permissions}");
    rabbitmqctl(&["delete_user", &user], "");
}

/// A cold mysql + rabbitmq provisioning against the real servers: each
/// `rabbitmqctl` or `rabbitmq-plugins` boots an Erlang VM (0.25 to 1.2 s),
/// so the step runs at most two of them, and a plain re-run none.
#[test]
fn rabbitmq_cold_provisioning_runs_at_most_two_erlang_programs_and_a_rerun_none() {
    let user = unique("rc");
    let world = world(&user);
    record_real_rabbitmq(&world);
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
    assert_eq!(
        again.outcome("rabbitmq"),
        "already-done",
        "{}",
        again.stderr
    );
    let rerun = erlang(&world);
    eprintln!(
        "re-run: {seconds:.2} s, {} programs spawned, {} of them Erlang",
        world.calls().len(),
        rerun.len()
    );
    rabbitmqctl(&["delete_user", &user], "");
    block_on(async { drop_mysql_user(&mut root().await, &user).await });
    assert!(cold.len() <= 2, "cold run: {cold:?}");
    assert!(rerun.is_empty(), "re-run: {rerun:?}");
}

// -------------------------------------------------------------------- NFS --

fn nfs_world() -> World {
    let mut world = World::new();
    world.set_env("STACKINSTALL_CLUSTER__HOST_IP", "10.1.2.3");
    world.host_fakes();
    world.fake("exportfs");
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
    // The host's address, and not the pod network `10.42.0.0/16` (issue 25).
    assert_eq!(export_clients(&world.read("/etc/exports")), ["10.1.2.3"]);
    assert_eq!(exportfs_ra(&world), 1);
    let metadata = std::fs::metadata(world.path("/data/stackbill")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (metadata.mode() & 0o7777, metadata.uid(), metadata.gid()),
        (0o777, 65534, 65534)
    );

    world.clear_calls();
    let second = run(&world, &["nfs"], &["--redo", "nfs"]);
    assert_eq!(second.outcome("nfs"), "unchanged", "{}", second.stderr);
    assert_eq!(exportfs_ra(&world), 0, "nothing changed: no re-export");

    world.write(
        "/etc/exports",
        &format!("{}/srv/other *(ro)\n", world.read("/etc/exports")),
    );
    // The pod network is no client (issue 25): changing it changes nothing.
    world.set_env("STACKINSTALL_CLUSTER__POD_CIDR", "10.50.0.0/16");
    world.set_env("STACKINSTALL_NFS__SQUASH", "all_squash");
    world.set_env("STACKINSTALL_NFS__ANONUID", "1000");
    world.set_env("STACKINSTALL_NFS__ANONGID", "1001");
    let third = run(&world, &["nfs"], &[]);
    assert_eq!(third.outcome("nfs"), "changed", "{}", third.stderr);
    insta::assert_snapshot!("exports_changed_squash", world.read("/etc/exports"));
    assert_eq!(
        exportfs_ra(&world),
        1,
        "the changed line is re-exported once"
    );
    assert_eq!(
        export_clients(&world.read("/etc/exports")),
        ["10.1.2.3"],
        "the clients are exactly the node addresses"
    );
}

/// The clients of the managed block's export line.
fn export_clients(exports: &str) -> Vec<String> {
    let line = exports
        .lines()
        .skip_while(|line| !line.starts_with("# BEGIN stackinstall"))
        .nth(1)
        .unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|client| client.split('(').next().unwrap().to_string())
        .collect()
}
