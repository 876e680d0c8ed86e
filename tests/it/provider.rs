//! The kubelet's image credential provider: `stackinstall
//! ecr-credential-provider` against moto's real ECR (a request in, a
//! response of the API's shape out; another registry's image; no
//! credentials; a clock past the token's expiry), and its wiring by the
//! `k3s` step in the full fake world (in place before K3s starts, a re-run
//! changes nothing, a changed registry restarts K3s once, the plugin asked
//! exactly as the kubelet would, uninstall removes the link and config).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::support::{Call, World, full, report, servers, stderr, stdout};

const SERVER: &str = "730335576030.dkr.ecr.ap-south-1.amazonaws.com";
const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
const KEY_ID: &str = "AKIAPROVIDERTEST";
const SECRET_KEY: &str = "provider-test-secret-access-key-0123456789";
/// moto's token always expires at 2015-01-01T00:00:00Z.
const BEFORE_EXPIRY: &str = "2014-12-31T18:00:00Z";
const AFTER_EXPIRY: &str = "2015-01-01T06:00:00Z";
const CONFIG: &str = "/var/lib/rancher/credentialprovider/config.yaml";
const PLUGIN: &str = "/var/lib/rancher/credentialprovider/bin/stackinstall";

fn request(image: &str) -> String {
    serde_json::json!({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest", "image": image})
        .to_string()
}

/// The password in moto's token (base64 of `AWS:password`).
fn moto_password() -> String {
    let decoded = String::from_utf8(BASE64.decode(servers::moto_token()).unwrap()).unwrap();
    decoded.split_once(':').unwrap().1.to_string()
}

/// A world for the plugin alone: moto, no instance metadata, and AWS
/// credentials only if `with_profile` (a shared credentials file).
fn plugin_world(with_profile: bool) -> World {
    let mut world = World::new();
    world.set_env(
        "STACKINSTALL_REGISTRY__ENDPOINT_URL",
        &servers::setting("STACKINSTALL_TEST_ECR_ENDPOINT"),
    );
    world.set_env("AWS_EC2_METADATA_DISABLED", "true");
    let credentials = world.dir.path().join("aws-credentials");
    if with_profile {
        std::fs::write(
            &credentials,
            format!(
                "[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET_KEY}\n"
            ),
        )
        .unwrap();
    }
    world.set_env(
        "AWS_SHARED_CREDENTIALS_FILE",
        &credentials.display().to_string(),
    );
    let config = world.dir.path().join("no-aws-config");
    world.set_env("AWS_CONFIG_FILE", &config.display().to_string());
    world
}

fn ask(world: &World, image: &str) -> assert_cmd::assert::Assert {
    world
        .command()
        .arg("ecr-credential-provider")
        .write_stdin(request(image))
        .assert()
}

/// Checks `response` against the v1 `CredentialProviderResponse`: exactly
/// its fields, with their types and allowed values.
fn check_shape(response: &Value) -> Vec<String> {
    let fields: BTreeSet<&str> = response
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let allowed = BTreeSet::from([
        "apiVersion",
        "kind",
        "cacheKeyType",
        "cacheDuration",
        "auth",
    ]);
    assert!(fields.is_subset(&allowed), "unknown fields: {fields:?}");
    assert_eq!(response["apiVersion"], API_VERSION);
    assert_eq!(response["kind"], "CredentialProviderResponse");
    assert!(["Image", "Registry", "Global"].contains(&response["cacheKeyType"].as_str().unwrap()));
    let duration = response["cacheDuration"]
        .as_str()
        .expect("a duration string");
    let seconds = duration.strip_suffix('s').expect("Go duration in seconds");
    assert!(seconds.parse::<u64>().is_ok(), "{duration}");
    let auth = response["auth"].as_object().expect("auth is a map");
    let mut keys = Vec::new();
    for (key, value) in auth {
        let entry = value.as_object().expect("an AuthConfig");
        assert!(
            entry.keys().all(|k| k == "username" || k == "password"),
            "{entry:?}"
        );
        assert!(entry["username"].is_string() && entry["password"].is_string());
        keys.push(key.clone());
    }
    keys
}

#[test]
fn the_plugin_answers_a_kubelet_request_with_a_token_of_the_registry() {
    let mut world = plugin_world(true);
    world.set_env("STACKINSTALL_TEST_NOW", BEFORE_EXPIRY);
    let assert = ask(&world, &format!("{SERVER}/stackbill/core:1.4")).success();
    assert_eq!(stderr(&assert), "", "nothing on stderr when all is well");
    let response: Value = serde_json::from_str(&stdout(&assert)).unwrap();
    assert_eq!(check_shape(&response), [SERVER]);
    assert_eq!(response["cacheKeyType"], "Registry");
    // Six hours before the expiry, less the 30 minutes' margin.
    assert_eq!(response["cacheDuration"], "19800s");
    assert_eq!(response["auth"][SERVER]["username"], "AWS");
    assert_eq!(response["auth"][SERVER]["password"], moto_password());
    report(&format!(
        "provider: 1 request answered, cacheDuration {}, {} auth entry",
        response["cacheDuration"],
        response["auth"].as_object().unwrap().len()
    ));
}

#[test]
fn another_registrys_image_gets_an_empty_auth_without_asking_aws() {
    // No credentials at all: the answer must not need them.
    let world = plugin_world(false);
    let images = [
        "docker.io/library/nginx:1.25",
        "nginx",
        "registry.k8s.io/pause:3.9",
        &format!("{SERVER}.attacker.example/app:1"),
    ];
    for image in images {
        let assert = ask(&world, image).success();
        let response: Value = serde_json::from_str(&stdout(&assert)).unwrap();
        assert!(check_shape(&response).is_empty(), "{image}: {response}");
        assert_eq!(response["cacheDuration"], "0s");
    }
    report(&format!(
        "provider: {} images of other registries answered with an empty auth",
        images.len()
    ));
}

#[test]
fn without_credentials_the_plugin_fails_cleanly() {
    let world = plugin_world(false);
    let assert = ask(&world, &format!("{SERVER}/app:1")).failure();
    let text = stderr(&assert);
    assert!(
        text.starts_with("error: no AWS credentials were found"),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
    assert_eq!(stdout(&assert), "", "no response at all on failure");
    let garbage = world
        .command()
        .arg("ecr-credential-provider")
        .write_stdin("{\"kind\": \"Pod\"}")
        .assert()
        .failure();
    assert!(
        stderr(&garbage).contains("not a `CredentialProviderRequest`"),
        "{}",
        stderr(&garbage)
    );
    report("provider: 2 failures (no credentials, wrong request) exit non-zero with a clean error");
}

#[test]
fn a_clock_past_the_expiry_gives_credentials_that_are_not_cached() {
    let mut world = plugin_world(true);
    world.set_env("STACKINSTALL_TEST_NOW", AFTER_EXPIRY);
    let assert = ask(&world, &format!("{SERVER}/app:1")).success();
    let response: Value = serde_json::from_str(&stdout(&assert)).unwrap();
    assert_eq!(check_shape(&response), [SERVER]);
    assert_eq!(response["cacheDuration"], "0s");
    let warning = stderr(&assert);
    assert!(warning.contains("not cached"), "{warning}");
    for secret in [moto_password().as_str(), SECRET_KEY] {
        assert!(!warning.contains(secret), "a secret on stderr: {warning}");
    }
    report("provider: expired clock answered with cacheDuration 0s, no secret on stderr");
}

/// The full world with only the steps the provider involves, and the AWS
/// key as a profile in the host's `/root/.aws` (what the kubelet reads).
fn wired_world() -> World {
    let mut world = full::full_world(&servers::unique("prov"));
    world.set_env("STACKINSTALL_ONLY", "credentials,k3s,namespace,registry");
    world.write(
        "/root/.aws/credentials",
        &format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET_KEY}\n"),
    );
    world
}

fn mutating(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|call| match call.program.as_str() {
            "systemctl" => !matches!(call.args[0].as_str(), "is-active" | "is-enabled" | "show"),
            "k3s-install" => true,
            "kubectl" => call
                .args
                .first()
                .is_some_and(|a| a == "apply" || a == "delete"),
            _ => false,
        })
        .map(Call::line)
        .collect()
}

/// Runs the plugin exactly as the kubelet would: the program, arguments and
/// environment `config.yaml` names, a request on stdin, nothing else.
fn ask_as_kubelet(world: &World) -> Value {
    let config: Value = serde_yaml_ng::from_str(&world.read(CONFIG)).unwrap();
    let provider = &config["providers"][0];
    let program = world
        .path("/var/lib/rancher/credentialprovider/bin")
        .join(provider["name"].as_str().unwrap());
    let mut command = std::process::Command::new(program);
    command.env_clear().env("PATH", "/usr/bin:/bin");
    // The file holds the host's paths; this kubelet's host is the root.
    let under_root = |value: &str| match value.starts_with('/') {
        true => world.path(value).display().to_string(),
        false => value.to_string(),
    };
    for arg in provider["args"].as_array().unwrap() {
        command.arg(under_root(arg.as_str().unwrap()));
    }
    for variable in provider["env"].as_array().unwrap() {
        command.env(
            variable["name"].as_str().unwrap(),
            under_root(variable["value"].as_str().unwrap()),
        );
    }
    let output = assert_cmd::Command::from_std(command)
        .write_stdin(request(&format!("{SERVER}/stackbill/ui:2")))
        .assert()
        .success();
    serde_json::from_str(&stdout(&output)).unwrap()
}

#[test]
fn the_install_wires_the_provider_before_k3s_starts_and_uninstall_removes_it() {
    let world = wired_world();
    world.install(&[]).success();
    let starts = std::fs::read_to_string(world.state("k3s-starts")).unwrap();
    assert_eq!(
        starts, "provider in place\n",
        "K3s must find the provider when it starts"
    );
    let link = std::fs::read_link(world.path(PLUGIN)).unwrap();
    assert_eq!(
        link.to_str(),
        Some("../../../../../usr/local/bin/stackinstall")
    );
    assert!(world.path("/usr/local/bin/stackinstall").is_file());
    let root = world.root.display().to_string();
    let config = world.read(CONFIG);
    assert!(!config.contains(&root), "the host's paths, not --root's");
    insta::assert_snapshot!("credential-provider-config.yaml", config);

    let response = ask_as_kubelet(&world);
    assert_eq!(check_shape(&response), [SERVER]);
    assert_eq!(response["auth"][SERVER]["password"], moto_password());

    let status = world
        .command()
        .args(["status", "--output", "json"])
        .assert()
        .success();
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    let registry = &status["registry"];
    assert_eq!(
        registry["credential_source"],
        "shared profile `default` in `/root/.aws`"
    );
    assert_eq!(registry["credential_provider"], true);
    assert!(
        registry["token_fetched_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{registry}"
    );
    assert!(
        registry["token_expires_at"].as_str().is_some(),
        "{registry}"
    );

    world.clear_calls();
    let before = (
        world.read(CONFIG),
        std::fs::read_link(world.path(PLUGIN)).unwrap(),
    );
    world.install(&[]).success();
    assert_eq!(
        mutating(&world.calls()),
        Vec::<String>::new(),
        "a re-run changes nothing"
    );
    assert_eq!(
        (
            world.read(CONFIG),
            std::fs::read_link(world.path(PLUGIN)).unwrap()
        ),
        before
    );

    world.clear_calls();
    world
        .command()
        .args(["uninstall", "--yes"])
        .assert()
        .success();
    assert!(!world.path(CONFIG).exists() && world.path(PLUGIN).symlink_metadata().is_err());
    assert!(
        world.path("/usr/local/bin/stackinstall").is_file(),
        "the installed binary stays"
    );

    // Installed again: the k3s step puts them back and restarts K3s once.
    world.clear_calls();
    world.install(&[]).success();
    let restarts: Vec<String> = mutating(&world.calls())
        .into_iter()
        .filter(|line| line.starts_with("systemctl restart k3s") || line.starts_with("k3s-install"))
        .collect();
    assert_eq!(restarts, ["systemctl restart k3s"]);
    assert!(world.path(CONFIG).is_file());
    report(&format!(
        "provider wiring: K3s starts {:?}, 1 kubelet-style request answered, re-run mutations 0, restarts after re-wiring {}",
        starts.lines().collect::<Vec<_>>(),
        restarts.len()
    ));
}

#[test]
fn a_changed_registry_restarts_a_running_k3s_once() {
    let mut world = wired_world();
    world.set_env("STACKINSTALL_ONLY", "k3s");
    world.install(&[]).success();
    world.set_env(
        "STACKINSTALL_REGISTRY__SERVER",
        "111122223333.dkr.ecr.ap-south-1.amazonaws.com",
    );
    world.clear_calls();
    world.install(&[]).success();
    let changes = mutating(&world.calls());
    assert_eq!(changes, ["systemctl restart k3s"], "{changes:?}");
    assert!(
        world
            .read(CONFIG)
            .contains("\"111122223333.dkr.ecr.ap-south-1.amazonaws.com\"")
    );
    world.clear_calls();
    world.install(&[]).success();
    assert_eq!(mutating(&world.calls()), Vec::<String>::new());
    report("provider: changed registry -> 1 restart, then 0 on the next run");
}

/// The full world with the AWS key in the install's environment only (no
/// `/root/.aws`), as an operator's `export AWS_ACCESS_KEY_ID=...` leaves it.
fn environment_only_world() -> World {
    let mut world = wired_world();
    std::fs::remove_file(world.path("/root/.aws/credentials")).unwrap();
    world.set_env("AWS_ACCESS_KEY_ID", KEY_ID);
    world.set_env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    world
}

#[test]
fn a_key_in_the_shells_environment_only_stops_the_install_without_a_terminal() {
    let world = environment_only_world();
    let before = world.files(true);
    let refused = world.install(&[]).code(2);
    let text = stderr(&refused);
    for needed in [
        "environment only",
        "kubelet",
        "renewal timer",
        "/root/.aws/credentials",
        "instance role",
        "refresh_hours = 0",
    ] {
        assert!(text.contains(needed), "`{needed}` in:\n{text}");
    }
    assert!(
        !text.contains(SECRET_KEY) && !text.contains(KEY_ID),
        "{text}"
    );
    assert!(world.calls().is_empty(), "no program ran");
    assert_eq!(world.files(true), before, "nothing changed");

    // A profile that wants no renewal installs from the environment.
    let mut world = environment_only_world();
    world.set_env("STACKINSTALL_REGISTRY__REFRESH_HOURS", "0");
    world.install(&[]).success();
    let timer = "/etc/systemd/system/stackinstall-ecr-refresh.timer";
    assert!(!world.path(timer).exists(), "no renewal timer");
    assert!(
        world.path(CONFIG).exists(),
        "the provider is wired all the same"
    );

    // And more than 11 hours between renewals is refused where it is set.
    world.set_env("STACKINSTALL_REGISTRY__REFRESH_HOURS", "12");
    let text = stderr(&world.install(&["--plan"]).code(2));
    assert!(text.contains("registry.refresh_hours"), "{text}");
    report(
        "provider: the key in the environment only: refused without a terminal (exit 2, 0 programs run, 0 files changed, 6 parts of the explanation); refresh_hours = 0 installs without a timer; 12 refused",
    );
}
