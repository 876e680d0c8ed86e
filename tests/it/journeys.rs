//! The operator's journey off the happy path (issue 24): one table of
//! scenarios, each the command as an operator types it, the exit code it
//! must end with, what it may change on disk, and what it prints, as an
//! insta snapshot (the JSON where the command has one, the words where
//! they are the point), filtered for paths and times. Each scenario runs
//! the debug binary in a world of its own; the table prints `journeys: N
//! scenarios, N as expected` and fails naming every scenario that was not.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stackinstall::steps::StepId;

use crate::support::{World, cluster, json, output::report};

/// What a scenario's command may change under the root (the run logs
/// left out).
#[derive(Debug, Clone, Copy)]
enum Disk {
    /// Nothing at all.
    Unchanged,
    /// Only paths starting with one of these, and each of them something.
    Only(&'static [&'static str]),
}

/// Where the command's output goes, and which of it is the snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shown {
    /// Standard output (a JSON document, a plan, a report).
    Stdout,
    /// Standard error: the error and its hints, the progress lines.
    Stderr,
    /// Standard output, then standard error.
    Both,
    /// Standard error, the progress lines sorted (steps side by side print
    /// in the order they get to it), the error report as printed.
    StderrOfLanes,
    /// Standard output goes into a pipe its reader closed before the first
    /// line (`| head -1` at its quickest); the snapshot is standard error.
    ClosedStdout,
    /// Both go into that closed pipe (`2>&1 | head -1`); nothing is shown.
    ClosedBoth,
}

/// One scenario of the table.
struct Journey {
    /// The snapshot's name.
    name: &'static str,
    /// The host before the command (a world, and the commands run before).
    world: fn() -> World,
    /// The command as typed; `stackinstall` and any `| head -1` are
    /// decoration, the rest is split on spaces.
    typed: &'static str,
    shown: Shown,
    exit: i32,
    disk: Disk,
    /// What the run's logs must hold.
    logged: &'static [&'static str],
}

/// The engine's own world (`credentials` and `summary`), nothing run yet.
fn engine_world() -> World {
    World::engine()
}

/// The engine's world after one install.
fn engine_installed() -> World {
    let world = World::engine();
    world.install(&[]).success();
    world
}

/// The fake cluster's world (no databases), nothing run yet, every step
/// of the install asked for.
fn cluster_world() -> World {
    let (mut world, _releases) = cluster::cluster_world();
    world.unset_env("STACKINSTALL_ONLY");
    world
}

/// The host too small for the profile.
fn too_small() -> World {
    let mut world = World::engine();
    world.set_env("STACKINSTALL_REQUIREMENTS__MEMORY_MIB", "100000000");
    world
}

/// The engine's world with a credentials file that is no TOML.
fn damaged_credentials() -> World {
    let world = World::engine();
    world.write("/etc/stackinstall/credentials.toml", "this is [not toml\n");
    world
}

/// The fake cluster's world whose Helm download is at `url` (`{base}`:
/// the release server's address).
fn helm_from(url: &str) -> World {
    let mut world = cluster_world();
    let base = (world.env.iter())
        .find(|(key, _)| key == "STACKINSTALL_DOWNLOADS__HELM")
        .map(|(_, value)| value.trim_end_matches("/helm").to_string())
        .unwrap();
    let url = match url.strip_prefix("https:") {
        Some(rest) => format!("https:{}", rest.replace("{base}", &base[5..])),
        None => url.replace("{base}", &base),
    };
    world.set_env("STACKINSTALL_DOWNLOADS__HELM", &url);
    world
}

/// Helm's download from a port nobody listens on.
fn helm_refused() -> World {
    // Port 9 (discard) on 127.0.0.1: nothing here listens on it.
    helm_from("http://127.0.0.1:9/helm")
}

/// Both K3s's and Helm's downloads from a port nobody listens on: two
/// steps that run side by side fail.
fn k3s_and_helm_refused() -> World {
    let mut world = helm_refused();
    world.set_env(
        "STACKINSTALL_DOWNLOADS__K3S",
        "http://127.0.0.1:9/k3s/{version}",
    );
    world
}

/// `helm` failed on a refused download (`install --only helm`).
fn helm_failed() -> World {
    let world = helm_refused();
    world.install(&["--only", "helm"]).code(1);
    world
}

/// An install with `--skip-db` over databases set up by others, each
/// password put in with `credentials set` first.
fn skip_db_with_passwords_set() -> World {
    let world = World::engine();
    for service in ["mysql", "mongodb", "rabbitmq"] {
        world
            .command()
            .args(["credentials", "set", service])
            .write_stdin(format!("Existing-{service}-Pass1\n"))
            .assert()
            .success();
    }
    world.install(&["--skip-db"]).success();
    let state = world.read("/var/lib/stackinstall/state.toml");
    assert_eq!(
        state.matches("password = \"found\"").count(),
        3,
        "each password recorded as given: {state}"
    );
    world
}

/// `k3s` and `helm` failed side by side on refused downloads, after
/// `k3s` wrote its configuration and the credential provider's.
fn k3s_and_helm_failed() -> World {
    let world = k3s_and_helm_refused();
    world.install(&["--only", "k3s,helm"]).code(1);
    world
}

/// The cluster installed (`k3s`, `helm`, `istio`, `namespace`), then K3s
/// stopped: its API refuses every call.
fn cluster_down() -> World {
    let world = cluster_world();
    world
        .install(&["--only", "k3s,helm,istio,namespace"])
        .success();
    world.stop_k3s();
    world
}

/// The cluster installed, then the application's namespace deleted.
fn namespace_gone() -> World {
    let world = cluster_world();
    world
        .install(&["--only", "k3s,helm,istio,namespace"])
        .success();
    world.delete_object("Namespace", "", "sb-apps");
    world
}

/// A fake EC2 instance metadata service on 127.0.0.1, modelled on IMDSv2
/// as AWS documents it ("Use the Instance Metadata Service to access
/// instance metadata", EC2 User Guide): `PUT /latest/api/token` with
/// `X-aws-ec2-metadata-token-ttl-seconds` gives a session token; a `GET`
/// without that token in `X-aws-ec2-metadata-token` is refused with 401;
/// `GET /latest/meta-data/iam/security-credentials/` lists the instance's
/// role, or answers 404 when it has none. Returns its URL.
fn metadata_service(role: Option<&'static str>) -> String {
    use std::io::{BufRead, BufReader, Write};
    const TOKEN: &str = "fake-imds-session-token";
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut headers = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                headers.push(line.trim().to_ascii_lowercase());
                line.clear();
            }
            let header = |name: &str| {
                (headers.iter())
                    .find_map(|h| h.strip_prefix(&format!("{name}: ")).map(str::to_string))
            };
            let mut words = request.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (status, body) = match (method, path) {
                ("PUT", "/latest/api/token")
                    if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
                {
                    ("200 OK", TOKEN.to_string())
                }
                ("PUT", _) => ("400 Bad Request", String::new()),
                _ if header("x-aws-ec2-metadata-token").as_deref()
                    != Some(&TOKEN.to_lowercase()) =>
                {
                    ("401 Unauthorized", String::new())
                }
                ("GET", "/latest/meta-data/iam/security-credentials/") => match role {
                    Some(role) => ("200 OK", format!("{role}\n")),
                    None => ("404 Not Found", String::new()),
                },
                _ => ("404 Not Found", String::new()),
            };
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A host with no AWS key, no profile, and no instance metadata service
/// answering (the world's default endpoint, a closed port on 127.0.0.1).
fn no_aws_credentials() -> World {
    World::new()
}

/// A host with no key and no profile, on an instance whose role is
/// `stackbill-node`.
fn instance_role() -> World {
    let mut world = World::new();
    world.set_env(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        &metadata_service(Some("stackbill-node")),
    );
    world
}

/// A host with no key and no profile, on an instance without a role.
fn instance_without_role() -> World {
    let mut world = World::new();
    world.set_env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &metadata_service(None));
    world
}

/// A host whose only AWS key is in the shell's environment.
fn aws_key_in_the_environment() -> World {
    let mut world = World::new();
    world.set_env("AWS_ACCESS_KEY_ID", "AKIAJOURNEYTEST");
    world.set_env(
        "AWS_SECRET_ACCESS_KEY",
        "journey-secret-access-key-never-shown",
    );
    world
}

/// The kubelet's request for an image of the profile's registry in
/// `request.json`, a key in the environment, and ECR's endpoint a port on
/// 127.0.0.1 where nothing listens.
fn provider_without_ecr() -> World {
    let mut world = aws_key_in_the_environment();
    world.set_env("STACKINSTALL_REGISTRY__ENDPOINT_URL", "http://127.0.0.1:9");
    let request = r#"{"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest", "image": "730335576030.dkr.ecr.ap-south-1.amazonaws.com/stackbill/core:1"}"#;
    std::fs::write(world.dir.path().join("request.json"), request).unwrap();
    world
}

/// The engine's world with `/srv/tls.crt` and `/srv/tls.key` as given.
fn with_pair(certificate: &str, key: &str) -> World {
    let world = World::engine();
    world.write("/srv/tls.crt", certificate);
    world.write("/srv/tls.key", key);
    world
}

/// A CA of its own and a leaf for the demo domain it signed: (CA PEM, leaf
/// PEM, leaf key PEM).
fn ca_and_leaf() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Journey Test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["demo.example.com".to_string()]).unwrap();
    let leaf_pem = leaf.signed_by(&leaf_key, &issuer).unwrap().pem();
    (ca_pem, leaf_pem, leaf_key.serialize_pem())
}

/// A chain file with the CA's certificate first, the leaf second.
fn chain_with_the_ca_first() -> World {
    let (ca, leaf, key) = ca_and_leaf();
    with_pair(&format!("{ca}{leaf}"), &key)
}

/// A key protected by a passphrase (`openssl pkcs8 -topk8 -v2 aes-256-cbc`).
fn passphrase_key() -> World {
    let (_, leaf, key) = ca_and_leaf();
    let world = with_pair(&leaf, &key);
    let plain = world.path("/srv/tls.key");
    let output = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:journey",
            "-in",
        ])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&plain, output.stdout).unwrap();
    world
}

/// A certificate with the domain as its Common Name and no subjectAltName.
fn common_name_only() -> World {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "demo.example.com");
    let certificate = params.self_signed(&key).unwrap().pem();
    with_pair(&certificate, &key.serialize_pem())
}

/// A valid pair for the demo domain whose key only root may read (0600),
/// every directory above it open to others: a plan by another user.
fn key_for_root_only() -> World {
    use std::os::unix::fs::PermissionsExt;
    let (_, leaf, key) = ca_and_leaf();
    let world = with_pair(&leaf, &key);
    let mode = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(&world.path("/srv/tls.key"), 0o600);
    mode(&world.path("/srv/tls.crt"), 0o644);
    for directory in crate::support::walk_directories(world.dir.path()) {
        mode(&directory, 0o755);
    }
    mode(world.dir.path(), 0o755);
    world
}

/// As `key_for_root_only`, with an AWS profile in root's home, which only
/// root can enter (`/root` is 0700 on Ubuntu).
fn aws_profile_for_root_only() -> World {
    use std::os::unix::fs::PermissionsExt;
    let mut world = key_for_root_only();
    // The registry's check of the credential source runs with its step.
    world.set_env("STACKINSTALL_ONLY", "credentials,registry,summary");
    world.write(
        "/root/.aws/credentials",
        "[default]\naws_access_key_id = AKIAJOURNEY\naws_secret_access_key = journey-secret\n",
    );
    let mode = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(&world.path("/root/.aws/credentials"), 0o600);
    mode(&world.path("/root/.aws"), 0o700);
    mode(&world.path("/root"), 0o700);
    world
}

/// Helm's download over TLS from a server on 127.0.0.1 that answers in
/// plain HTTP at once, as a web server on the wrong port would.
fn helm_no_tls() -> World {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    helm_from(&format!("https://127.0.0.1:{port}/helm"))
}

/// Helm's download from a path the release server does not have.
fn helm_missing() -> World {
    helm_from("{base}/no-such-helm")
}

/// The old installer's passwords file, every service in it, as it wrote
/// them (`MYSQL:` then `  Username:`/`  Password:` lines).
const OLD_INSTALLER_FILE: &str = "MYSQL:\n  Username: stackbill\n  Password: OldMysqlPassword1\nMONGODB:\n  Username: stackbill\n  Password: OldMongoPassword1\nRABBITMQ:\n  Username: stackbill\n  Password: OldRabbitPassword1\n";

/// An install with `--skip-db` over the old installer's databases: their
/// passwords imported from its `stackbill-credentials.txt`, which stays.
fn skip_db_over_the_old_installer() -> World {
    let world = World::engine();
    world.write("/root/stackbill-credentials.txt", OLD_INSTALLER_FILE);
    world.install(&["--skip-db"]).success();
    world
}

/// The fake cluster's world with `routes.toml`, a `--config` file whose
/// `[[routes]]` and home route are an application's own.
fn routes_of_a_config() -> World {
    let world = cluster_world();
    let config = "[istio]\nhome = \"/shop/\"\n\n[[routes]]\nprefix = \"/shop\"\nservice = \"shop-ui\"\nport = 80\n\n[[routes]]\nprefix = \"/api\"\nservice = \"shop-api\"\nport = 8080\n";
    std::fs::write(world.dir.path().join("routes.toml"), config).unwrap();
    std::fs::write(
        world.dir.path().join("unserved-home.toml"),
        "[istio]\nhome = \"/nowhere\"\n",
    )
    .unwrap();
    world
}

/// The table.
fn journeys() -> Vec<Journey> {
    vec![
        Journey {
            name: "plan_of_a_fresh_host",
            world: engine_world,
            typed: "stackinstall install --domain demo.example.com --self-signed --plan --output json",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "unknown_step",
            world: engine_world,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only mysq",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "status_after_an_install",
            world: engine_installed,
            typed: "stackinstall status --output json",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 4: a closed pipe is not a crash.
        Journey {
            name: "status_into_a_closed_pipe",
            world: engine_installed,
            typed: "stackinstall status | head -1",
            shown: Shown::ClosedStdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "status_json_into_a_closed_pipe",
            world: engine_installed,
            typed: "stackinstall status --output json | head -1",
            shown: Shown::ClosedStdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "credentials_into_a_closed_pipe",
            world: engine_installed,
            typed: "sudo stackinstall credentials | head -1",
            shown: Shown::ClosedStdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_into_a_closed_pipe",
            world: engine_world,
            typed: "stackinstall install --domain demo.example.com --self-signed --plan | head -1",
            shown: Shown::ClosedStdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "install_into_a_closed_pipe",
            world: engine_world,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed | head -1",
            shown: Shown::ClosedStdout,
            exit: 0,
            disk: Disk::Only(&[
                "/etc/stackinstall/credentials.toml",
                "/var/lib/stackinstall/lock",
                "/var/lib/stackinstall/state.toml",
            ]),
            logged: &["standard output is closed", "step summary: ok"],
        },
        Journey {
            name: "install_and_its_progress_into_a_closed_pipe",
            world: engine_world,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --output json 2>&1 | head -1",
            shown: Shown::ClosedBoth,
            exit: 0,
            disk: Disk::Only(&[
                "/etc/stackinstall/credentials.toml",
                "/var/lib/stackinstall/lock",
                "/var/lib/stackinstall/state.toml",
            ]),
            logged: &["standard error is closed", "step summary: ok"],
        },
        Journey {
            name: "uninstall_into_a_closed_pipe",
            world: engine_installed,
            typed: "sudo stackinstall uninstall --yes 2>&1 | head -1",
            shown: Shown::ClosedBoth,
            exit: 0,
            disk: Disk::Only(&[
                "/var/lib/stackinstall/lock",
                "/var/lib/stackinstall/state.toml",
            ]),
            logged: &["standard error is closed"],
        },
        Journey {
            name: "render_into_a_closed_pipe",
            world: engine_world,
            typed: "stackinstall render --domain demo.example.com --out $WORLD/rendered | head -1",
            shown: Shown::ClosedStdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 5: step names mean what they say.
        Journey {
            name: "only_packages",
            world: cluster_world,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only packages",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "redo_a_step_skip_infra_leaves_out",
            world: cluster_world,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --skip-infra --redo k3s",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 10: machine-readable output is always there.
        Journey {
            name: "install_json_on_a_host_too_small",
            world: too_small,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --output json",
            shown: Shown::Stdout,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "install_json_with_damaged_credentials",
            world: damaged_credentials,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --output json",
            shown: Shown::Stdout,
            exit: 1,
            disk: Disk::Only(&["/var/lib/stackinstall/"]),
            logged: &[],
        },
        Journey {
            name: "plan_on_a_host_too_small",
            world: too_small,
            typed: "stackinstall install --domain demo.example.com --self-signed --plan",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_json_on_a_host_too_small",
            world: too_small,
            typed: "stackinstall install --domain demo.example.com --self-signed --plan --output json",
            shown: Shown::Stdout,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 2: a download error names its root cause.
        Journey {
            name: "download_connection_refused",
            world: helm_refused,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only helm",
            shown: Shown::Stderr,
            exit: 1,
            disk: Disk::Only(&["/var/lib/stackinstall/"]),
            logged: &["connection failed: "],
        },
        Journey {
            name: "download_tls_failed",
            world: helm_no_tls,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only helm",
            shown: Shown::Stderr,
            exit: 1,
            disk: Disk::Only(&["/var/lib/stackinstall/"]),
            logged: &["TLS failed: "],
        },
        Journey {
            name: "download_not_found",
            world: helm_missing,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only helm",
            shown: Shown::Stderr,
            exit: 1,
            disk: Disk::Only(&["/var/lib/stackinstall/"]),
            logged: &["HTTP status: the server answered 404 Not Found"],
        },
        // Item 2: every failure is reported, the first in list order resumed.
        Journey {
            name: "two_steps_fail_side_by_side",
            world: k3s_and_helm_refused,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only k3s,helm",
            shown: Shown::StderrOfLanes,
            exit: 1,
            disk: Disk::Only(&[
                "/etc/rancher/k3s/config.yaml",
                "/usr/local/bin/stackinstall",
                "/var/lib/rancher/credentialprovider/",
                "/var/lib/stackinstall/",
            ]),
            logged: &[
                "cannot download `http://127.0.0.1:9/k3s/",
                "cannot download `http://127.0.0.1:9/helm/",
            ],
        },
        // Item 3: status never reports health it did not see.
        Journey {
            name: "status_of_a_host_with_nothing_installed",
            world: engine_world,
            typed: "stackinstall status",
            shown: Shown::Both,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "status_after_a_failed_step",
            world: helm_failed,
            typed: "stackinstall status",
            shown: Shown::Both,
            exit: 1,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "status_json_after_a_failed_step",
            world: helm_failed,
            typed: "stackinstall status --output json",
            shown: Shown::Stdout,
            exit: 1,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 3: doctor never reports health it did not see.
        Journey {
            name: "doctor_with_the_cluster_down",
            world: cluster_down,
            typed: "sudo stackinstall doctor --checks cluster,mesh",
            shown: Shown::Stdout,
            exit: 1,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "doctor_without_the_application_namespace",
            world: namespace_gone,
            typed: "sudo stackinstall doctor --checks mesh",
            shown: Shown::Stdout,
            exit: 1,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 1: missing AWS credentials are found before anything changes.
        Journey {
            name: "no_aws_credentials",
            world: no_aws_credentials,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only registry",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_without_aws_credentials",
            world: no_aws_credentials,
            typed: "stackinstall install --domain demo.example.com --self-signed --only registry --plan",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_with_an_instance_role",
            world: instance_role,
            typed: "stackinstall install --domain demo.example.com --self-signed --only registry --plan",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "an_instance_without_a_role",
            world: instance_without_role,
            typed: "sudo stackinstall install --domain demo.example.com --self-signed --only registry",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_with_the_aws_key_in_the_environment_only",
            world: aws_key_in_the_environment,
            typed: "stackinstall install --domain demo.example.com --self-signed --only registry --plan",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "credential_provider_error_is_one_line",
            world: provider_without_ecr,
            typed: "stackinstall ecr-credential-provider < request.json",
            shown: Shown::Stderr,
            exit: 1,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 7: certificate errors name the real cause.
        Journey {
            name: "certificate_chain_with_the_ca_first",
            world: chain_with_the_ca_first,
            typed: "sudo stackinstall install --domain demo.example.com --ssl-cert $ROOT/srv/tls.crt --ssl-key $ROOT/srv/tls.key",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "certificate_key_with_a_passphrase",
            world: passphrase_key,
            typed: "sudo stackinstall install --domain demo.example.com --ssl-cert $ROOT/srv/tls.crt --ssl-key $ROOT/srv/tls.key",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "certificate_with_a_common_name_only",
            world: common_name_only,
            typed: "sudo stackinstall install --domain demo.example.com --ssl-cert $ROOT/srv/tls.crt --ssl-key $ROOT/srv/tls.key",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_without_root_and_a_key_only_root_reads",
            world: key_for_root_only,
            typed: "nobody$ stackinstall install --domain demo.example.com --ssl-cert $ROOT/srv/tls.crt --ssl-key $ROOT/srv/tls.key --plan",
            shown: Shown::Stderr,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_without_root_and_aws_credentials_only_root_reads",
            world: aws_profile_for_root_only,
            typed: "nobody$ stackinstall install --domain demo.example.com --ssl-cert $ROOT/srv/tls.crt --ssl-key $ROOT/srv/tls.key --plan",
            shown: Shown::Stderr,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 8: the routes served are what the plan says.
        Journey {
            name: "plan_lists_the_routes_of_the_profile",
            world: routes_of_a_config,
            typed: "stackinstall install --domain demo.example.com --self-signed --only gateway --plan",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "plan_lists_the_routes_a_config_replaced",
            world: routes_of_a_config,
            typed: "stackinstall install --domain demo.example.com --self-signed --only gateway --plan --config $WORLD/routes.toml",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        Journey {
            name: "home_route_no_route_serves",
            world: routes_of_a_config,
            typed: "stackinstall install --domain demo.example.com --self-signed --only gateway --plan --config $WORLD/unserved-home.toml",
            shown: Shown::Stderr,
            exit: 2,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 11: uninstall never deletes a password it cannot give back.
        Journey {
            name: "uninstall_delete_db_after_skip_db",
            world: skip_db_over_the_old_installer,
            typed: "sudo stackinstall uninstall --delete-db --yes",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Only(&["/var/lib/stackinstall/"]),
            logged: &[],
        },
        Journey {
            name: "uninstall_delete_db_after_skip_db_with_passwords_set",
            world: skip_db_with_passwords_set,
            typed: "sudo stackinstall uninstall --delete-db --yes",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Only(&["/var/lib/stackinstall/"]),
            logged: &[],
        },
        Journey {
            name: "uninstall_after_two_failed_downloads",
            world: k3s_and_helm_failed,
            typed: "sudo stackinstall uninstall --all --yes",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Only(&[
                "/etc/rancher/k3s/config.yaml",
                "/var/lib/rancher/credentialprovider/",
                "/var/lib/stackinstall/",
            ]),
            logged: &[],
        },
        Journey {
            name: "uninstall_plan_after_two_failed_downloads",
            world: k3s_and_helm_failed,
            typed: "stackinstall uninstall --all --plan",
            shown: Shown::Stdout,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
        // Item 12: kubectl's discovery warnings are not repeated.
        Journey {
            name: "status_with_the_cluster_down",
            world: cluster_down,
            typed: "stackinstall status",
            shown: Shown::Both,
            exit: 0,
            disk: Disk::Unchanged,
            logged: &[],
        },
    ]
}

/// What one scenario did.
struct Ran {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    changed: Vec<String>,
}

fn run(journey: &Journey, world: &World) -> Ran {
    let command_line = journey.typed.split('|').next().unwrap();
    let (command_line, input) = match command_line.split_once(" < ") {
        Some((line, file)) => (line, Some(world.dir.path().join(file.trim()))),
        None => (command_line, None),
    };
    let (command_line, as_nobody) = match command_line.strip_prefix("nobody$ ") {
        Some(line) => (line, true),
        None => (command_line, false),
    };
    let words: Vec<String> = (command_line.split_whitespace())
        .skip_while(|word| ["sudo", "stackinstall"].contains(word))
        .filter(|word| *word != "2>&1")
        .map(|word| word.replace("$WORLD", &world.dir.path().display().to_string()))
        .map(|word| word.replace("$ROOT", &world.root.display().to_string()))
        .collect();
    let before = world.files(false);
    let mut command = world.std_command();
    if as_nobody {
        use std::os::unix::process::CommandExt;
        // `nobody`, uid and gid 65534.
        command.uid(65534).gid(65534);
    }
    command.args(&words).stdin(match input {
        Some(file) => Stdio::from(std::fs::File::open(file).unwrap()),
        None => Stdio::null(),
    });
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let read = |mut reader: std::io::PipeReader| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = reader.read_to_string(&mut text);
            text
        })
    };
    let stdout = match journey.shown {
        Shown::Stdout | Shown::Stderr | Shown::StderrOfLanes | Shown::Both => {
            let (reader, writer) = std::io::pipe().unwrap();
            command.stdout(writer);
            Some(read(reader))
        }
        Shown::ClosedStdout | Shown::ClosedBoth => {
            command.stdout(closed());
            None
        }
    };
    let stderr = match journey.shown {
        Shown::ClosedBoth => {
            command.stderr(closed());
            None
        }
        _ => {
            let (reader, writer) = std::io::pipe().unwrap();
            command.stderr(writer);
            Some(read(reader))
        }
    };
    let mut child = command.spawn().unwrap();
    drop(command);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |reader: Option<std::thread::JoinHandle<String>>| {
        reader
            .map(|reader| reader.join().unwrap())
            .unwrap_or_default()
    };
    Ran {
        exit: status.and_then(|status| status.code()),
        stdout: text(stdout),
        stderr: text(stderr),
        changed: changes(&before, &world.files(false)),
    }
}

/// The paths added (`+`), changed (`~`) and removed (`-`) between two
/// listings.
fn changes(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut changed = Vec::new();
    for (path, bytes) in after {
        match before.get(path) {
            None => changed.push(format!("+ {path}")),
            Some(old) if old != bytes => changed.push(format!("~ {path}")),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|path| !after.contains_key(*path)) {
        changed.push(format!("- {path}"));
    }
    changed.sort_by(|a, b| a[2..].cmp(&b[2..]));
    changed
}

/// Filters for what differs between worlds, runs and machines.
fn filters(world: &World) -> Vec<(String, String)> {
    let world_dir = regex_escape(&world.dir.path().display().to_string());
    [
        (world_dir.as_str(), "[world]"),
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "[time]",
        ),
        (r"\d{8}-\d{6}(-\d+)?", "[stamp]"),
        (r"\d{8}T\d{6}Z(-\d+)?", "[stamp]"),
        (r"\(\d+\.\d+s\)", "([seconds])"),
        (r"in \d+\.\d+s\n", "in [seconds]s\n"),
        // Which test servers run is the machine's, not the scenario's.
        (
            r"      warning: port \d+ is in use by a program only root can see: the install will check it\n",
            "",
        ),
        (r#""seconds": \d+(\.\d+)?"#, r#""seconds": [seconds]"#),
        (r"http://127\.0\.0\.1:\d{4,5}", "http://[local server]"),
        (r"https://127\.0\.0\.1:\d{4,5}", "https://[local server]"),
        (r"127\.0\.0\.1", "[loopback]"),
        (r"\b\d+\.\d+\.\d+(-[0-9a-z.]+)?\+?[0-9a-z.]*\b", "[version]"),
        (
            r"resources: \d+ CPUs \(needs \d+\), \d+ MiB memory \(needs \d+\), \d+ GiB free disk \(needs \d+\)",
            "resources: [RESOURCES]",
        ),
        (r"\d+ MiB memory", "[memory] MiB memory"),
        (r"\d+ GiB free disk", "[disk] GiB free disk"),
        (r"\d+ CPUs", "[cpus] CPUs"),
        (
            r"operating system .* is supported",
            "operating system [OS] is supported",
        ),
    ]
    .into_iter()
    .map(|(pattern, replacement)| (pattern.to_string(), replacement.to_string()))
    .collect()
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' | '\\' => {
                format!("\\{c}")
            }
            c => c.to_string(),
        })
        .collect()
}

/// Runs one scenario and checks it; `Err` says what was not as expected.
fn check(journey: &Journey) -> Result<(), String> {
    let world = (journey.world)();
    let ran = run(journey, &world);
    let mut wrong = Vec::new();
    if ran.exit != Some(journey.exit) {
        wrong.push(format!("exit {:?}, expected {}", ran.exit, journey.exit));
    }
    match journey.disk {
        Disk::Unchanged if !ran.changed.is_empty() => {
            wrong.push(format!("changed {:?}, expected nothing", ran.changed));
        }
        Disk::Only(prefixes) => {
            let stray: Vec<&String> = (ran.changed.iter())
                .filter(|line| !prefixes.iter().any(|prefix| line[2..].starts_with(prefix)))
                .collect();
            let untouched: Vec<&&str> = (prefixes.iter())
                .filter(|prefix| {
                    !ran.changed
                        .iter()
                        .any(|line| line[2..].starts_with(**prefix))
                })
                .collect();
            if !stray.is_empty() || !untouched.is_empty() {
                wrong.push(format!(
                    "changed {stray:?} (not expected), left {untouched:?} (expected)"
                ));
            }
        }
        Disk::Unchanged => {}
    }
    let logs = world.logs();
    for line in journey.logged {
        if !logs.contains(line) {
            wrong.push(format!("the log holds no `{line}`"));
        }
    }
    let shown = match journey.shown {
        Shown::Stdout => ran.stdout.clone(),
        Shown::Stderr | Shown::ClosedStdout => ran.stderr.clone(),
        Shown::Both => format!("{}--- stderr\n{}", ran.stdout, ran.stderr),
        Shown::StderrOfLanes => {
            let (progress, report) = match ran.stderr.find("\nerror: ") {
                Some(at) => ran.stderr.split_at(at + 1),
                None => (ran.stderr.as_str(), ""),
            };
            let mut lines: Vec<&str> = progress.lines().collect();
            lines.sort();
            format!("{}\n{report}", lines.join("\n"))
        }
        Shown::ClosedBoth => String::new(),
    };
    let text = format!(
        "$ {}\nexit: {}\nchanged:\n{}\n---\n{}",
        journey.typed,
        ran.exit
            .map_or("signal".to_string(), |code| code.to_string()),
        (ran.changed.iter())
            .map(|line| format!("  {line}\n"))
            .collect::<String>(),
        shown
    );
    let filters = filters(&world);
    let snapshot = std::panic::catch_unwind(|| {
        let mut settings = insta::Settings::clone_current();
        for (pattern, replacement) in &filters {
            settings.add_filter(pattern, replacement.as_str());
        }
        settings.set_prepend_module_to_snapshot(false);
        settings.set_snapshot_path("snapshots/journeys");
        settings.bind(|| insta::assert_snapshot!(journey.name, text));
    });
    if snapshot.is_err() {
        wrong.push("output differs from its snapshot".to_string());
    }
    match wrong.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "{}: {}\n  stderr: {}",
            journey.name,
            wrong.join("; "),
            ran.stderr.trim_end().replace('\n', "\n          ")
        )),
    }
}

#[test]
fn the_operators_journeys_end_as_expected() {
    let table = journeys();
    let failures: Vec<String> = table.iter().filter_map(|j| check(j).err()).collect();
    report(&format!(
        "journeys: {} scenarios, {} as expected",
        table.len(),
        table.len() - failures.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every step name `--only`, `--from` and `--redo` accept is part of the
/// plan it gives (not `skipped`), or the plan is refused (exit 2) with the
/// reason: never accepted to run nothing.
#[test]
fn every_step_named_runs_or_is_refused_with_the_reason() {
    let world = cluster_world();
    // AWS credentials where the kubelet and the timer find them: without
    // them a plan with `registry` stops (exit 2) for that reason.
    world.write(
        "/root/.aws/credentials",
        "[default]\naws_access_key_id = AKIAJOURNEYTEST\naws_secret_access_key = journey-secret\n",
    );
    let (mut runs, mut refused) = (0, Vec::new());
    for id in StepId::ALL {
        for flag in ["--only", "--from", "--redo"] {
            let assert = world
                .command()
                .args(["install", "--domain", "demo.example.com", "--self-signed"])
                .args(["--plan", "--output", "json", flag, id.name()])
                .assert();
            let output = assert.get_output();
            if output.status.code() == Some(2) {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    stderr.contains(&format!("`{flag} {id}`")) && stderr.contains("hint: "),
                    "{flag} {id}: refused without the reason: {stderr}"
                );
                refused.push(format!("{flag} {id}"));
                continue;
            }
            let plan = json(&assert.success());
            let steps = plan["steps"].as_array().unwrap();
            let step = steps.iter().find(|step| step["id"] == id.name()).unwrap();
            assert_ne!(step["state"], "skipped", "{flag} {id}: {step}");
            runs += 1;
        }
    }
    assert_eq!(refused, ["--only packages"]);
    report(&format!(
        "step names: {runs} of {} run, refused with the reason: {}",
        StepId::ALL.len() * 3,
        refused.join(", ")
    ));
}

/// Item 12: `render` writes every file a full install writes on the host
/// (each found in it: a block such as `/etc/exports`' is part of the
/// file), so that a file a later change adds to the install is one
/// `render` must write too, or one this list says why not.
#[test]
fn render_writes_every_file_a_full_install_writes() {
    use crate::support::{full, servers};
    // Each host file the install writes, and the file `render` writes of it.
    const RENDERED: &[(&str, &str)] = &[
        ("/etc/exports", "exports"),
        ("/etc/mongod.conf", "mongodb.conf"),
        (
            "/etc/mysql/mariadb.conf.d/stackbill.cnf",
            "mariadb-stackbill.cnf",
        ),
        (
            "/etc/mysql/mysql.conf.d/stackbill.cnf",
            "mysql-stackbill.cnf",
        ),
        ("/etc/rabbitmq/enabled_plugins", "rabbitmq-enabled_plugins"),
        ("/etc/rancher/k3s/config.yaml", "k3s-config.yaml"),
        ("/etc/stackinstall/ecr-refresh.toml", "ecr-refresh.toml"),
        (
            "/etc/stackinstall/istio-operator.yaml",
            "istio-operator.yaml",
        ),
        (
            "/etc/systemd/system/data-stackbill.mount",
            "data-stackbill.mount",
        ),
        (
            "/etc/systemd/system/stackinstall-ecr-refresh.service",
            "stackinstall-ecr-refresh.service",
        ),
        (
            "/etc/systemd/system/stackinstall-ecr-refresh.timer",
            "stackinstall-ecr-refresh.timer",
        ),
        (
            "/var/lib/rancher/credentialprovider/config.yaml",
            "credential-provider-config.yaml",
        ),
    ];
    // What the install writes that `render` does not, and why.
    const NOT_RENDERED: &[(&str, &str)] = &[
        (
            "/etc/rancher/k3s/k3s.yaml",
            "K3s's kubeconfig: K3s writes it, with the cluster's keys",
        ),
        (
            "/root/.kube/config",
            "root's copy of K3s's kubeconfig: the cluster's keys",
        ),
        (
            "/etc/stackinstall/credentials.toml",
            "the generated passwords",
        ),
        (
            "/etc/stackinstall/tls/",
            "the self-signed pair: a private key, made by the install",
        ),
        (
            "/usr/local/bin/",
            "programs: the downloads, and this stackinstall",
        ),
        (
            "/var/lib/mongodb/encryption",
            "MongoDB's key file: a secret",
        ),
        (
            "/var/lib/nfs/etab",
            "written by `exportfs -ra` (nfs-utils), not by stackinstall",
        ),
        (
            "/var/lib/rancher/credentialprovider/bin/stackinstall",
            "a link to the installed stackinstall",
        ),
        ("/var/lib/rancher/k3s/", "K3s's own data"),
        (
            "/var/lib/stackinstall/",
            "the state, the run lock, the downloads",
        ),
    ];
    let world = full::quick_full_world(&servers::unique("render"));
    let before = world.files(false);
    world.install(&[]).success();
    let written: Vec<String> = changes(&before, &world.files(false))
        .into_iter()
        .filter(|line| !line.starts_with("- "))
        .map(|line| line[2..].to_string())
        .collect();
    let out = world.dir.path().join("rendered");
    // The same inputs as the install (`render` takes no --self-signed).
    world
        .command()
        .env("STACKINSTALL_INSTALL__SELF_SIGNED", "true")
        .args(["render", "--domain", crate::support::DOMAIN, "--out"])
        .arg(&out)
        .assert()
        .success();
    let mut missing = Vec::new();
    for path in &written {
        if NOT_RENDERED
            .iter()
            .any(|(prefix, _)| path.starts_with(prefix))
        {
            continue;
        }
        let Some((_, name)) = RENDERED.iter().find(|(p, _)| p == path) else {
            missing.push(format!("{path}: neither rendered nor said why not"));
            continue;
        };
        let rendered = std::fs::read_to_string(out.join(name)).unwrap_or_default();
        let installed = world.read(path);
        if rendered.is_empty() || !installed.contains(rendered.trim_end()) {
            missing.push(format!(
                "{path}: `render`'s {name} is not what it holds:\n{rendered}\n--- installed:\n{installed}"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    let rendered = written.len()
        - (written.iter())
            .filter(|path| {
                NOT_RENDERED
                    .iter()
                    .any(|(prefix, _)| path.starts_with(prefix))
            })
            .count();
    report(&format!(
        "render: {} files a full install writes, {rendered} of them as `render` writes them, the others secrets, programs or state ({} reasons)",
        written.len(),
        NOT_RENDERED.len()
    ));
}
