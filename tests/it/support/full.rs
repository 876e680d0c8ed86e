//! The whole install in one world: the fake cluster of `cluster.rs`, the
//! fake `helm` and ECR timer's `systemctl`, moto for the registry token, and
//! the real MariaDB, RabbitMQ and SecantusDB that `tests/run-all.sh` starts,
//! under user and database names of the world's own. Every step runs.
//! Included with `#[path]` next to `common`, `cluster` and `servers`.
#![allow(dead_code, clippy::disallowed_methods)]

use std::path::Path;

use super::cluster;
use super::common::World;
use super::servers::setting;

/// The AWS key the world's environment holds (a test value moto accepts).
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI-full-world-secret-access-key";
pub const ACCESS_KEY_ID: &str = "AKIAFULLWORLDTEST";
/// The mongodb admin account's password file inside the root.
pub const ADMIN_PASSWORD_FILE: &str = "/etc/stackinstall/mongodb-admin-password";

const UBUNTU_2204: &str = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n";

/// `systemctl`: the ECR timer's units kept as files (`fakes/systemctl.sh`),
/// K3s active once its install script ran, every other unit (the database
/// servers the test command runs) active.
fn systemctl() -> String {
    format!(
        r#"unit="${{@: -1}}"
case "$unit" in
  stackinstall-*|daemon-reload)
{}
    ;;
  k3s) [ "$1" != is-active ] || [ -f "$STATE/k3s-running" ] ;;
  *) exit 0 ;;
esac"#,
        include_str!("../fakes/systemctl.sh")
    )
}

/// Every pod of the release Ready (what `wait` waits for), `sb-core-1`
/// only once its PVC is Bound (the fake cluster keeps it Pending before).
const PODS: &str = r#"{"items": [
  {"metadata": {"name": "sb-core-1"}, "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "sb-data"}}]},
   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
  {"metadata": {"name": "sb-ui-1"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
]}"#;

/// What the application chart creates besides its pods: a PVC on the
/// profile's StorageClass and a Job that succeeds (once istiod injects
/// native sidecars).
const CHART_OBJECTS: [(&str, &str); 2] = [
    (
        "sb-data.json",
        r#"{"kind": "PersistentVolumeClaim", "apiVersion": "v1", "metadata": {"name": "sb-data"},
            "spec": {"storageClassName": "nfs-client", "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}"#,
    ),
    (
        "sb-migrate.json",
        r#"{"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "sb-migrate",
            "annotations": {"fake.stackinstall/exit-code": "0", "fake.stackinstall/log": "schema up to date"}},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "sb-migrate"}]}}}}"#,
    ),
];

/// A world where a plain `install --domain demo.example.com --self-signed`
/// runs every step; `user` names the world's database users and databases.
pub fn full_world(user: &str) -> World {
    let (mut world, _releases) = cluster::cluster_world();
    world.write("/etc/os-release", UBUNTU_2204);
    // K3s's install script writes its kubeconfig and its uninstall script
    // (which removes `/etc/rancher/k3s`), as the real one does.
    let script = world.path("/usr/local/bin/k3s-uninstall.sh");
    world.fake(
        "k3s-install",
        &format!(
            r#"{provider}
touch "$STATE/k3s-running"
printf '#!/bin/sh\nrm -f "%s/k3s-running" {script}\nrm -rf {rancher}\n' "$STATE" > {script}
chmod +x {script}
{kubeconfig}"#,
            script = script.display(),
            rancher = world.path("/etc/rancher/k3s").display(),
            kubeconfig = cluster::k3s_writes_kubeconfig(&world),
            provider = cluster::k3s_records_provider(&world),
        ),
    );
    world.fake("iptables-save", "printf '*filter\\nCOMMIT\\n'");
    world.fake("ip", "printf '1: lo: <LOOPBACK> mtu 65536\\n'");
    world.fake("helm", include_str!("../fakes/helm.sh"));
    world.fake("systemctl", &systemctl());
    world.fake("dpkg-query", super::common::DPKG_ALL_INSTALLED);
    world.fake("apt-get", "echo 'apt-get must not run here' >&2; exit 1");
    world.fake_exportfs();
    // The test RabbitMQ runs with its management plugin on.
    world.write("/etc/rabbitmq/enabled_plugins", "[rabbitmq_management].\n");
    let state = world.record.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("pods.json"), PODS).unwrap();
    std::fs::create_dir_all(state.join("chart")).unwrap();
    for (name, object) in CHART_OBJECTS {
        std::fs::write(state.join("chart").join(name), object).unwrap();
    }

    world.mongodb_accounts(
        ADMIN_PASSWORD_FILE,
        &setting("STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD"),
    );

    world.unset_env("STACKINSTALL_ONLY");
    let databases = format!(r#"["{user}_app", "{user}_conf"]"#);
    for (key, value) in [
        ("CLUSTER__HOST_IP", "127.0.0.1".into()),
        ("MYSQL__SOCKET", setting("STACKINSTALL_TEST_MYSQL_SOCKET")),
        ("MYSQL__PORT", setting("STACKINSTALL_TEST_MYSQL_PORT")),
        ("MYSQL__HOST", "127.0.0.1".into()),
        ("MYSQL__USERNAME", user.into()),
        ("MYSQL__DATABASES", databases),
        ("RABBITMQ__PORT", setting("STACKINSTALL_TEST_RABBITMQ_PORT")),
        (
            "RABBITMQ__MANAGEMENT_PORT",
            setting("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT"),
        ),
        ("RABBITMQ__HOST", "127.0.0.1".into()),
        ("RABBITMQ__USERNAME", user.into()),
        ("MONGODB__PORT", setting("STACKINSTALL_TEST_MONGODB_PORT")),
        ("MONGODB__HOST", "127.0.0.1".into()),
        ("MONGODB__USERNAME", user.into()),
        (
            "MONGODB__ADMIN_USERNAME",
            setting("STACKINSTALL_TEST_MONGODB_ADMIN_USER"),
        ),
        ("MONGODB__ADMIN_PASSWORD_FILE", ADMIN_PASSWORD_FILE.into()),
        (
            "REGISTRY__ENDPOINT_URL",
            setting("STACKINSTALL_TEST_ECR_ENDPOINT"),
        ),
    ] {
        world.set_env(&format!("STACKINSTALL_{key}"), &value);
    }
    let no_file = |name: &str| world.dir.path().join(name).display().to_string();
    let (credentials, config) = (no_file("no-aws-credentials"), no_file("no-aws-config"));
    world.set_env("AWS_SHARED_CREDENTIALS_FILE", &credentials);
    world.set_env("AWS_CONFIG_FILE", &config);
    world.set_env("AWS_EC2_METADATA_DISABLED", "true");
    // Where the kubelet's credential provider finds the key (it never sees
    // the install's environment): root's shared credentials file.
    world.write(
        "/root/.aws/credentials",
        &format!(
            "[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"
        ),
    );
    // Private, as `aws configure` leaves it.
    for (path, mode) in [("/root/.aws", 0o700), ("/root/.aws/credentials", 0o600)] {
        let permissions = std::os::unix::fs::PermissionsExt::from_mode(mode);
        std::fs::set_permissions(world.path(path), permissions).unwrap();
    }
    world.set_env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
    world.set_env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
    if let Ok(node) = std::env::var("RABBITMQ_NODENAME") {
        world.set_env("RABBITMQ_NODENAME", &node);
    }
    world
}

/// `full_world` with a quick `rabbitmqctl` (`fakes/rabbitmqctl.py`) that
/// does the step's commands through the real server's management API
/// instead of starting an Erlang VM each time: for tests that install
/// many times over.
pub fn quick_full_world(user: &str) -> World {
    let world = full_world(user);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/rabbitmqctl.py");
    let port = setting("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT");
    world.fake(
        "rabbitmqctl",
        &format!(
            "printf '%s' \"$STDIN\" | {} {} {port} \"$@\"",
            cluster::python(),
            script.display()
        ),
    );
    world.fake("rabbitmq-plugins", "exit 0");
    world
}
