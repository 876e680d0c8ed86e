//! The cluster steps (k3s, helm, istio, namespace, tls, gateway) against fake
//! `kubectl`, `istioctl`, `helm`, `systemctl` and K3s install script on PATH
//! that keep the cluster's objects in `$STATE`, with the release files
//! served by a small HTTP server on 127.0.0.1 (SHA-256 sums and all).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::cluster::{self as support, K3S_BINARY, cluster_world};
use crate::support::{Call, DOMAIN, World, error_report, outcomes, stderr, stdout};

/// Calls that change the cluster or the host.
fn mutating(calls: &[Call]) -> Vec<String> {
    let changes = |call: &Call| match call.program.as_str() {
        "kubectl" => ["apply", "delete", "create", "patch"]
            .iter()
            .any(|verb| call.args.first().is_some_and(|a| a == verb)),
        "istioctl" => call
            .args
            .first()
            .is_some_and(|a| a == "install" || a == "uninstall"),
        "systemctl" => call
            .args
            .first()
            .is_some_and(|a| !["is-active", "is-enabled", "show"].contains(&a.as_str())),
        "helm" => call.args.first().is_some_and(|a| a != "version"),
        _ => true,
    };
    calls
        .iter()
        .filter(|call| changes(call))
        .map(Call::line)
        .collect()
}

/// The objects the `kubectl apply` calls sent, as `Kind/namespace/name`.
pub(crate) fn applied(calls: &[Call]) -> Vec<String> {
    let mut objects = Vec::new();
    for call in calls
        .iter()
        .filter(|c| c.program == "kubectl" && c.args.first().is_some_and(|a| a == "apply"))
    {
        for document in serde_yaml_ng::Deserializer::from_str(&call.stdin) {
            let object: Value = serde::Deserialize::deserialize(document).unwrap();
            if object.is_null() {
                continue;
            }
            let name = object["metadata"]["name"].as_str().unwrap();
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or("-");
            objects.push(format!(
                "{}/{namespace}/{name}",
                object["kind"].as_str().unwrap()
            ));
        }
    }
    objects
}

#[test]
fn install_sets_up_the_cluster_and_a_second_run_changes_nothing() {
    let (world, releases) = cluster_world();
    let first = world.install(&["--output", "json"]).success();
    let results = outcomes(&first);
    for step in ["k3s", "helm", "istio", "namespace", "tls", "gateway"] {
        assert_eq!(results[step], "changed", "{step}: {results:?}");
    }
    let calls = world.calls();
    let install = calls
        .iter()
        .find(|c| c.program == "k3s-install")
        .expect("the K3s install script ran");
    assert_eq!(install.env("INSTALL_K3S_SKIP_DOWNLOAD"), Some("true"));
    assert_eq!(install.env("INSTALL_K3S_VERSION"), Some("v1.29.0+k3s1"));
    // The flags are K3s's configuration file's (`/etc/rancher/k3s/config.yaml`).
    assert_eq!(install.env("INSTALL_K3S_EXEC"), Some("server"));
    let config = world.read("/etc/rancher/k3s/config.yaml");
    for setting in [
        "disable:\n  - traefik\n  - servicelb\n",
        "write-kubeconfig-mode: \"0600\"",
    ] {
        assert!(config.contains(setting), "{config}");
    }
    let istioctl = calls
        .iter()
        .find(|c| c.program == "istioctl" && c.args[0] == "install")
        .unwrap();
    assert_eq!(istioctl.args[..3], ["install", "-y", "-f"]);
    assert_eq!(
        istioctl.env("KUBECONFIG"),
        Some("/etc/rancher/k3s/k3s.yaml")
    );
    assert_eq!(
        applied(&calls),
        [
            "Namespace/-/sb-apps",
            "Secret/istio-system/stackbill-tls-secret",
            "Secret/sb-apps/stackbill-tls-secret",
            "Gateway/sb-apps/stackbill-gateway",
            "VirtualService/sb-apps/stackbill-vs",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(world.path("/usr/local/bin/k3s")).unwrap(),
        K3S_BINARY
    );
    for binary in ["k3s", "helm", "istioctl"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(world.path(&format!("/usr/local/bin/{binary}")))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o755, "{binary}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(world.path("/var/lib/stackinstall/downloads"))
        .unwrap()
        .collect();
    assert!(
        leftovers.is_empty(),
        "downloads are cleaned up: {leftovers:?}"
    );
    // --self-signed: the tls step made the pair, the key for root alone.
    let key = world.read("/etc/stackinstall/tls/tls.key");
    let certificate = world.read("/etc/stackinstall/tls/tls.crt");
    let now = time::OffsetDateTime::now_utc();
    stackinstall::certificate::check_pair(certificate.as_bytes(), key.as_bytes(), DOMAIN, now)
        .unwrap();
    let mode = std::fs::metadata(world.path("/etc/stackinstall/tls/tls.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    world.clear_calls();
    let downloads = releases.requests().len();
    let second = world.install(&["--output", "json"]).success();
    assert_eq!(
        mutating(&world.calls()),
        Vec::<String>::new(),
        "{}",
        stderr(&second)
    );
    assert_eq!(
        releases.requests().len(),
        downloads,
        "nothing is downloaded again"
    );
    let results = outcomes(&second);
    for step in ["k3s", "helm", "istio", "namespace", "tls", "gateway"] {
        assert_eq!(results[step], "already-done", "{step}");
    }
    assert_eq!(
        world.read("/etc/stackinstall/tls/tls.key"),
        key,
        "the self-signed pair is kept while valid"
    );
}

fn write_pair(world: &World, domain: &str) -> (String, String) {
    let (certificate, key) = stackinstall::certificate::self_signed_for_a_year(domain);
    world.write("/srv/tls.crt", &certificate);
    world.write("/srv/tls.key", &key);
    (certificate, key)
}

fn install_with_pair(world: &World, domain: &str) -> assert_cmd::assert::Assert {
    let certificate = world.path("/srv/tls.crt");
    let key = world.path("/srv/tls.key");
    world
        .command()
        .args(["install", "--domain", domain, "--output", "json"])
        .arg("--ssl-cert")
        .arg(certificate)
        .arg("--ssl-key")
        .arg(key)
        .assert()
}

#[test]
fn a_new_certificate_applies_exactly_the_tls_secrets_and_the_gateway() {
    let (world, _releases) = cluster_world();
    write_pair(&world, DOMAIN);
    install_with_pair(&world, DOMAIN).success();
    world.clear_calls();
    write_pair(&world, DOMAIN);
    let run = install_with_pair(&world, DOMAIN).success();
    let calls = world.calls();
    assert_eq!(
        applied(&calls),
        [
            "Secret/istio-system/stackbill-tls-secret",
            "Secret/sb-apps/stackbill-tls-secret",
            "Gateway/sb-apps/stackbill-gateway",
        ]
    );
    assert_eq!(mutating(&calls).len(), 3, "{:?}", mutating(&calls));
    let results = outcomes(&run);
    assert_eq!(
        (results["tls"].as_str(), results["gateway"].as_str()),
        ("changed", "changed")
    );
    assert_eq!(results["namespace"], "already-done");
}

#[test]
fn a_new_domain_applies_the_gateway_and_virtual_service_only() {
    let (world, _releases) = cluster_world();
    write_pair(&world, "*.example.com");
    install_with_pair(&world, "one.example.com").success();
    world.clear_calls();
    install_with_pair(&world, "two.example.com").success();
    let calls = world.calls();
    assert_eq!(
        applied(&calls),
        [
            "Gateway/sb-apps/stackbill-gateway",
            "VirtualService/sb-apps/stackbill-vs"
        ]
    );
    assert_eq!(mutating(&calls).len(), 2);
    for call in calls
        .iter()
        .filter(|c| c.args.first().is_some_and(|a| a == "apply"))
    {
        assert!(
            call.stdin.contains("\"two.example.com\"") && !call.stdin.contains("one.example.com"),
            "{}",
            call.stdin
        );
    }
}

#[test]
fn the_tls_key_appears_in_no_argv_output_or_log() {
    let (world, _releases) = cluster_world();
    let (_, key) = write_pair(&world, DOMAIN);
    let first = install_with_pair(&world, DOMAIN).success();
    let plan = world
        .command()
        .args(["install", "--domain", DOMAIN, "--plan", "--redo", "tls"])
        .arg("--ssl-cert")
        .arg(world.path("/srv/tls.crt"))
        .arg("--ssl-key")
        .arg(world.path("/srv/tls.key"))
        .assert()
        .success();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let needles: Vec<String> = key
        .lines()
        .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        .map(String::from)
        .chain([body.clone(), base64_of(&key)])
        .collect();
    let mut haystacks = vec![stdout(&first), stderr(&first), stdout(&plan), stderr(&plan)];
    for call in world.calls() {
        haystacks.extend(call.args.iter().cloned());
        haystacks.extend(call.env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    for (path, bytes) in world.files(true) {
        if path.starts_with("/var/log/") || path.starts_with("/var/lib/stackinstall/") {
            haystacks.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    for needle in &needles {
        assert!(
            !haystacks.iter().any(|text| text.contains(needle.as_str())),
            "the key leaked"
        );
    }
    let secret_applies: Vec<Call> = world
        .calls()
        .into_iter()
        .filter(|c| c.stdin.contains("tls.key"))
        .collect();
    assert_eq!(secret_applies.len(), 2);
    for call in &secret_applies {
        assert!(
            call.args.contains(&"--server-side".to_string()),
            "no last-applied copy of the key: {:?}",
            call.args
        );
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_tampered_download_is_refused() {
    let (world, releases) = cluster_world();
    releases.put("/k3s/v1.29.0+k3s1/k3s", b"#!/bin/sh\necho owned\n".to_vec());
    let run = world.install(&[]).failure();
    let error = stderr(&run);
    assert!(
        error.contains("does not match its published SHA-256 sum") && error.contains("`k3s`"),
        "{error}"
    );
    assert!(
        !world.path("/usr/local/bin/k3s").exists(),
        "a file that fails its sum is not installed"
    );
    assert!(!world.calls().iter().any(|c| c.program == "k3s-install"));
}

#[test]
fn a_download_that_does_not_match_its_pin_is_refused() {
    let (world, releases) = cluster_world();
    // The origin serves another archive and a sum that agrees with it: only
    // the pin tells them apart.
    let tampered = b"not the helm the profile pinned".to_vec();
    let tampered_sum = support::sha256(&tampered);
    releases.put(
        &format!("{}.sha256sum", support::HELM_FILE),
        format!("{tampered_sum}  helm-v3.14.2-linux-amd64.tar.gz\n").into_bytes(),
    );
    releases.put(support::HELM_FILE, tampered);
    let run = world.install(&["--only", "k3s", "--only", "helm"]).code(1);
    let error = stderr(&run);
    assert!(
        error.contains("`helm-v3.14.2-linux-amd64.tar.gz`")
            && error.contains("does not match its pinned SHA-256")
            && error.contains(&format!("got {tampered_sum}"))
            && error.contains("expected "),
        "{error}"
    );
    assert!(
        !world.path("/usr/local/bin/helm").exists(),
        "nothing is installed from a file that fails its pin"
    );
    crate::support::report("pins: 1 download that did not match its pin refused");
}

#[test]
fn unpinned_files_are_named_loudly_in_the_plan_and_the_run() {
    let (world, _releases) = cluster_world();
    let plan = stdout(&world.install(&["--plan"]).success());
    let unpinned: Vec<&str> = plan
        .lines()
        .filter(|line| line.contains("WARNING: not pinned"))
        .collect();
    assert_eq!(unpinned.len(), 2, "the K3s binary and its script:\n{plan}");
    assert!(plan.contains("pin `k3s/v1.29.0+k3s1/install.sh`"), "{plan}");
    assert!(
        plan.contains("checked against pinned SHA-256")
            && plan.contains("from the tests' release server"),
        "the plan shows the pinned digest and its source:\n{plan}"
    );
    let run = stderr(&world.install(&["--only", "k3s"]).success());
    let warnings = run
        .lines()
        .filter(|line| line.contains("warning:") && line.contains("not pinned"))
        .count();
    assert_eq!(warnings, 2, "{run}");
    crate::support::report(&format!(
        "pins: {} unpinned files warned in the plan, {warnings} in the run",
        unpinned.len()
    ));
}

#[test]
fn require_pins_refuses_unpinned_files_before_anything_changes() {
    let (mut world, releases) = cluster_world();
    world.set_env("STACKINSTALL_DOWNLOADS__REQUIRE_PINS", "true");
    let before = world.files(true);
    let run = world.install(&[]).code(2);
    let error = stderr(&run);
    assert!(
        error.contains("require_pins")
            && error.contains("`k3s/v1.29.0+k3s1/k3s`")
            && error.contains("`k3s/v1.29.0+k3s1/install.sh`"),
        "{error}"
    );
    assert_eq!(world.files(true), before, "nothing changed under the root");
    assert!(releases.requests().is_empty(), "nothing was downloaded");
    assert!(world.calls().is_empty(), "nothing was run");
}

#[test]
fn an_http_download_url_is_refused() {
    let (mut world, releases) = cluster_world();
    world.set_env(
        "STACKINSTALL_DOWNLOADS__K3S",
        "http://releases.example.com/k3s/{version}",
    );
    let before = world.files(true);
    let run = world.install(&[]).code(2);
    let error = stderr(&run);
    assert!(
        error.contains("downloads.k3s") && error.contains("https://"),
        "{error}"
    );
    assert_eq!(world.files(true), before, "nothing changed under the root");
    assert!(releases.requests().is_empty());
}

/// A K3s "binary" of about 2 MiB: the fake's script, then comment lines.
fn large_k3s() -> Vec<u8> {
    let mut binary = format!("{K3S_BINARY}exit 0\n").into_bytes();
    while binary.len() < 2 * 1024 * 1024 {
        binary.extend_from_slice(b"# padding: a download large enough to show its progress\n");
    }
    binary
}

#[test]
fn a_download_shows_bytes_rate_and_time_left_on_a_terminal_and_plain_lines_otherwise() {
    let (world, releases) = cluster_world();
    let binary = large_k3s();
    let sums = format!("{}  k3s\n", support::sha256(&binary));
    releases.put("/k3s/v1.29.0+k3s1/sha256sum-amd64.txt", sums.into_bytes());
    releases.put("/k3s/v1.29.0+k3s1/k3s", binary);
    releases.slow_down();

    // A real pseudo-terminal: the step's line becomes the download's.
    let mut command = world.std_command();
    command.env_remove("NO_COLOR").env("TERM", "xterm").args([
        "install",
        "--domain",
        DOMAIN,
        "--self-signed",
        "--only",
        "k3s",
        "--yes",
    ]);
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session.exp_string("downloading k3s: ").unwrap();
    let (_, shown) = session
        .exp_regex(r"MiB of [0-9.]+ MiB at [0-9.]+ [KMG]?i?B/s, [0-9]+s left")
        .unwrap();
    session.exp_string("downloaded k3s: 2.0 MiB in").unwrap();
    session.exp_eof().unwrap();
    assert!(world.path("/usr/local/bin/k3s").exists());

    // No terminal: plain lines, no progress bar.
    let plain_world = cluster_world();
    let plain = stderr(&plain_world.0.install(&["--only", "k3s"]).success());
    assert!(plain.contains("      k3s: downloading k3s ..."), "{plain}");
    assert!(plain.contains("      k3s: downloaded k3s: "), "{plain}");
    assert!(!plain.contains(" left"), "{plain}");
    crate::support::report(&format!(
        "download progress on a terminal: `{}`",
        shown.trim()
    ));
}

#[test]
fn another_k3s_version_is_reported_and_left_alone() {
    let (world, releases) = cluster_world();
    let other = "#!/bin/sh\necho 'k3s version v1.28.5+k3s1 (5b2d1271)'\n";
    world.write("/usr/local/bin/k3s", other);
    std::fs::set_permissions(
        world.path("/usr/local/bin/k3s"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let run = world.install(&[]).code(2);
    let error = stderr(&run);
    assert!(
        error.contains("K3s `v1.28.5+k3s1` is already installed"),
        "{error}"
    );
    assert!(error.contains("pins `v1.29.0+k3s1`"), "{error}");
    assert_eq!(world.read("/usr/local/bin/k3s"), other);
    assert!(
        !releases.requests().iter().any(|p| p.starts_with("/k3s")),
        "nothing was downloaded"
    );
}

#[test]
fn kubernetes_outside_istio_support_is_refused() {
    let (world, _releases) = cluster_world();
    world.configure(|config| config.kubernetes_minor = 30);
    let run = world.install(&[]).code(2);
    let error = stderr(&run);
    insta::assert_snapshot!("kubernetes_unsupported_error", error_report(&error));
    assert!(
        !world
            .calls()
            .iter()
            .any(|c| c.program == "istioctl" && c.args[0] == "install")
    );
}

/// An install of `k3s` (the pinned K3s) refused in preflight with `says`:
/// exit 2, nothing downloaded, nothing changed; the plan refuses it too.
fn refused_in_preflight(k3s: &str, says: &str) {
    let (mut world, releases) = cluster_world();
    world.set_env("STACKINSTALL_VERSIONS__K3S", k3s);
    let run = world.install(&[]).code(2);
    let error = stderr(&run);
    assert!(error.contains(says), "{k3s}: {error}");
    assert!(releases.requests().is_empty(), "{k3s}: nothing downloaded");
    assert!(
        mutating(&world.calls()).is_empty(),
        "{k3s}: nothing changed"
    );
    assert!(!world.path("/usr/local/bin/k3s").exists());
    let plan = world.install(&["--plan"]).code(2);
    assert!(stderr(&plan).contains(says), "{k3s}: the plan says it too");
}

#[test]
fn k3s_releases_whose_kubelet_crashes_with_the_credential_provider_are_refused_in_preflight() {
    for k3s in ["v1.28.0+k3s1", "v1.28.4+k3s2"] {
        refused_in_preflight(
            k3s,
            &format!(
                "K3s {k3s} cannot run this install: its kubelet crashes once the image credential provider's files exist (k3s-io/k3s issue 8941"
            ),
        );
    }
}

#[test]
fn istio_support_is_checked_against_the_pinned_k3s_before_anything_changes() {
    refused_in_preflight(
        "v1.30.0+k3s1",
        "Istio 1.20.3 does not support Kubernetes 1.30 (K3s v1.30.0+k3s1): it supports Kubernetes 1.25 to 1.29",
    );
    let (world, _releases) = cluster_world();
    let plan = world.install(&["--plan"]).success();
    let text = stdout(&plan);
    for check in [
        "K3s v1.29.0+k3s1 (Kubernetes 1.29) runs the kubelet's image credential provider",
        "Kubernetes 1.29 (K3s v1.29.0+k3s1) is supported by Istio 1.20.3 (1.25 to 1.29)",
    ] {
        assert!(text.contains(check), "the plan shows `{check}`: {text}");
    }
}

#[test]
fn skip_infra_fails_clearly_without_a_cluster_and_works_with_one() {
    let (world, releases) = cluster_world();
    let run = world.install(&["--skip-infra"]).code(2);
    let error = stderr(&run);
    insta::assert_snapshot!("skip_infra_without_k3s_error", error_report(&error));
    assert!(mutating(&world.calls()).is_empty());

    install_cluster_by_hand(&world);
    world.clear_calls();
    let run = world
        .install(&["--skip-infra", "--output", "json"])
        .success();
    let results = outcomes(&run);
    for step in ["k3s", "helm", "istio"] {
        assert_eq!(results[step], "skipped", "{step}");
    }
    assert_eq!(results["gateway"], "changed");
    assert!(
        releases.requests().is_empty(),
        "nothing downloaded with --skip-infra"
    );
}

/// A cluster that someone else installed: K3s running, istiod ready.
fn install_cluster_by_hand(world: &World) {
    world.start_k3s();
    world.put_object(serde_json::json!({ "kind": "Deployment",
        "metadata": { "name": "istiod", "namespace": "istio-system" }, "status": { "readyReplicas": 1 } }));
}

#[test]
fn skip_infra_without_istio_names_istio() {
    let (world, _releases) = cluster_world();
    world.start_k3s();
    let error = stderr(&world.install(&["--skip-infra"]).code(2));
    assert!(
        error.contains("--skip-infra was given, but Istio is not there"),
        "{error}"
    );
}

// The rendered files: what `render` writes and what the steps apply.

fn render(domain: &str) -> BTreeMap<String, String> {
    render_with(domain, &[])
}

/// What `render` writes, with extra environment variables.
fn render_with(domain: &str, environment: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut world = World::new();
    for (key, value) in environment {
        world.set_env(key, value);
    }
    let out = world.dir.path().join("out");
    world
        .command()
        .args(["render", "--domain", domain, "--out"])
        .arg(&out)
        .assert()
        .success();
    std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(entry.path()).unwrap(),
            )
        })
        .collect()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

#[test]
fn render_writes_every_cluster_manifest() {
    let files = render(DOMAIN);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "credential-provider-config.yaml",
            "data-stackbill.mount",
            "ecr-refresh.toml",
            "exports",
            "gateway.yaml",
            "istio-operator.yaml",
            "k3s-config.yaml",
            "mariadb-stackbill.cnf",
            "mongodb.conf",
            "mysql-stackbill.cnf",
            "namespace.yaml",
            "rabbitmq-enabled_plugins",
            "release-values.yaml",
            "stackinstall-ecr-refresh.service",
            "stackinstall-ecr-refresh.timer",
            "stackinstall.toml",
            "virtual-service.yaml"
        ],
        "one file each, every file the install writes or applies"
    );
    for name in [
        "gateway.yaml",
        "istio-operator.yaml",
        "namespace.yaml",
        "virtual-service.yaml",
    ] {
        insta::assert_snapshot!(name, files[name]);
    }
}

#[test]
fn gateway_serves_https_on_443_and_plain_http_on_80() {
    let gateway = yaml(&render(DOMAIN)["gateway.yaml"]);
    assert_eq!(gateway["spec"]["selector"]["istio"], "ingressgateway");
    let servers = gateway["spec"]["servers"].as_array().unwrap();
    let ports: Vec<u64> = servers
        .iter()
        .map(|s| s["port"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ports,
        [443, 80],
        "the Service ports, never the containers' 8443/8080"
    );
    let https = &servers[0];
    assert_eq!(https["port"]["protocol"], "HTTPS");
    assert_eq!(https["tls"]["mode"], "SIMPLE");
    assert_eq!(https["tls"]["credentialName"], "stackbill-tls-secret");
    assert!(
        servers[1]["tls"].is_null(),
        "no httpsRedirect: it would send clients to port 443"
    );
    for server in servers {
        assert_eq!(server["hosts"], serde_json::json!([DOMAIN]));
    }
}

/// The first rule of the VirtualService a request on the Gateway's
/// `port` for `path` matches (Istio takes the first match, in order).
fn first_rule<'a>(service: &'a Value, port: u64, path: &str) -> &'a Value {
    let matches = |condition: &Value| {
        condition["port"]
            .as_u64()
            .is_none_or(|wanted| wanted == port)
            && condition["uri"]["prefix"]
                .as_str()
                .is_none_or(|prefix| path.starts_with(prefix))
            && condition["uri"]["exact"]
                .as_str()
                .is_none_or(|exact| path == exact)
    };
    service["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| {
            rule["match"]
                .as_array()
                .is_none_or(|conditions| conditions.iter().any(matches))
        })
        .unwrap_or_else(|| panic!("no rule for port {port} {path}"))
}

/// Follows `http://DOMAIN:HTTP_NODE_PORT/portal` through the rendered
/// objects: the ingress Service's NodePort to its port, the Gateway server on
/// that port, the VirtualService's redirect; then the redirect's target to
/// the Service port and the HTTPS server it reaches. Returns the redirect's
/// port and the hops.
fn follow_http_request(files: &BTreeMap<String, String>) -> (u64, Vec<String>) {
    let overlay = yaml(&files["istio-operator.yaml"]);
    let gateway = yaml(&files["gateway.yaml"]);
    let service = yaml(&files["virtual-service.yaml"]);
    let ports = overlay["spec"]["components"]["ingressGateways"][0]["k8s"]["service"]["ports"]
        .as_array()
        .unwrap()
        .clone();
    let server_on = |port: u64| {
        gateway["spec"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|server| server["port"]["number"] == port)
            .unwrap_or_else(|| panic!("no Gateway server on Service port {port}"))
            .clone()
    };
    let mut hops = Vec::new();
    let http = ports.iter().find(|p| p["name"] == "http2").unwrap();
    let (node_port, port) = (
        http["nodePort"].as_u64().unwrap(),
        http["port"].as_u64().unwrap(),
    );
    hops.push(format!(
        "http://{DOMAIN}:{node_port}/portal -> Service port {port}"
    ));
    let server = server_on(port);
    assert_eq!(server["port"]["protocol"], "HTTP");
    assert!(
        server["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == DOMAIN)
    );
    assert_eq!(service["spec"]["gateways"][0], gateway["metadata"]["name"]);
    assert_eq!(service["spec"]["hosts"], serde_json::json!([DOMAIN]));
    let redirect = &first_rule(&service, port, "/portal")["redirect"];
    assert_eq!(
        redirect["scheme"], "https",
        "the first rule on port 80 redirects"
    );
    assert!(redirect["authority"].is_null(), "the host stays the domain");
    let target = redirect["port"]
        .as_u64()
        .expect("the redirect names its port");
    hops.push(format!(
        "Gateway server {port} HTTP -> redirect https://{DOMAIN}:{target}/portal"
    ));
    (target, hops)
}

/// The Gateway server and VirtualService rule an HTTPS request reaches on
/// the ingress Service's `port`.
fn https_lands(files: &BTreeMap<String, String>, port: u64) -> String {
    let gateway = yaml(&files["gateway.yaml"]);
    let service = yaml(&files["virtual-service.yaml"]);
    let server = gateway["spec"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|server| server["port"]["number"] == port)
        .unwrap_or_else(|| panic!("no Gateway server on Service port {port}"));
    assert_eq!(server["port"]["protocol"], "HTTPS");
    assert_eq!(server["tls"]["mode"], "SIMPLE");
    let rule = first_rule(&service, port, "/portal");
    assert!(
        rule["redirect"].is_null(),
        "HTTPS is served, not redirected again"
    );
    let host = rule["route"][0]["destination"]["host"].as_str().unwrap();
    format!("Gateway server {port} HTTPS -> {host}")
}

#[test]
fn http_redirects_to_the_https_node_port_and_lands_on_the_https_server() {
    let files = render(DOMAIN);
    let (target, mut hops) = follow_http_request(&files);
    let overlay = yaml(&files["istio-operator.yaml"]);
    let ports = overlay["spec"]["components"]["ingressGateways"][0]["k8s"]["service"]["ports"]
        .as_array()
        .unwrap()
        .clone();
    let https = ports
        .iter()
        .find(|p| p["nodePort"] == target)
        .unwrap_or_else(|| panic!("the redirect's port {target} is no NodePort of the ingress"));
    assert_eq!(target, 31882, "the profile's HTTPS NodePort");
    let port = https["port"].as_u64().unwrap();
    hops.push(format!("https://{DOMAIN}:{target} -> Service port {port}"));
    hops.push(https_lands(&files, port));
    crate::support::report(&format!(
        "redirect followed, {} hops:\n  {}",
        hops.len(),
        hops.join("\n  ")
    ));
}

#[test]
fn with_public_https_port_443_the_redirect_and_the_summary_use_it() {
    let files = render_with(DOMAIN, &[("STACKINSTALL_ISTIO__PUBLIC_HTTPS_PORT", "443")]);
    let (target, mut hops) = follow_http_request(&files);
    assert_eq!(target, 443, "a load balancer or port mapping serves 443");
    hops.push(https_lands(&files, 443));
    crate::support::report(&format!(
        "redirect followed (public port 443), {} hops:\n  {}",
        hops.len(),
        hops.join("\n  ")
    ));
    assert!(files["stackinstall.toml"].contains("public_https_port = 443"));
    for (port, url) in [
        (None, format!("https://{DOMAIN}:31882/portal")),
        (Some("443"), format!("https://{DOMAIN}/portal")),
    ] {
        let mut world = World::new();
        world.set_env("STACKINSTALL_ONLY", "credentials,summary");
        if let Some(port) = port {
            world.set_env("STACKINSTALL_ISTIO__PUBLIC_HTTPS_PORT", port);
        }
        let done = world.install(&[]).success();
        let text = format!("{}{}", stdout(&done), stderr(&done));
        assert!(
            text.contains(&format!("  {url}\n")),
            "the summary's URL {url}:\n{text}"
        );
    }
}

/// Issue 24 item 8: `https://DOMAIN:31882/`, the README's URL, redirects
/// to the profile's home route, which a route serves; any other path is
/// not redirected.
#[test]
fn the_root_path_redirects_to_the_home_route() {
    let service = yaml(&render(DOMAIN)["virtual-service.yaml"]);
    let root = first_rule(&service, 443, "/");
    assert_eq!(root["name"], "home-redirect");
    let home = root["redirect"]["uri"].as_str().unwrap();
    assert_eq!(home, "/portal", "the profile's `[istio] home`");
    assert!(
        root["redirect"]["authority"].is_null() && root["redirect"]["port"].is_null(),
        "the same host and port"
    );
    let landed = first_rule(&service, 443, home);
    assert_eq!(
        landed["route"][0]["destination"]["host"],
        "sb-ui.sb-apps.svc.cluster.local"
    );
    let other = first_rule(&service, 443, "/admin/x");
    assert!(other["redirect"].is_null(), "{other}");
    crate::support::report(&format!(
        "routes: https://{DOMAIN}:31882/ -> {home} -> sb-ui:80; /admin/x routed, not redirected"
    ));
}

#[test]
fn virtual_service_routes_to_service_ports_without_subsets() {
    let service = yaml(&render(DOMAIN)["virtual-service.yaml"]);
    assert_eq!(service["spec"]["hosts"], serde_json::json!([DOMAIN]));
    assert_eq!(
        service["spec"]["gateways"],
        serde_json::json!(["stackbill-gateway"])
    );
    let expected = [
        ("/admin", "sb-admin", 80),
        ("/portal", "sb-ui", 80),
        ("/api", "sb-kong", 8000),
        ("/core", "sb-core", 8080),
    ];
    let routes = &service["spec"]["http"].as_array().unwrap()[2..];
    assert_eq!(
        routes.len(),
        expected.len(),
        "the redirects (HTTP, then `/`), then the routes"
    );
    for (route, (prefix, name, port)) in routes.iter().zip(expected) {
        assert_eq!(route["match"][0]["uri"]["prefix"], prefix);
        let destination = &route["route"][0]["destination"];
        assert_eq!(
            destination["host"],
            format!("{name}.sb-apps.svc.cluster.local")
        );
        assert_eq!(
            destination["port"]["number"], port,
            "{prefix}: the Service's port from the profile"
        );
        assert!(
            destination.get("subset").is_none(),
            "{prefix}: no subset without a selecting label"
        );
    }
}

#[test]
fn istio_overlay_maps_the_profile_node_ports() {
    let overlay = yaml(&render(DOMAIN)["istio-operator.yaml"]);
    assert_eq!(overlay["kind"], "IstioOperator");
    assert_eq!(overlay["spec"]["profile"], "demo");
    let service = &overlay["spec"]["components"]["ingressGateways"][0]["k8s"]["service"];
    assert_eq!(service["type"], "NodePort");
    let ports: Vec<(u64, u64)> = service["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["port"].as_u64()?, p["nodePort"].as_u64()?)))
        .collect();
    assert_eq!(ports, [(80, 31443), (443, 31882)]);
}

#[test]
fn namespace_has_injection_and_helm_ownership() {
    let namespace = yaml(&render(DOMAIN)["namespace.yaml"]);
    let metadata = &namespace["metadata"];
    assert_eq!(metadata["name"], "sb-apps");
    assert_eq!(metadata["labels"]["istio-injection"], "enabled");
    assert_eq!(metadata["labels"]["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(
        metadata["annotations"]["meta.helm.sh/release-name"],
        "stackbill"
    );
    assert_eq!(
        metadata["annotations"]["meta.helm.sh/release-namespace"],
        "sb-apps"
    );
}

// The `storage` step and what `wait` makes of PVCs and Jobs, in the fake
// cluster (`tests/fakes/src/programs/cluster.rs` computes PVC phases, Job
// runs and pods).

fn helm_upgrades(world: &World) -> Vec<Call> {
    world
        .calls()
        .into_iter()
        .filter(|c| c.program == "helm" && c.args.first().is_some_and(|a| a == "upgrade"))
        .collect()
}

/// A cluster world with K3s, Helm, Istio and the namespace installed.
fn installed_cluster(host_ip: &str) -> World {
    installed_cluster_serving(host_ip).0
}

/// `installed_cluster`, with the server of its release files.
fn installed_cluster_serving(host_ip: &str) -> (World, support::Releases) {
    let (mut world, releases) = cluster_world();
    world.set_env("STACKINSTALL_CLUSTER__HOST_IP", host_ip);
    world.set_env("STACKINSTALL_WAIT__POLL_MILLISECONDS", "100");
    world
        .install(&[
            "--only",
            "k3s",
            "--only",
            "helm",
            "--only",
            "istio",
            "--only",
            "namespace",
        ])
        .success();
    world.clear_calls();
    (world, releases)
}

/// The application's PVC on the profile's StorageClass and a pod mounting it.
fn application_with_a_claim(world: &World) {
    world.put_object(serde_json::json!({ "kind": "PersistentVolumeClaim",
        "metadata": { "name": "sb-data", "namespace": "sb-apps" },
        "spec": { "storageClassName": "nfs-client" } }));
    world.set_pods(&serde_json::json!({ "items": [{ "metadata": { "name": "sb-core-1" },
        "spec": { "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "sb-data" } }] },
        "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } }] }));
}

#[test]
fn storage_installs_the_pinned_provisioner_where_no_storage_class_is_and_then_changes_nothing() {
    let world = installed_cluster("10.1.2.3");
    let first = world
        .install(&["--only", "storage", "--output", "json"])
        .success();
    assert_eq!(outcomes(&first)["storage"], "changed", "{}", stderr(&first));
    let upgrades = helm_upgrades(&world);
    assert_eq!(upgrades.len(), 1, "one helm upgrade");
    let chart =
        world.path("/var/lib/stackinstall/downloads/nfs-subdir-external-provisioner-4.0.18.tgz");
    let args = upgrades[0].args.join(" ");
    for expected in [
        "upgrade --install --namespace kube-system".into(),
        "--set-string nfs.server=10.1.2.3 --set-string nfs.path=/data/stackbill --set-string storageClass.name=nfs-client --set storageClass.archiveOnDelete=true".into(),
        format!("--wait --timeout 300s -- nfs-subdir-external-provisioner {}", chart.display()),
    ] {
        assert!(args.contains(&expected), "{expected} in {args}");
    }
    let seen =
        std::fs::read_to_string(world.state("helm/nfs-subdir-external-provisioner.chart-sha256"))
            .unwrap();
    assert_eq!(
        seen.trim(),
        support::provisioner_chart_sha256(),
        "Helm got the checked chart"
    );
    assert!(
        !chart.exists(),
        "the chart file is removed once Helm is done"
    );
    let class = world
        .object("storageclass", "", "nfs-client")
        .expect("the StorageClass");
    assert_eq!(class["parameters"]["archiveOnDelete"], "true");
    let deployment = world.object(
        "deployment",
        "kube-system",
        "nfs-subdir-external-provisioner",
    );
    assert_eq!(deployment.unwrap()["status"]["availableReplicas"], 1);

    world.clear_calls();
    let second = world
        .install(&["--only", "storage", "--output", "json"])
        .success();
    assert_eq!(outcomes(&second)["storage"], "already-done");
    assert!(helm_upgrades(&world).is_empty(), "nothing installed again");
}

#[test]
fn a_tampered_provisioner_chart_is_refused_before_helm_runs() {
    let (world, releases) = installed_cluster_serving("10.1.2.3");
    let plan = stdout(&world.install(&["--only", "storage", "--plan"]).success());
    assert!(
        plan.contains(&format!(
            "checked against pinned SHA-256 {} from the tests' release server",
            support::provisioner_chart_sha256()
        )),
        "the plan shows the chart's pin from [downloads.pins]:\n{plan}"
    );
    let tampered = b"a provisioner chart with a root-owned DaemonSet added\n".to_vec();
    let actual = support::sha256(&tampered);
    releases.put(support::PROVISIONER_CHART, tampered);
    let failed = world.install(&["--only", "storage"]).code(1);
    let text = stderr(&failed);
    for expected in [
        "`nfs-subdir-external-provisioner-4.0.18.tgz`".to_string(),
        "does not match its pinned SHA-256".into(),
        format!("expected {}", support::provisioner_chart_sha256()),
        format!("got {actual}"),
        "nothing was installed".into(),
    ] {
        assert!(text.contains(&expected), "{expected} in:\n{text}");
    }
    assert!(helm_upgrades(&world).is_empty(), "helm never saw the chart");
    assert!(world.object("storageclass", "", "nfs-client").is_none());
    assert!(
        !world
            .path("/var/lib/stackinstall/downloads/nfs-subdir-external-provisioner-4.0.18.tgz")
            .exists()
    );

    // A version without a pin is named loudly; with `require_pins`, refused.
    let mut world = world;
    world.set_env("STACKINSTALL_STORAGE__VERSION", "4.0.17");
    let unpinned =
        "nfs-subdir-external-provisioner/4.0.17/nfs-subdir-external-provisioner-4.0.17.tgz";
    let plan = stdout(&world.install(&["--only", "storage", "--plan"]).success());
    assert!(
        plan.contains("WARNING: not pinned") && plan.contains(&format!("pin `{unpinned}`")),
        "{plan}"
    );
    world.set_env("STACKINSTALL_DOWNLOADS__REQUIRE_PINS", "true");
    let refused = stderr(&world.install(&["--only", "storage"]).code(2));
    assert!(
        refused.contains("require_pins") && refused.contains(unpinned),
        "{refused}"
    );
    assert!(helm_upgrades(&world).is_empty());
}

#[test]
fn a_storage_class_someone_else_installed_is_left_as_it_is() {
    let world = installed_cluster("10.1.2.3");
    let theirs = serde_json::json!({ "kind": "StorageClass", "metadata": { "name": "nfs-client" },
        "provisioner": "example.com/their-nfs", "parameters": { "archiveOnDelete": "false" } });
    world.put_object(theirs.clone());
    let plan = world.install(&["--only", "storage", "--plan"]).success();
    assert!(
        stdout(&plan).contains("StorageClass `nfs-client` is already in the cluster, not installed by stackinstall: left as it is"),
        "{}",
        stdout(&plan)
    );
    world.install(&["--only", "storage"]).success();
    assert!(helm_upgrades(&world).is_empty());
    assert_eq!(
        world.object("storageclass", "", "nfs-client").unwrap(),
        theirs
    );
}

#[test]
fn wait_names_the_missing_storage_class_of_a_pending_pvc_until_storage_provides_it() {
    let mut world = installed_cluster("10.1.2.3");
    world.set_env("STACKINSTALL_WAIT__TIMEOUT_SECONDS", "1");
    application_with_a_claim(&world);
    let stuck = world.install(&["--only", "wait"]).code(1);
    let report = error_report(&stderr(&stuck));
    for expected in [
        "0/1 pods are Ready, 1 PVCs not bound in `sb-apps` after 1s",
        "sb-core-1: Pending (0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.)",
        "pvc/sb-data: Pending: its StorageClass `nfs-client` does not exist, so no volume is ever made for it",
        "-> the StorageClass comes from the `storage` step: `sudo stackinstall install --redo storage`",
    ] {
        assert!(report.contains(expected), "{expected} in:\n{report}");
    }
    world.install(&["--only", "storage"]).success();
    world.install(&["--only", "wait"]).success();
    crate::support::report(
        "pending PVC: the wait named StorageClass `nfs-client` as the cause; after `storage` the PVC bound and the wait passed",
    );
}

/// A Job of the application that exits with `code` and logs `log`.
fn job(world: &World, name: &str, code: u8, log: &str) {
    let job = serde_json::json!({ "kind": "Job", "metadata": { "name": name, "namespace": "sb-apps",
        "annotations": { "fake.stackinstall/exit-code": code.to_string(), "fake.stackinstall/log": log } },
        "spec": { "backoffLimit": 0, "template": { "spec": { "containers": [{ "name": name }] } } } });
    world.put_object(job);
}

#[test]
fn wait_judges_jobs_by_their_condition_and_names_a_failed_one_with_its_log() {
    let mut world = installed_cluster("10.1.2.3");
    job(&world, "sb-migrate", 0, "schema up to date");
    let plan = world.install(&["--only", "wait", "--plan"]).success();
    assert!(
        !stdout(&plan).contains("wait until the pods"),
        "a Complete Job leaves nothing to wait for:\n{}",
        stdout(&plan)
    );
    world.install(&["--only", "wait"]).success();

    job(
        &world,
        "sb-seed",
        1,
        "seeding tenants\nerror: table `tenants` is missing\nseed aborted",
    );
    let failed = world.install(&["--only", "wait"]).code(1);
    let report = error_report(&stderr(&failed));
    for expected in [
        "job/sb-seed in `sb-apps` failed",
        "job/sb-seed: Failed (BackoffLimitExceeded: Job has reached the specified backoff limit); the end of pod sb-seed-fake0's log:",
        "      | error: table `tenants` is missing\n      | seed aborted",
        "-> `kubectl logs -n sb-apps job/sb-seed` for its whole log",
    ] {
        assert!(report.contains(expected), "{expected} in:\n{report}");
    }
    assert!(
        !report.contains("sb-migrate"),
        "a Complete Job is fine:\n{report}"
    );

    // Istio without native sidecars: the Job's pod never finishes.
    world.delete_object("job", "sb-apps", "sb-seed");
    let mut istiod = world
        .object("deployment", "istio-system", "istiod")
        .unwrap();
    istiod["spec"]["template"]["spec"]["containers"][0]["env"] = serde_json::json!([]);
    world.put_object(istiod);
    world.set_env("STACKINSTALL_WAIT__TIMEOUT_SECONDS", "1");
    let hangs = world.install(&["--only", "wait"]).code(1);
    let report = error_report(&stderr(&hangs));
    assert!(report.contains("job/sb-migrate: not finished: pod sb-migrate-fake0's container has exited but `istio-proxy` keeps the pod running"), "{report}");
    assert!(
        report.contains("`sudo stackinstall install --redo istio`"),
        "{report}"
    );
    world.install(&["--only", "istio"]).success();
    world.install(&["--only", "wait"]).success();
    crate::support::report(
        "jobs: 3 variants (succeeding, failing with its log, held open by a classic istio-proxy until istio put native sidecars back)",
    );
}

#[test]
fn with_the_provisioner_in_the_chart_storage_only_defers_and_wait_checks_the_class() {
    let mut world = installed_cluster("10.1.2.3");
    world.set_env("STACKINSTALL_STORAGE__PROVISIONER_IN_CHART", "true");
    world.set_env("STACKINSTALL_WAIT__TIMEOUT_SECONDS", "1");
    let plan = world.install(&["--only", "storage", "--plan"]).success();
    assert!(
        stdout(&plan).contains("comes with the application chart (`[storage] provisioner_in_chart`): `wait` checks it after the release"),
        "{}",
        stdout(&plan)
    );
    world.install(&["--only", "storage"]).success();
    assert!(helm_upgrades(&world).is_empty(), "no provisioner installed");

    application_with_a_claim(&world);
    let stuck = world.install(&["--only", "wait"]).code(1);
    let report = error_report(&stderr(&stuck));
    assert!(
        report.contains("pvc/sb-data: Pending: its StorageClass `nfs-client` does not exist")
            && report.contains("the application chart brings the provisioner"),
        "{report}"
    );
    // What the chart's own provisioner makes.
    let class = serde_json::json!({ "kind": "StorageClass", "metadata": { "name": "nfs-client" },
        "provisioner": "cluster.local/the-charts-nfs" });
    world.put_object(class);
    world.install(&["--only", "wait"]).success();
}

#[test]
fn an_install_script_left_by_a_killed_run_is_removed_by_the_next() {
    let (world, _releases) = cluster_world();
    world.install(&[]).success();
    let leftover = "/var/lib/stackinstall/downloads/k3s-install.sh";
    // Where a run killed between the script and its removal leaves it,
    // before the step's checkpoint (`--redo`: the step looks again).
    world.write(leftover, "#!/bin/sh\nexec k3s-install \"$@\"\n");
    world.install(&["--redo", "k3s"]).success();
    assert!(
        !world.path(leftover).exists(),
        "the leftover script is removed"
    );
    crate::support::report("k3s: 1 install script left by a killed run removed by the next run");
}

// ----------------------------- K3s's configuration file (issue 23, item 3) --

const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";

/// The K3s world installed with `--only k3s`, calls cleared.
fn k3s_installed() -> (World, support::Releases) {
    let (world, releases) = cluster_world();
    world.install(&["--only", "k3s"]).success();
    world.clear_calls();
    (world, releases)
}

/// K3s's configuration file, parsed.
fn k3s_config(world: &World) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&world.read(K3S_CONFIG)).unwrap()
}

fn k3s_restarts(world: &World) -> usize {
    (world.lines_of("systemctl").iter())
        .filter(|line| line.starts_with("systemctl restart k3s"))
        .count()
}

#[test]
fn every_cluster_setting_reaches_k3s_and_a_change_converges_with_one_restart() {
    let (mut world, _releases) = k3s_installed();
    let config = k3s_config(&world);
    assert_eq!(config["cluster-cidr"], "10.42.0.0/16");
    assert_eq!(config["service-cidr"], "10.43.0.0/16");
    assert_eq!(config["https-listen-port"], 6443);
    assert_eq!(config["write-kubeconfig-mode"], "0600");
    let disabled: Vec<&str> = (config["disable"].as_sequence().unwrap().iter())
        .filter_map(|value| value.as_str())
        .collect();
    assert_eq!(disabled, ["traefik", "servicelb"]);
    assert_eq!(
        std::fs::read_to_string(world.state("k3s-config")).unwrap(),
        world.read(K3S_CONFIG),
        "K3s started with the file"
    );

    world.set_env("STACKINSTALL_CLUSTER__API_PORT", "7443");
    world.set_env(
        "STACKINSTALL_CLUSTER__TLS_SAN",
        "[\"api.example.com\", \"192.0.2.7\"]",
    );
    let plan = stdout(&world.install(&["--plan", "--only", "k3s"]).success());
    assert!(plan.contains(&format!("write {K3S_CONFIG}")), "{plan}");
    assert_eq!(
        plan.matches("systemctl restart k3s").count(),
        1,
        "the plan announces one restart: {plan}"
    );
    assert!(
        plan.contains("until `k3s` is restarted"),
        "the restart is recorded as pending first: {plan}"
    );
    let run = world.install(&["--only", "k3s"]).success();
    assert_eq!(k3s_restarts(&world), 1, "{}", stderr(&run));
    let config = k3s_config(&world);
    assert_eq!(config["https-listen-port"], 7443);
    assert_eq!(
        config["tls-san"],
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[api.example.com, 192.0.2.7]").unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(world.state("k3s-config")).unwrap(),
        world.read(K3S_CONFIG),
        "the restarted K3s read the new file"
    );
    for kubeconfig in ["/etc/rancher/k3s/k3s.yaml", "/root/.kube/config"] {
        assert!(
            world
                .read(kubeconfig)
                .contains("server: https://127.0.0.1:7443"),
            "{kubeconfig} names the new port"
        );
    }
    world.clear_calls();
    let again = world
        .install(&["--only", "k3s", "--output", "json"])
        .success();
    assert_eq!(outcomes(&again)["k3s"], "already-done");
    assert_eq!(k3s_restarts(&world), 0, "a re-run restarts nothing");
}

#[test]
fn a_config_file_rewritten_by_a_killed_run_restarts_k3s_on_the_next() {
    let (world, _releases) = k3s_installed();
    let wanted = world.read(K3S_CONFIG);
    // Changed by hand, and K3s restarted with it: the step's verification
    // finds the file is not the profile's, so the next run rewrites it.
    let edited = wanted.replace("https-listen-port: 6443", "https-listen-port: 7443");
    assert_ne!(edited, wanted, "{wanted}");
    world.write(K3S_CONFIG, &edited);
    std::fs::write(world.state("k3s-config"), &edited).unwrap();
    let point = "k3s: write config.yaml: renamed #1";
    world.install_killed_at(point, &["--only", "k3s"]);
    assert_eq!(
        world.read(K3S_CONFIG),
        wanted,
        "the killed run wrote the file"
    );
    assert_eq!(k3s_restarts(&world), 0, "killed before the restart");

    // The file is right, but K3s still runs with the hand-made one.
    let rerun = world.install(&["--only", "k3s"]).success();
    assert_eq!(k3s_restarts(&world), 1, "{}", stderr(&rerun));
    assert_eq!(
        std::fs::read_to_string(world.state("k3s-config")).unwrap(),
        wanted,
        "K3s started with the profile's file"
    );
    world.clear_calls();
    world.install(&["--only", "k3s"]).success();
    assert_eq!(k3s_restarts(&world), 0, "the third run restarted it again");
    crate::support::report(&format!(
        "k3s: a run killed at `{point}` after a hand edit; the next run restarted K3s once, the one after that not again"
    ));
}

#[test]
fn a_change_of_the_cluster_networks_is_refused_before_anything_changes() {
    let (mut world, releases) = k3s_installed();
    let before = world.read(K3S_CONFIG);
    let requests = releases.requests().len();
    for (variable, says) in [
        (
            "STACKINSTALL_CLUSTER__POD_CIDR",
            "`[cluster] pod_cidr` is 10.50.0.0/16, but the K3s on this host made its cluster with cluster-cidr 10.42.0.0/16: K3s cannot change a cluster's cluster-cidr once the cluster is made",
        ),
        (
            "STACKINSTALL_CLUSTER__SERVICE_CIDR",
            "`[cluster] service_cidr` is 10.50.0.0/16, but the K3s on this host made its cluster with service-cidr 10.43.0.0/16",
        ),
    ] {
        world.set_env(variable, "10.50.0.0/16");
        for args in [vec![], vec!["--plan"]] {
            let run = world.install(&args).code(2);
            let error = stderr(&run);
            assert!(error.contains(says), "{error}");
            assert!(error.contains("hint: set `[cluster]"), "{error}");
        }
        world.unset_env(variable);
    }
    assert_eq!(world.read(K3S_CONFIG), before);
    assert!(mutating(&world.calls()).is_empty(), "nothing changed");
    assert_eq!(k3s_restarts(&world), 0);
    assert_eq!(releases.requests().len(), requests, "nothing downloaded");
}

/// Issue 24 item 6: `--skip-infra` installs into the operator's cluster
/// with its kubeconfig (`--kubeconfig`, else `KUBECONFIG`), says which,
/// records it, and `status`, `doctor` and `uninstall` after it use the
/// recorded one; children no longer always get K3s's.
#[test]
fn skip_infra_uses_the_operators_kubeconfig_and_records_it() {
    let (world, _releases) = cluster_world();
    install_cluster_by_hand(&world);
    let kubeconfig = world.dir.path().join("operators-cluster.yaml");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").unwrap();
    let shown = kubeconfig.display().to_string();
    let cluster_calls = |world: &World| -> Vec<Call> {
        (world.calls().into_iter())
            .filter(|call| ["kubectl", "helm", "istioctl"].contains(&call.program.as_str()))
            .collect()
    };
    let wrong = |calls: &[Call]| -> Vec<String> {
        (calls.iter())
            .filter(|call| call.env.get("KUBECONFIG") != Some(&shown))
            .map(|call| format!("{} ({:?})", call.line(), call.env.get("KUBECONFIG")))
            .collect()
    };

    let refused = world.install(&["--kubeconfig", &shown]).code(2);
    assert!(
        stderr(&refused).contains("--kubeconfig is for --skip-infra"),
        "{}",
        stderr(&refused)
    );
    world.clear_calls();
    let plan = world
        .command()
        .env("KUBECONFIG", &shown)
        .args([
            "install",
            "--domain",
            DOMAIN,
            "--self-signed",
            "--skip-infra",
            "--plan",
        ])
        .assert()
        .success();
    assert!(
        stderr(&plan).contains(&format!("the kubeconfig `{shown}` (KUBECONFIG)")),
        "{}",
        stderr(&plan)
    );
    assert!(
        wrong(&cluster_calls(&world)).is_empty(),
        "{:?}",
        wrong(&cluster_calls(&world))
    );

    world.clear_calls();
    let run = world
        .install(&["--skip-infra", "--kubeconfig", &shown])
        .success();
    assert!(
        stderr(&run).contains(&format!("the kubeconfig `{shown}` (--kubeconfig)")),
        "{}",
        stderr(&run)
    );
    let mut checked = cluster_calls(&world).len();
    assert!(
        wrong(&cluster_calls(&world)).is_empty(),
        "{:?}",
        wrong(&cluster_calls(&world))
    );
    assert!(
        world
            .read("/var/lib/stackinstall/state.toml")
            .contains(&format!("kubeconfig = \"{shown}\"")),
        "recorded"
    );
    for args in [
        &["status"][..],
        &["doctor", "--output", "json"],
        &["uninstall", "--all", "--yes"],
    ] {
        world.clear_calls();
        let _ = world.command().args(args).assert();
        let calls = cluster_calls(&world);
        assert!(!calls.is_empty(), "{args:?} reads the cluster");
        assert!(wrong(&calls).is_empty(), "{args:?}: {:?}", wrong(&calls));
        checked += calls.len();
    }
    crate::support::report(&format!(
        "kubeconfig: --skip-infra with the operator's kubeconfig: plan (KUBECONFIG), install (--kubeconfig), status, doctor and uninstall (recorded): {checked} cluster calls, all with it"
    ));
}
