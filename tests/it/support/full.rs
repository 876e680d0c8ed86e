//! The whole install in one world: the fake cluster of `cluster.rs`, moto
//! for the registry token, and the real MariaDB, RabbitMQ and SecantusDB
//! that `tests/run-all.sh` starts, under user and database names of the
//! world's own. Every step runs.

use super::cluster;
use super::servers::{self, setting};
use super::world::{World, os};

/// The AWS key the world's environment holds (a test value moto accepts).
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI-full-world-secret-access-key";
pub const ACCESS_KEY_ID: &str = "AKIAFULLWORLDTEST";

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
/// Its `rabbitmqctl` is the real one.
pub fn full_world(user: &str) -> World {
    full_world_and_releases(user).0
}

/// `full_world` with its release server, to publish other versions on.
pub fn full_world_and_releases(user: &str) -> (World, cluster::Releases) {
    let (mut world, releases) = cluster::cluster_world();
    world.write("/etc/os-release", os::UBUNTU_2204);
    world.fakes(&["iptables-save", "ip", "dpkg-query", "apt-get", "exportfs"]);
    world.configure(|config| {
        config.all_packages_installed = true;
        config.apt_forbidden = true;
        config.package_dependencies.insert(
            "mariadb-server".into(),
            vec![
                "mariadb-server-10.11".into(),
                "mariadb-server-core-10.11".into(),
            ],
        );
    });
    world.set_pods(&serde_json::from_str(PODS).unwrap());
    std::fs::create_dir_all(world.state("chart")).unwrap();
    for (name, object) in CHART_OBJECTS {
        std::fs::write(world.state("chart").join(name), object).unwrap();
    }

    world.unset_env("STACKINSTALL_ONLY");
    world.set_env("STACKINSTALL_CLUSTER__HOST_IP", "127.0.0.1");
    servers::with_mysql(&mut world, user);
    servers::with_rabbitmq(&mut world, user);
    servers::with_mongodb(&mut world, user);
    world.set_env(
        "STACKINSTALL_REGISTRY__ENDPOINT_URL",
        &setting("STACKINSTALL_TEST_ECR_ENDPOINT"),
    );
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
    (world, releases)
}

/// `full_world` with the quick `rabbitmqctl` (the management API, no
/// Erlang VM per call): for tests that install many times over.
pub fn quick_full_world(user: &str) -> World {
    let world = full_world(user);
    servers::quick_rabbitmqctl(&world);
    world
}
