//! `stackinstall doctor`: one fixture per failure class of the runbooks
//! (`tests/fixtures/doctor/<class>/`, the objects as `kubectl get -o json`
//! prints them, over the healthy fixture) served by a fake kubectl
//! (`tests/fakes/doctor_kubectl.py`); the end-to-end probe against a local
//! HTTPS server (`tests/fakes/tls_server.py`); the host logins against the
//! real MariaDB, RabbitMQ and SecantusDB; and the support bundle.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "support/servers.rs"]
mod servers;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

use base64::Engine;
use common::{World, report};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/doctor");
const FAKES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fakes");
/// The runbook's (seed 000) domain and namespace.
const DOMAIN: &str = "restaurant.corpv3.com";
const NAMESPACE: &str = "restaurant-system";

/// A world whose kubectl answers from `fixture` over the healthy fixture.
fn world(fixture: &Path) -> World {
    let mut world = World::new();
    world.fake(
        "kubectl",
        &format!(
            r#"exec python3 {FAKES}/doctor_kubectl.py "{}" "{FIXTURES}/healthy" "$@""#,
            fixture.display()
        ),
    );
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
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
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
    if class == "pvc-pending" { "storage-class-missing" } else { class }
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
    job_held_by_its_sidecar: "job-held-by-sidecar", "istio-proxy running", "sidecar.istio.io/inject";
}

#[test]
fn every_runbook_class_has_a_fixture_and_is_named_with_its_fix() {
    let mut covered = Vec::new();
    for (class, evidence, fix) in CLASSES {
        assert!(Path::new(FIXTURES).join(fixture_of(class)).is_dir(), "no fixture for {class}");
        if named(class, evidence, fix) {
            covered.push(*class);
        }
    }
    report(&format!(
        "doctor: runbook cluster classes named with their fix: {}/{} ({})",
        covered.len(),
        CLASSES.len(),
        covered.join(", ")
    ));
    assert_eq!(covered.len(), CLASSES.len());
}
