//! The contract with `tests/run-all.sh`: the test servers it starts and the
//! `STACKINSTALL_TEST_*` variables that say where they are, and what the
//! tests do on them (as root, or as the admin account) to set a scene or
//! check a result. A test that needs them fails loudly when they are not
//! there.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

use super::world::World;

/// A test server's setting; panics, naming the way out, without the servers.
pub fn setting(name: &str) -> String {
    if std::env::var("STACKINSTALL_TEST_SERVICES").as_deref() != Ok("1") {
        panic!(
            "these tests need the test servers: run tests/run-all.sh (STACKINSTALL_TEST_SERVICES is not set)"
        );
    }
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/run-all.sh"))
}

fn port(name: &str) -> u16 {
    setting(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a port"))
}

/// A name (user, database) no other test or test run uses. MariaDB's and
/// RabbitMQ's data outlive a run on a machine that keeps them, so the name
/// holds the process, a salt of its start (a pid comes back) and a count,
/// apart (`si{pid}{count}` read `si12345` for pid 1234, count 5 and pid
/// 123, count 45, and a later run found an earlier run's user there).
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    static SALT: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.subsec_nanos() & 0xffff
    });
    format!(
        "si{}_{salt:04x}_{}_{label}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs a future to its end on a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

// ------------------------------------------------------------ the worlds --

/// The world's `mysql` step uses the test MariaDB, as `user` with the
/// databases `USER_app` and `USER_conf`.
pub fn with_mysql(world: &mut World, user: &str) {
    for (key, value) in [
        ("MYSQL__SOCKET", setting("STACKINSTALL_TEST_MYSQL_SOCKET")),
        ("MYSQL__PORT", setting("STACKINSTALL_TEST_MYSQL_PORT")),
        ("MYSQL__HOST", "127.0.0.1".into()),
        ("MYSQL__USERNAME", user.into()),
        (
            "MYSQL__DATABASES",
            format!(r#"["{user}_app", "{user}_conf"]"#),
        ),
    ] {
        world.set_env(&format!("STACKINSTALL_{key}"), &value);
    }
}

/// The world's `rabbitmq` step uses the test RabbitMQ (whose management
/// plugin is on), as `user`.
pub fn with_rabbitmq(world: &mut World, user: &str) {
    for (key, value) in [
        ("RABBITMQ__PORT", setting("STACKINSTALL_TEST_RABBITMQ_PORT")),
        (
            "RABBITMQ__MANAGEMENT_PORT",
            setting("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT"),
        ),
        ("RABBITMQ__HOST", "127.0.0.1".into()),
        ("RABBITMQ__USERNAME", user.into()),
    ] {
        world.set_env(&format!("STACKINSTALL_{key}"), &value);
    }
    if let Ok(node) = std::env::var("RABBITMQ_NODENAME") {
        world.set_env("RABBITMQ_NODENAME", &node);
    }
    world.write("/etc/rabbitmq/enabled_plugins", "[rabbitmq_management].\n");
}

/// The world's `rabbitmqctl` does the step's commands through the test
/// RabbitMQ's management API instead of starting an Erlang VM each time,
/// and its `rabbitmq-plugins` keeps the world's plugin list.
pub fn quick_rabbitmqctl(world: &World) {
    world.fakes(&["rabbitmqctl", "rabbitmq-plugins"]);
    let port = port("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT");
    world.configure(|config| config.rabbitmq_management_port = Some(port));
}

/// Where the tests keep the MongoDB admin account's password, in the root.
pub const ADMIN_PASSWORD_FILE: &str = "/etc/stackinstall/mongodb-admin-password";

/// The world's `mongodb` step uses the test SecantusDB as `user`, managing
/// users through the test's admin account (SecantusDB has no localhost
/// exception), with a `mongodb` system user that is the test's own.
pub fn with_mongodb(world: &mut World, user: &str) {
    world.mongodb_accounts(
        ADMIN_PASSWORD_FILE,
        &setting("STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD"),
    );
    for (key, value) in [
        ("PORT", setting("STACKINSTALL_TEST_MONGODB_PORT")),
        ("HOST", "127.0.0.1".into()),
        ("USERNAME", user.into()),
        (
            "ADMIN_USERNAME",
            setting("STACKINSTALL_TEST_MONGODB_ADMIN_USER"),
        ),
        ("ADMIN_PASSWORD_FILE", ADMIN_PASSWORD_FILE.into()),
        // The world's own application database (the server is shared).
        ("DATABASES", format!(r#"["{user}_data"]"#)),
    ] {
        world.set_env(&format!("STACKINSTALL_MONGODB__{key}"), &value);
    }
}

// ------------------------------------------------------------------ MySQL --

/// A connection as MariaDB's root (unix socket authentication).
pub async fn mysql_root() -> MySqlConnection {
    let options = MySqlConnectOptions::new()
        .socket(setting("STACKINSTALL_TEST_MYSQL_SOCKET"))
        .username("root")
        .disable_statement_logging();
    MySqlConnection::connect_with(&options)
        .await
        .expect("root logs in over the socket")
}

/// Runs `statement` as root.
pub async fn sql(connection: &mut MySqlConnection, statement: &str) {
    sqlx::raw_sql(statement)
        .execute(connection)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Runs `statements` as root; then every database and user (`user:NAME`).
pub fn mysql_as_root(statements: &[String]) -> Vec<String> {
    block_on(async {
        let mut connection = mysql_root().await;
        for statement in statements {
            sql(&mut connection, statement).await;
        }
        let mut names: Vec<String> =
            sqlx::query_scalar("SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA")
                .fetch_all(&mut connection)
                .await
                .unwrap();
        let users: Vec<String> =
            sqlx::query_scalar("SELECT CAST(CONCAT('user:', User) AS CHAR) FROM mysql.user")
                .fetch_all(&mut connection)
                .await
                .unwrap();
        names.extend(users);
        names
    })
}

/// A TCP login to the test MariaDB as `user`.
pub async fn mysql_login(user: &str, password: &str) -> Result<MySqlConnection, sqlx::Error> {
    let options = MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port("STACKINSTALL_TEST_MYSQL_PORT"))
        .username(user)
        .password(password)
        .disable_statement_logging();
    MySqlConnection::connect_with(&options).await
}

/// Drops `user` and its two databases (see `with_mysql`).
pub async fn drop_mysql_user(root: &mut MySqlConnection, user: &str) {
    sql(root, &format!("DROP USER IF EXISTS '{user}'@'%'")).await;
    sql(root, &format!("DROP DATABASE IF EXISTS `{user}_app`")).await;
    sql(root, &format!("DROP DATABASE IF EXISTS `{user}_conf`")).await;
}

// --------------------------------------------------------------- RabbitMQ --

/// Runs `rabbitmqctl ARGS` with `stdin` (a password) against the test
/// RabbitMQ, through its management API (the fakes' quick `rabbitmqctl`,
/// in-process: no Erlang VM per call); its output, panicking on failure.
pub fn rabbitmqctl(args: &[&str], stdin: &str) -> String {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let (code, stdout, stderr) = stackinstall_fakes::programs::rabbitmq::rabbitmqctl(
        port("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT"),
        &args,
        stdin,
    );
    assert_eq!(code, 0, "rabbitmqctl {args:?}: {stderr}");
    stdout
}

fn names(listed: &str, key: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(listed).unwrap();
    (value.as_array().into_iter().flatten())
        .filter_map(|entry| entry[key].as_str().map(String::from))
        .collect()
}

/// The users of the test RabbitMQ.
pub fn rabbitmq_users() -> Vec<String> {
    names(&rabbitmqctl(&["list_users"], ""), "user")
}

/// The vhosts of the test RabbitMQ.
pub fn rabbitmq_vhosts() -> Vec<String> {
    names(&rabbitmqctl(&["list_vhosts"], ""), "name")
}

/// A GET of the management API as `user`.
pub fn rabbitmq_management(path: &str, user: &str, password: &str) -> reqwest::blocking::Response {
    let port = setting("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT");
    reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/{path}"))
        .basic_auth(user, Some(password))
        .send()
        .unwrap()
}

/// An AMQP login to the test RabbitMQ.
pub fn amqp_login(user: &str, password: &str) -> Result<(), lapin::Error> {
    let port = setting("STACKINSTALL_TEST_RABBITMQ_PORT");
    let uri = format!("amqp://{user}:{password}@127.0.0.1:{port}/%2f");
    block_on(async {
        let connection =
            lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await?;
        connection.close(200, "test").await
    })
}

// ---------------------------------------------------------------- MongoDB --

/// A client of the test SecantusDB, logged in as `login` (user, password)
/// with SCRAM-SHA-256 when given.
pub fn mongodb_client(login: Option<(&str, &str)>) -> mongodb::Client {
    use mongodb::options::{AuthMechanism, ClientOptions, Credential, ServerAddress};
    let credential = login.map(|(user, password)| {
        Credential::builder()
            .username(user.to_string())
            .password(password.to_string())
            .source("admin".to_string())
            .mechanism(AuthMechanism::ScramSha256)
            .build()
    });
    let options = ClientOptions::builder()
        .hosts(vec![ServerAddress::Tcp {
            host: "127.0.0.1".into(),
            port: Some(port("STACKINSTALL_TEST_MONGODB_PORT")),
        }])
        .direct_connection(true)
        .server_selection_timeout(std::time::Duration::from_secs(5))
        .credential(credential)
        .build();
    mongodb::Client::with_options(options).unwrap()
}

/// Runs `command` on `admin` as the test's admin account.
pub fn mongodb_admin(
    command: mongodb::bson::Document,
) -> Result<mongodb::bson::Document, mongodb::error::Error> {
    let user = setting("STACKINSTALL_TEST_MONGODB_ADMIN_USER");
    let password = setting("STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD");
    block_on(async {
        let client = mongodb_client(Some((&user, &password)));
        client.database("admin").run_command(command).await
    })
}

/// Whether the MongoDB user `user` exists.
pub fn mongodb_user_exists(user: &str) -> bool {
    let reply = mongodb_admin(mongodb::bson::doc! { "usersInfo": { "user": user, "db": "admin" } })
        .unwrap();
    !reply.get_array("users").unwrap().is_empty()
}

// -------------------------------------------------------------------- ECR --

/// The authorization token moto's ECR hands out (base64 of
/// `AWS:password`), asked for directly.
pub fn moto_token() -> String {
    let endpoint = setting("STACKINSTALL_TEST_ECR_ENDPOINT");
    let answer: serde_json::Value = reqwest::blocking::Client::new()
        .post(&endpoint)
        .header("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIATEST/20240101/ap-south-1/ecr/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body("{}")
        .send()
        .and_then(|response| response.json())
        .expect("moto answers GetAuthorizationToken");
    answer["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap()
        .to_string()
}
