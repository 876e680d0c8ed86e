//! `stackinstall doctor`: one fixture per failure class of the runbooks
//! (`tests/fixtures/doctor/<class>/`, the objects as `kubectl get -o json`
//! prints them, over the healthy fixture) loaded into the fake cluster and
//! read through the fake `kubectl`; the end-to-end probe against a local
//! HTTPS server (rustls, in the test); the host logins against the
//! real MariaDB, RabbitMQ and SecantusDB; and the support bundle.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::servers::{block_on, mongodb_admin, mysql_root, rabbitmqctl, sql};
use crate::support::{Action, Rule, World, bundle_entries, servers, stderr, stdout};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/doctor");
/// The runbook's (seed 000) domain and namespace.
const DOMAIN: &str = "restaurant.corpv3.com";
const NAMESPACE: &str = "restaurant-system";

/// A world whose fake cluster holds the objects of `fixture` over those of
/// the healthy fixture (each `RESOURCE.json` list replacing the healthy
/// one), with their pods' logs (`logs/POD.txt`) and `describe.txt`; a file
/// `down` in the fixture: the cluster's API does not answer.
fn world(fixture: &Path) -> World {
    let mut world = World::new();
    world.fake("kubectl");
    let healthy = Path::new(FIXTURES).join("healthy");
    let mut files = std::collections::BTreeMap::new();
    for dir in [healthy.as_path(), fixture] {
        for path in crate::support::walk(dir) {
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            files.insert(name, path);
        }
    }
    for (name, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        match name.as_str() {
            "down" => {}
            "describe.txt" => std::fs::write(world.state("describe.txt"), text).unwrap(),
            log if log.starts_with("logs/") => {
                std::fs::create_dir_all(world.state("logs")).unwrap();
                std::fs::write(world.state(log), text).unwrap();
            }
            _ => {
                let list: Value = serde_json::from_str(&text).unwrap();
                for object in list["items"].as_array().unwrap() {
                    world.put_object(object.clone());
                }
            }
        }
    }
    if !files.contains_key("down") {
        world.start_k3s();
    }
    world.set_env("STACKINSTALL_CLUSTER__NAMESPACE", NAMESPACE);
    world.set_env("STACKINSTALL_ISTIO__TLS_SECRET", "restaurant-tls");
    world
}

/// Runs `doctor --output json ARGS`; the report and the exit code.
fn doctor(world: &World, args: &[&str]) -> (Value, i32) {
    let output = world
        .command()
        .args(["doctor", "--output", "json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.code().unwrap_or(-1))
}

/// Every finding of the report.
fn findings(report: &Value) -> Vec<Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|check| check["findings"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// The class's fixture: doctor names the class with its evidence and fix.
fn named(class: &str, evidence: &str, fix: &str) -> bool {
    let world = world(&Path::new(FIXTURES).join(fixture_of(class)));
    let (report, code) = doctor(&world, &["--checks", "cluster,mesh"]);
    let all = findings(&report);
    let text = |value: &Value| match value {
        Value::Array(lines) => lines
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.as_str().unwrap_or("").to_string(),
    };
    let matches = |finding: &&Value| {
        finding["class"] == class
            && finding["severity"] == "error"
            && text(&finding["evidence"]).contains(evidence)
            && text(&finding["fix"]).contains(fix)
    };
    let ok = code == 1 && all.iter().any(|finding| matches(&finding));
    if !ok {
        eprintln!("{class}: exit {code}, wanted evidence {evidence:?} and fix {fix:?} in {all:#?}");
    }
    ok
}

/// The fixture directory of a class (one fixture shows two storage classes).
fn fixture_of(class: &str) -> &str {
    if class == "pvc-pending" {
        "storage-class-missing"
    } else {
        class
    }
}

macro_rules! classes {
    ($($test:ident: $class:literal, $evidence:literal, $fix:literal;)*) => {
        /// The runbooks' failure classes: (class, evidence, fix) fragments.
        const CLASSES: &[(&str, &str, &str)] = &[$(($class, $evidence, $fix)),*];
        $(
            #[test]
            fn $test() {
                assert!(named($class, $evidence, $fix), "doctor does not name `{}` with its fix", $class);
            }
        )*
    };
}

classes! {
    node_not_ready: "node-not-ready", "KubeletNotReady", "journalctl -u k3s";
    istiod_not_available: "istio-not-available", "availableReplicas", "--redo istio";
    gateway_service_node_ports: "gateway-service", "nodePort 30443, targetPort 8443", "--redo istio";
    gateway_on_container_ports: "gateway-container-port", "port.number 8443", "`port.number` to 443";
    credential_name_missing: "credential-missing", "restaurant-tls", "kubectl create secret tls restaurant-tls -n istio-system";
    credential_for_another_domain: "credential-domain", "restaurant-management.corpv3.com", "--domain restaurant.corpv3.com";
    route_to_a_missing_service: "route-service-missing", "customer-service", "kubectl get svc -n restaurant-system";
    route_to_a_wrong_port: "route-port", "port.number 8002", "\"value\": 8003";
    subset_not_defined: "subset-undefined", "subset stable", "\"path\": \"/spec/http/0/route/0/destination/subset\"";
    subset_selecting_no_pod: "subset-no-pods", "version", "\"path\": \"/spec/subsets\"";
    namespace_without_injection_label: "injection-label", "READY 1/1", "kubectl label namespace restaurant-system istio-injection=enabled";
    pod_without_sidecar: "pod-without-sidecar", "READY 1/1", "kubectl rollout restart deployment/frontend -n restaurant-system";
    strict_mtls_client_without_sidecar: "strict-client-without-sidecar", "cloudflare-tunnel", "PERMISSIVE";
    destination_rule_tls_under_strict: "destination-rule-tls", "DISABLE", "\"mode\":\"ISTIO_MUTUAL\"";
    storage_class_missing: "storage-class-missing", "", "storage";
    pvc_pending: "pvc-pending", "storageClassName: \"nfs-client\"", "kubectl describe pvc -n restaurant-system restaurant-data";
    pull_error_is_the_registry_token: "registry-token", "no basic auth credentials", "sudo stackinstall ecr-refresh";
    crash_loop_with_the_last_log_lines: "crash-loop", "log: ERROR:    Application startup failed", "--previous";
    job_held_by_its_sidecar: "job-held-by-sidecar", "istio-proxy running", "put them back with `sudo stackinstall install --redo istio`, then `kubectl delete job/db-migrate";
}

/// The install uses native sidecars: the advice for a Job held open by a
/// classic one is to put them back, not to take the Job out of the mesh.
#[test]
fn a_job_held_by_its_sidecar_is_not_advised_out_of_the_mesh() {
    let world = world(&Path::new(FIXTURES).join("job-held-by-sidecar"));
    let (report, _) = doctor(&world, &["--checks", "cluster"]);
    let finding = findings(&report)
        .into_iter()
        .find(|finding| finding["class"] == "job-held-by-sidecar")
        .expect("the class is named");
    let fix = finding["fix"].as_str().unwrap();
    assert!(
        !fix.contains("sidecar.istio.io/inject") && !fix.contains("quitquitquit"),
        "{fix}"
    );
}

#[test]
fn every_runbook_class_has_a_fixture_and_is_named_with_its_fix() {
    let mut covered = Vec::new();
    for (class, evidence, fix) in CLASSES {
        assert!(
            Path::new(FIXTURES).join(fixture_of(class)).is_dir(),
            "no fixture for {class}"
        );
        if named(class, evidence, fix) {
            covered.push(*class);
        }
    }
    crate::support::report(&format!(
        "doctor: runbook cluster classes named with their fix: {}/{} ({})",
        covered.len(),
        CLASSES.len(),
        covered.join(", ")
    ));
    assert_eq!(covered.len(), CLASSES.len());
}

/// A local HTTPS server standing in for the Istio ingress gateway, on
/// 127.0.0.1 in the test: it serves a certificate and key for the domain
/// only (a handshake with another SNI is refused, as the gateway refuses
/// it) and answers each request by the longest route prefix given as
/// `PREFIX=STATUS[:BODY]`, anything else with 404, as Envoy answers a path
/// no route matches. Stopped on drop.
struct Gateway {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The served certificate, for the domain's SNI alone.
#[derive(Debug)]
struct ForTheDomain(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for ForTheDomain {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        (hello.server_name() == Some(DOMAIN)).then(|| self.0.clone())
    }
}

/// Serves `certificate`/`key` for the domain with `routes` (`PREFIX=STATUS[:BODY]`).
fn gateway(certificate: &str, key: &str, routes: &[&str]) -> Gateway {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(certificate.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let signing = provider.key_provider.load_private_key(key).unwrap();
    let served = Arc::new(rustls::sign::CertifiedKey::new(chain, signing));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ForTheDomain(served)));
    let config = Arc::new(config);
    let mut table: Vec<(String, u16, String)> = routes
        .iter()
        .map(|route| {
            let (prefix, answer) = route.split_once('=').unwrap();
            let (status, body) = answer.split_once(':').unwrap_or((answer, "ok"));
            (
                prefix.to_string(),
                status.parse().unwrap(),
                body.to_string(),
            )
        })
        .collect();
    table.sort_by_key(|(prefix, _, _)| std::cmp::Reverse(prefix.len()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let (config, table) = (config.clone(), table.clone());
            std::thread::spawn(move || answer(config, stream, &table));
        }
    });
    Gateway { port, stop }
}

/// One HTTPS request on `stream`, answered by the route table.
fn answer(config: Arc<rustls::ServerConfig>, stream: TcpStream, table: &[(String, u16, String)]) {
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut reader = BufReader::new(&mut tls);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut host = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("host")
        {
            host = value.trim().to_string();
        }
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = (table.iter())
        .find(|(prefix, _, _)| path.starts_with(prefix.as_str()))
        .map_or((404, String::new()), |(_, status, body)| {
            (*status, body.clone())
        });
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nx-host-seen: {host}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(response.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// A healthy installed host: the fixture's cluster, the installed (self-
/// signed) certificate in the file and in the gateway's Secret, and the
/// gateway answering every route with `routes`.
struct Installed {
    world: World,
    _gateway: Gateway,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const ROUTES: [&str; 2] = ["/api/v1/restaurants", "/api/v1/auth"];

fn installed(served: Option<(&str, &str)>, routes: &[&str]) -> (Installed, String) {
    let dir = tempfile::tempdir().unwrap();
    let overrides = dir.path().join("fixture");
    std::fs::create_dir_all(&overrides).unwrap();
    let (certificate, key) = stackinstall::certificate::self_signed_for_a_year(DOMAIN);
    let secret = json!({ "items": [{ "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": { "name": "restaurant-tls", "namespace": "istio-system" },
        "data": { "tls.crt": base64::engine::general_purpose::STANDARD.encode(&certificate) } }] });
    std::fs::write(overrides.join("secrets.json"), secret.to_string()).unwrap();
    let (served_certificate, served_key) = served.unwrap_or((&certificate, &key));
    let gateway = gateway(served_certificate, served_key, routes);
    // The gateway Service's HTTPS NodePort is where the local server listens.
    let services = std::fs::read_to_string(format!("{FIXTURES}/healthy/services.json")).unwrap();
    let mut services: Value = serde_json::from_str(&services).unwrap();
    services["items"][0]["spec"]["ports"][2]["nodePort"] = json!(gateway.port);
    std::fs::write(overrides.join("services.json"), services.to_string()).unwrap();
    let world = world(&overrides);
    world.write("/etc/stackinstall/tls/tls.crt", &certificate);
    let config = dir.path().join("doctor.toml");
    let mut text = format!(
        "[istio]\nhttps_node_port = {}\ntls_secret = \"restaurant-tls\"\nhome = \"/api/v1/restaurants\"\n[cluster]\nnamespace = \"{NAMESPACE}\"\n",
        gateway.port
    );
    for (prefix, service) in ROUTES.iter().zip(["restaurant-service", "auth-service"]) {
        text.push_str(&format!(
            "[[routes]]\nprefix = \"{prefix}\"\nservice = \"{service}\"\nport = 8003\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    let installed = Installed {
        world,
        _gateway: gateway,
        config,
        _dir: dir,
    };
    (installed, certificate)
}

impl Installed {
    fn doctor(&self, args: &[&str]) -> (Value, i32) {
        let mut all = vec!["--config", self.config.to_str().unwrap()];
        all.extend(args);
        doctor(&self.world, &all)
    }
}

/// The arguments of every kubectl call.
fn kubectl_calls(world: &World) -> Vec<Vec<String>> {
    (world.calls().into_iter())
        .filter(|call| call.program == "kubectl")
        .map(|call| call.args)
        .collect()
}

fn classes(report: &Value) -> Vec<String> {
    findings(report)
        .iter()
        .map(|finding| finding["class"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn healthy_fixture_gives_no_finding_end_to_end_and_only_reads() {
    let (installed, _) = installed(None, &["/=200:welcome"]);
    let started = Instant::now();
    let (report, code) = installed.doctor(&[]);
    let wall = started.elapsed();
    assert_eq!(findings(&report), Vec::<Value>::new(), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(
        report["domain"], DOMAIN,
        "the domain comes from the live Gateway"
    );
    for name in [
        "cluster.objects",
        "cluster.nodes",
        "mesh.gateway",
        "mesh.routes",
        "mesh.mtls",
        "host.certificate",
        "probe.https",
    ] {
        assert_eq!(check(&report, name)["outcome"], "ok", "{name}: {report:#}");
    }
    assert_eq!(
        check(&report, "host.mysql")["outcome"],
        "skipped",
        "no credentials file"
    );
    let calls = kubectl_calls(&installed.world);
    let verbs = ["get", "logs", "describe", "version"];
    assert!(
        calls.iter().all(|args| verbs.contains(&args[0].as_str())),
        "doctor only reads: {calls:?}"
    );
    let text = installed
        .world
        .command()
        .args(["doctor", "--config", installed.config.to_str().unwrap()])
        .assert()
        .success();
    let text = stdout(&text);
    assert!(text.contains("0 error(s), 0 warning(s)"), "{text}");
    crate::support::report(&format!(
        "doctor: healthy fixture, every check, no finding: wall time {:.2}s (doctor's own figure {}s), {} kubectl calls, all reads",
        wall.as_secs_f64(),
        report["seconds"],
        calls.len()
    ));
}

#[test]
fn probe_names_a_served_certificate_that_is_not_the_installed_one() {
    let (other_certificate, other_key) = stackinstall::certificate::self_signed_for_a_year(DOMAIN);
    let (installed, _) = installed(Some((&other_certificate, &other_key)), &["/=200"]);
    let (report, code) = installed.doctor(&["--checks", "probe"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(classes(&report), ["served-certificate"], "{report:#}");
    let finding = &findings(&report)[0];
    assert!(
        finding["fix"].as_str().unwrap().contains("--redo tls"),
        "{finding:#}"
    );
}

#[test]
fn probe_names_routes_answering_no_healthy_upstream_and_404() {
    let (installed, _) = installed(
        None,
        &[
            "/api/v1/restaurants=503:no healthy upstream",
            "/api/v1/other=200",
        ],
    );
    let (report, code) = installed.doctor(&["--checks", "probe"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        classes(&report),
        ["route-unavailable", "route-not-found"],
        "{report:#}"
    );
    let all = findings(&report);
    assert!(
        all[0]["evidence"][0]
            .as_str()
            .unwrap()
            .contains("HTTP 503 no healthy upstream"),
        "{report:#}"
    );
    assert!(
        all[1]["what"].as_str().unwrap().contains("/api/v1/auth"),
        "{report:#}"
    );
    crate::support::report(&format!(
        "doctor probe: {} routes asked, 2 broken ones named",
        ROUTES.len()
    ));
}

#[test]
fn a_renewed_certificate_file_while_the_secret_holds_the_old_one_is_named() {
    let (installed, old) = installed(None, &["/=200"]);
    let (renewed, _) = stackinstall::certificate::self_signed_for_a_year(DOMAIN);
    installed
        .world
        .write("/etc/stackinstall/tls/tls.crt", &renewed);
    let (report, code) = installed.doctor(&["--checks", "host,probe"]);
    assert_eq!(code, 1);
    let found = classes(&report);
    assert!(
        found.contains(&"certificate-secret-mismatch".to_string()),
        "{report:#}"
    );
    assert!(
        found.contains(&"served-certificate".to_string()),
        "the gateway serves the old one: {report:#}"
    );
    assert_ne!(old, renewed);
}

#[test]
fn without_a_cluster_its_checks_say_so_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("down"), "").unwrap();
    let world = world(dir.path());
    let (report, code) = doctor(&world, &[]);
    let objects = check(&report, "cluster.objects");
    assert_eq!(objects["outcome"], "skipped");
    assert!(
        objects["notes"][0]
            .as_str()
            .unwrap()
            .contains("the cluster does not answer"),
        "{objects:#}"
    );
    assert_eq!(check(&report, "host.disk")["outcome"], "ok");
    assert_eq!(
        check(&report, "probe.https")["outcome"],
        "skipped",
        "no domain is known"
    );
    assert_eq!(code, 0, "nothing that ran found an error: {report:#}");
}

#[test]
fn a_check_that_hangs_is_cut_at_its_time_limit() {
    let mut world = World::new();
    world.fake("kubectl");
    world.rule(Rule::new("kubectl", &[], Action::Hang));
    world.set_env("STACKINSTALL_CLUSTER__NAMESPACE", NAMESPACE);
    let (report, _) = doctor(
        &world,
        &["--timeout-seconds", "2", "--checks", "cluster,host"],
    );
    let objects = check(&report, "cluster.objects");
    assert_eq!(objects["outcome"], "timed-out", "{report:#}");
    assert!(objects["notes"][0].as_str().unwrap().contains("within 2s"));
    assert_eq!(check(&report, "host.disk")["outcome"], "ok");
}

#[test]
fn bad_input_exits_2() {
    let world = World::new();
    for args in [
        vec!["--domain", "not a domain"],
        vec!["--checks", "everything"],
        vec!["--timeout-seconds", "0"],
    ] {
        let assert = world.command().arg("doctor").args(&args).assert().code(2);
        assert!(!stderr(&assert).is_empty(), "{args:?}");
    }
}

// ------------------------------------------------------------ host logins --

/// Runs `statement` as MariaDB's root.
fn mysql(statement: &str) {
    block_on(async { sql(&mut mysql_root().await, statement).await });
}

/// The three service accounts `user` with `password`, on the real servers.
fn create_accounts(user: &str, password: &str) {
    mysql(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
    ));
    mongodb_admin(mongodb::bson::doc! { "createUser": user, "pwd": password, "roles": [] })
        .unwrap();
    rabbitmqctl(&["add_user", user], password);
    rabbitmqctl(&["set_user_tags", user, "management"], "");
    rabbitmqctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"], "");
}

fn change_passwords(user: &str, password: &str) {
    mysql(&format!(
        "ALTER USER '{user}'@'%' IDENTIFIED BY '{password}'"
    ));
    mongodb_admin(mongodb::bson::doc! { "updateUser": user, "pwd": password }).unwrap();
    rabbitmqctl(&["change_password", user], password);
}

fn drop_accounts(user: &str) {
    mysql(&format!("DROP USER IF EXISTS '{user}'@'%'"));
    let _ = mongodb_admin(mongodb::bson::doc! { "dropUser": user });
    rabbitmqctl(&["delete_user", user], "");
}

/// A world pointed at the test servers on 127.0.0.1, with a credentials
/// file holding `password` for `user` in every service.
fn host_world(user: &str, password: &str) -> World {
    use std::os::unix::fs::PermissionsExt;
    // No K3s: the fake cluster's API refuses.
    let mut world = World::new();
    world.fake("kubectl");
    for (key, value) in [
        (
            "MYSQL__PORT",
            servers::setting("STACKINSTALL_TEST_MYSQL_PORT"),
        ),
        (
            "MONGODB__PORT",
            servers::setting("STACKINSTALL_TEST_MONGODB_PORT"),
        ),
        (
            "RABBITMQ__PORT",
            servers::setting("STACKINSTALL_TEST_RABBITMQ_PORT"),
        ),
        (
            "RABBITMQ__MANAGEMENT_PORT",
            servers::setting("STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT"),
        ),
    ] {
        world.set_env(&format!("STACKINSTALL_{key}"), &value);
    }
    for service in ["MYSQL", "MONGODB", "RABBITMQ"] {
        world.set_env(&format!("STACKINSTALL_{service}__HOST"), "127.0.0.1");
    }
    let mut file = String::from("version = 1\n");
    for service in ["mysql", "mongodb", "rabbitmq"] {
        file.push_str(&format!(
            "[{service}]\nusername = \"{user}\"\npassword = \"{password}\"\n"
        ));
    }
    world.write("/etc/stackinstall/credentials.toml", &file);
    let path = world.path("/etc/stackinstall/credentials.toml");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    world
}

#[test]
fn host_logins_pass_with_the_right_password_and_name_a_changed_one() {
    let user = servers::unique("doctor");
    let password = format!("Right{}", servers::unique("pw"));
    let changed = format!("Changed{}", servers::unique("pw"));
    create_accounts(&user, &password);
    let world = host_world(&user, &password);
    let services = ["host.mysql", "host.mongodb", "host.rabbitmq"];
    let (right, right_code) = doctor(&world, &["--checks", "host"]);
    change_passwords(&user, &changed);
    let output = world
        .command()
        .args(["doctor", "--output", "json", "--checks", "host"])
        .output()
        .unwrap();
    drop_accounts(&user);
    for name in services {
        assert_eq!(
            check(&right, name)["outcome"],
            "ok",
            "{name} with the right password: {right:#}"
        );
    }
    assert_eq!(right_code, 0, "{right:#}");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let wrong: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut named = 0;
    for name in services {
        let found = check(&wrong, name)["findings"].as_array().unwrap().clone();
        assert!(
            found.iter().any(|f| f["class"] == "service-login"),
            "{name} after the change: {wrong:#}"
        );
        assert!(
            found
                .iter()
                .all(|f| f["fix"].as_str().unwrap().contains("--redo")),
            "{found:#?}"
        );
        named += 1;
    }
    assert!(
        !text.contains(&password) && !text.contains(&changed),
        "no password in the report:\n{text}"
    );
    crate::support::report(&format!(
        "doctor host logins: 3 services pass with the file's password, {named}/3 name the changed one, 0 passwords shown"
    ));
}

// ----------------------------------------------------------------- bundle --

#[test]
fn the_bundle_holds_report_state_configuration_logs_and_cluster_with_secrets_redacted() {
    let (installed, _) = installed(None, &["/=200"]);
    let password = format!("Bundled{}", servers::unique("pw"));
    let world = &installed.world;
    let mut credentials = String::from("version = 1\n");
    for service in ["mysql", "mongodb", "rabbitmq"] {
        credentials.push_str(&format!(
            "[{service}]\nusername = \"stackbill\"\npassword = \"{password}-{service}\"\n"
        ));
    }
    world.write("/etc/stackinstall/credentials.toml", &credentials);
    world.write("/var/lib/stackinstall/state.toml", "version = 1\n");
    world.write(
        "/var/log/stackinstall/install-1.log",
        &format!("a log line that leaked {password}-mysql\n"),
    );
    let describe = format!(
        "Name: auth-service\n  Environment:\n    MYSQL_PASSWORD:  {password}-mysql\n    AMQP_URL: amqp://stackbill:{password}-rabbitmq@10.0.0.5:5672/\n"
    );
    std::fs::write(world.state("describe.txt"), describe).unwrap();
    world.fake("istioctl");
    let bundle = world.dir.path().join("support.tar.gz");
    // The logins would go to this machine's own address: left out here.
    let args = [
        "--checks",
        "cluster,mesh,probe",
        "--bundle",
        bundle.to_str().unwrap(),
    ];
    let (report, code) = installed.doctor(&args);
    assert_eq!(code, 0, "{report:#}");
    let entries = bundle_entries(&bundle);
    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    for wanted in [
        "doctor.txt",
        "doctor.json",
        "configuration.toml",
        "state.toml",
        "logs/install-1.log",
        "cluster/restaurant-system/get.txt",
        "cluster/restaurant-system/describe.txt",
        "cluster/istio-system/describe.txt",
        "cluster/events.txt",
        "istio/analyze.txt",
        "istio/proxy-status.txt",
        "versions.txt",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    let describe = &entries
        .iter()
        .find(|(name, _)| name == "cluster/restaurant-system/describe.txt")
        .unwrap()
        .1;
    assert!(describe.contains("MYSQL_PASSWORD:  ********"), "{describe}");
    let leaks: Vec<&str> = entries
        .iter()
        .filter(|(_, text)| text.contains(&password))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(leaks, Vec::<&str>::new(), "a password in the bundle");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );
    crate::support::report(&format!(
        "doctor bundle: {} files, 3 planted passwords, 0 leaked",
        entries.len()
    ));
}

#[test]
fn a_wait_that_times_out_includes_doctors_findings() {
    let mut world = world(&Path::new(FIXTURES).join("crash-loop"));
    world.set_env("STACKINSTALL_WAIT__TIMEOUT_SECONDS", "1");
    world.set_env("STACKINSTALL_WAIT__POLL_MILLISECONDS", "100");
    let install = [
        "install",
        "--domain",
        DOMAIN,
        "--self-signed",
        "--only",
        "wait",
    ];
    let failed = world.command().args(install).assert().code(1);
    let text = stderr(&failed);
    assert!(
        text.contains("auth-service-6d9c7b8f5-p4tzw: CrashLoopBackOff"),
        "{text}"
    );
    assert!(
        text.contains("doctor's findings in the cluster and mesh (1):"),
        "{text}"
    );
    assert!(text.contains("error [crash-loop]"), "{text}");
    assert!(
        text.contains("log: ERROR:    Application startup failed. Exiting."),
        "{text}"
    );
    // The objects doctor read (whole pods: their environment, a chart's
    // values) are not copied into the run's log.
    let logs = world.path("/var/log/stackinstall");
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        let log = std::fs::read_to_string(entry.path()).unwrap();
        let copied: Vec<&str> = (log.lines())
            .filter(|line| line.contains("stdout |") && line.contains("auth-service-6d9c7b8f5"))
            .collect();
        assert!(copied.is_empty(), "{}: {copied:#?}", entry.path().display());
    }
}

#[test]
fn nfs_export_registry_token_and_renewal_timer_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let fetched = "2025-12-30T00:00:00Z";
    let secret = json!({ "items": [{ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "awscred", "namespace": NAMESPACE, "annotations": {
            "stackinstall/ecr-token-fetched-at": fetched,
            "stackinstall/ecr-token-expires-at": "2025-12-30T12:00:00Z" } } }] });
    std::fs::write(dir.path().join("secrets.json"), secret.to_string()).unwrap();
    let mut world = world(dir.path());
    // No renewal timer runs.
    world.fake("systemctl");
    let mut state = String::from("version = 1\n");
    for step in ["nfs", "registry"] {
        state.push_str(&format!("[steps.{step}]\nstatus = \"done\"\nfinished_at = \"{fetched}\"\ntool_version = \"0.1.0\"\nfingerprint = \"x\"\n"));
    }
    world.write("/var/lib/stackinstall/state.toml", &state);
    world.write(
        "/etc/exports",
        "/data/stackbill 10.0.0.0/8(rw,sync,no_subtree_check,no_root_squash)\n",
    );
    let (report, code) = doctor(&world, &["--checks", "host"]);
    assert_eq!(code, 1, "{report:#}");
    let nfs = &check(&report, "host.nfs")["findings"][0];
    assert_eq!(nfs["class"], "nfs-export", "{report:#}");
    assert!(
        nfs["what"]
            .as_str()
            .unwrap()
            .contains("is exported to `10.0.0.0/8`, which the pod network `10.42.0.0/16` is in: any pod can mount every volume"),
        "{nfs:#}"
    );
    let registry = check(&report, "host.registry")["findings"]
        .as_array()
        .unwrap()
        .clone();
    let named: Vec<&str> = registry
        .iter()
        .map(|f| f["class"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["registry-token", "renewal-timer"], "{report:#}");
    assert!(
        registry[0]["evidence"][0]
            .as_str()
            .unwrap()
            .contains("expires 2025-12-30 12:00:00"),
        "{report:#}"
    );
    assert!(
        registry[0]["fix"]
            .as_str()
            .unwrap()
            .contains("stackinstall ecr-refresh")
    );
    // The credential source and the token's times, also when all is well.
    let notes = check(&report, "host.registry")["notes"].to_string();
    for needed in [
        "/root/.aws",
        "token fetched 2025-12-30",
        "expires 2025-12-30",
    ] {
        assert!(notes.contains(needed), "`{needed}` in {notes}");
    }

    // A key in doctor's own environment only is named, with the fix.
    world.set_env("AWS_ACCESS_KEY_ID", "AKIADOCTORTEST");
    let (report, _) = doctor(&world, &["--checks", "host"]);
    let registry = check(&report, "host.registry").to_string();
    assert!(registry.contains("registry-credentials"), "{registry}");
    assert!(!registry.contains("AKIADOCTORTEST"), "{registry}");
}

/// `doctor --checks cluster --bundle`: the bundle's entries and stderr.
fn bundle_of(world: &World) -> (Vec<(String, String)>, String) {
    let bundle = world.dir.path().join("support.tar.gz");
    let output = world
        .command()
        .args(["doctor", "--output", "json", "--checks", "cluster"])
        .args(["--bundle", bundle.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(bundle.exists(), "no bundle: {stderr}");
    (bundle_entries(&bundle), stderr)
}

#[test]
fn a_bundle_made_with_a_damaged_or_missing_credentials_file_carries_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let password = format!("Damaged{}", servers::unique("pw"));
    let describe = format!(
        "Name: auth-service\n  Containers:\n   auth:\n    Image: 730335576030.dkr.ecr.ap-south-1.amazonaws.com/sb-auth:1.4.2\n    Port: 8080/TCP\n    Environment:\n      DB_PASSWORD:  {password}-mysql\n      DB_HOST: 10.0.0.5\n      AMQP_URL: amqp://stackbill:{password}-rabbitmq@10.0.0.5:5672/\n      MONGO_URI: mongodb://stackbill:{password}-mongodb@10.0.0.5:27017/admin\n"
    );
    std::fs::write(dir.path().join("describe.txt"), describe).unwrap();
    let world = world(dir.path());
    // A file a later stackinstall wrote: it does not load here.
    let mut credentials = String::from("version = 2\n");
    for service in ["mysql", "mongodb", "rabbitmq"] {
        credentials.push_str(&format!(
            "[{service}]\nusername = \"stackbill\"\npassword = \"{password}-{service}\"\n"
        ));
    }
    world.write("/etc/stackinstall/credentials.toml", &credentials);
    world.write(
        "/var/log/stackinstall/install-1.log",
        &format!("a log line that leaked {password}-mongodb alone\n"),
    );
    let mut leaks = Vec::new();
    let mut bundles = 0;
    for damaged in [true, false] {
        if !damaged {
            std::fs::remove_file(world.path("/etc/stackinstall/credentials.toml")).unwrap();
            std::fs::remove_file(world.path("/var/log/stackinstall/install-1.log")).unwrap();
        }
        let (entries, stderr) = bundle_of(&world);
        bundles += 1;
        leaks.extend(
            entries
                .iter()
                .filter(|(_, text)| text.contains(&password))
                .map(|(name, _)| format!("{name} (credentials file damaged: {damaged})")),
        );
        assert!(leaks.is_empty(), "a password in the bundle: {leaks:?}");
        let describe = &entries
            .iter()
            .find(|(name, _)| name == "cluster/restaurant-system/describe.txt")
            .unwrap()
            .1;
        for kept in [
            "730335576030.dkr.ecr.ap-south-1.amazonaws.com/sb-auth:1.4.2",
            "Port: 8080/TCP",
            "DB_HOST: 10.0.0.5",
            "@10.0.0.5:5672/",
        ] {
            assert!(describe.contains(kept), "{kept} lost:\n{describe}");
        }
        match damaged {
            true => assert!(stderr.contains("secrets redacted"), "{stderr}"),
            false => assert!(stderr.contains("no known secret to redact"), "{stderr}"),
        }
    }
    crate::support::output::report(&format!(
        "bundle without a loadable credentials file: {bundles} bundles, {} leaks",
        leaks.len()
    ));
    assert!(leaks.is_empty(), "{leaks:?}");
}
