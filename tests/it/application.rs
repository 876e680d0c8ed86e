//! The application's steps (`registry`, `release`, `wait`) and `ecr-refresh`
//! against fake `kubectl`, `helm` and `systemctl` that keep their state in
//! `$STATE`, and moto's real ECR server for the token.

use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::support::{Action, Call, Rule, World, report, servers, stderr, stdout};

const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI-test-secret-access-key";
const ACCESS_KEY_ID: &str = "AKIATESTSTACKINSTALL";
const HOST_IP: &str = "10.1.2.3";
const MY_STEPS: [&str; 8] = [
    "--only",
    "credentials",
    "--only",
    "registry",
    "--only",
    "release",
    "--only",
    "wait",
];

/// `install --only credentials --only release --redo release`, with `more`.
fn redo_release(world: &World, more: &[&str]) -> assert_cmd::assert::Assert {
    let mut args = vec![
        "--only",
        "credentials",
        "--only",
        "release",
        "--redo",
        "release",
    ];
    args.extend(more);
    world.install(&args)
}

/// A world with a running cluster (the fake `kubectl` and `helm`), the
/// fake `systemctl`, AWS credentials in the environment, and moto.
fn world() -> World {
    let mut world = World::new();
    world.fakes(&["kubectl", "helm", "systemctl"]);
    world.start_k3s();
    world.set_env(
        "STACKINSTALL_REGISTRY__ENDPOINT_URL",
        &servers::setting("STACKINSTALL_TEST_ECR_ENDPOINT"),
    );
    world.set_env("STACKINSTALL_CLUSTER__HOST_IP", HOST_IP);
    world.set_env("AWS_EC2_METADATA_DISABLED", "true");
    world.set_env(
        "AWS_SHARED_CREDENTIALS_FILE",
        &world
            .dir
            .path()
            .join("no-aws-credentials")
            .display()
            .to_string(),
    );
    world.set_env(
        "AWS_CONFIG_FILE",
        &world.dir.path().join("no-aws-config").display().to_string(),
    );
    world
}

/// The AWS key in the install's environment and, as the install requires
/// of a key the kubelet and the timer must see, in root's shared
/// credentials file.
fn with_keys(mut world: World) -> World {
    world.write(
        "/root/.aws/credentials",
        &format!("[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"),
    );
    world.set_env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
    world.set_env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
    world
}

fn ready_pods(world: &World) {
    world.set_pods(&serde_json::json!({ "items": [
        { "metadata": { "name": "sb-core-1" }, "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } },
        { "metadata": { "name": "sb-ui-1" }, "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } },
        { "metadata": { "name": "migrate-1" }, "status": { "phase": "Succeeded" } },
    ]}));
}

fn calls_of<'a>(calls: &'a [Call], program: &str, first_arg: &str) -> Vec<&'a Call> {
    calls.iter().filter(|c| c.is(program, first_arg)).collect()
}

/// The pull Secret as the fake cluster keeps it.
fn pull_secret(world: &World) -> Option<serde_json::Value> {
    world.object("secret", "sb-apps", "awscred")
}

/// The `.dockerconfigjson` of the pull Secret as kubectl got it on stdin.
fn docker_config(call: &Call) -> serde_json::Value {
    let manifest: serde_json::Value = serde_json::from_str(&call.stdin).unwrap();
    assert_eq!(manifest["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(manifest["metadata"]["namespace"], "sb-apps");
    let data = BASE64
        .decode(manifest["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&data).unwrap()
}

#[test]
fn registry_stores_the_moto_token_and_installs_the_renewal_timer() {
    let world = with_keys(world());
    let token = servers::moto_token();
    world.install(&["--only", "registry"]).success();

    let calls = world.calls();
    let applies = calls_of(&calls, "kubectl", "apply");
    assert_eq!(applies.len(), 1, "one Secret applied");
    assert!(applies[0].args.contains(&"--server-side".to_string()));
    let auths =
        &docker_config(applies[0])["auths"]["730335576030.dkr.ecr.ap-south-1.amazonaws.com"];
    assert_eq!(auths["username"], "AWS");
    assert_eq!(auths["auth"], token.as_str(), "the token moto returned");
    let decoded = String::from_utf8(BASE64.decode(&token).unwrap()).unwrap();
    assert_eq!(auths["password"], decoded.strip_prefix("AWS:").unwrap());
    assert_eq!(
        applies[0].env("KUBECONFIG"),
        Some("/etc/rancher/k3s/k3s.yaml")
    );

    let service = world.read("/etc/systemd/system/stackinstall-ecr-refresh.service");
    assert!(
        service.contains(" ecr-refresh --config /etc/stackinstall/ecr-refresh.toml"),
        "{service}"
    );
    let timer = world.read("/etc/systemd/system/stackinstall-ecr-refresh.timer");
    assert!(timer.contains("OnUnitActiveSec=6h"), "{timer}");
    let lines: Vec<String> = calls
        .iter()
        .filter(|c| c.program == "systemctl")
        .map(Call::line)
        .collect();
    assert!(
        lines.contains(&"systemctl daemon-reload".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"systemctl enable --now stackinstall-ecr-refresh.timer".to_string()),
        "{lines:?}"
    );

    world.clear_calls();
    let again = world
        .install(&["--only", "registry", "--redo", "registry"])
        .success();
    let changing: Vec<String> = world
        .calls()
        .iter()
        .filter(|c| ["apply", "enable", "daemon-reload", "delete"].contains(&c.args[0].as_str()))
        .map(Call::line)
        .collect();
    assert!(
        changing.is_empty(),
        "a second run changes nothing: {changing:?}"
    );
    assert!(stderr(&again).contains("registry"), "{}", stderr(&again));
}

#[test]
fn ecr_refresh_is_quiet_when_fresh_and_renews_a_missing_or_stale_secret() {
    let world = with_keys(world());
    world.install(&["--only", "registry"]).success();
    let config = world
        .path("/etc/stackinstall/ecr-refresh.toml")
        .display()
        .to_string();

    world.clear_calls();
    let quiet = world
        .command()
        .args(["ecr-refresh", "--config", &config])
        .assert()
        .success();
    assert_eq!(stdout(&quiet), "", "nothing to do, nothing said");
    assert_eq!(stderr(&quiet), "");
    assert!(calls_of(&world.calls(), "kubectl", "apply").is_empty());

    let mut manifest = pull_secret(&world).unwrap();
    manifest["metadata"]["annotations"]["stackinstall/ecr-token-fetched-at"] =
        "2020-01-01T00:00:00Z".into();
    manifest["metadata"]["annotations"]["stackinstall/ecr-token-expires-at"] =
        "2020-01-01T12:00:00Z".into();
    world.put_object(manifest);
    let renewed = world
        .command()
        .args(["ecr-refresh", "--config", &config])
        .assert()
        .success();
    assert!(
        stdout(&renewed).starts_with("renewed the pull secret `awscred` in `sb-apps`"),
        "{}",
        stdout(&renewed)
    );
    assert_eq!(calls_of(&world.calls(), "kubectl", "apply").len(), 1);

    world.delete_object("secret", "sb-apps", "awscred");
    world.command().args(["ecr-refresh"]).assert().success();
    assert!(
        pull_secret(&world).is_some(),
        "a missing Secret is created again"
    );
}

#[test]
fn registry_without_aws_credentials_says_which_sources_were_tried() {
    let world = world();
    let failed = world.install(&["--only", "registry"]).code(2);
    let text = stderr(&failed);
    // Preflight finds it before anything runs.
    for source in [
        "AWS_ACCESS_KEY_ID",
        "/root/.aws/credentials",
        "instance metadata",
        "hint:",
    ] {
        assert!(text.contains(source), "{source} in:\n{text}");
    }
    assert!(
        calls_of(&world.calls(), "kubectl", "apply").is_empty(),
        "nothing applied"
    );
    let report: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("error:"))
        .take_while(|line| !line.starts_with("hint: the full log"))
        .collect();
    insta::assert_snapshot!(report.join("\n"));
}

#[test]
fn registry_uses_the_shared_profile_named_by_aws_profile() {
    let mut world = world();
    let credentials = world.dir.path().join("aws-credentials");
    let body = format!(
        "[stackbill]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"
    );
    std::fs::write(&credentials, body).unwrap();
    world.set_env(
        "AWS_SHARED_CREDENTIALS_FILE",
        &credentials.display().to_string(),
    );
    world.install(&["--only", "registry"]).code(2);
    world
        .install(&["--only", "registry", "--aws-profile", "stackbill"])
        .success();
    assert_eq!(calls_of(&world.calls(), "kubectl", "apply").len(), 1);
    assert!(
        world
            .read("/etc/stackinstall/ecr-refresh.toml")
            .contains("aws_profile = \"stackbill\"")
    );
}

fn passwords(world: &World) -> Vec<String> {
    let text = world.read("/etc/stackinstall/credentials.toml");
    let credentials: toml::Table = toml::from_str(&text).unwrap();
    ["mysql", "mongodb", "rabbitmq"]
        .iter()
        .map(|service| {
            credentials[*service]["password"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn release_gets_credentials_in_a_private_values_file_and_runs_once() {
    let world = world();
    world
        .install(&["--only", "credentials", "--only", "release"])
        .success();
    let calls = world.calls();
    let upgrades = calls_of(&calls, "helm", "upgrade");
    assert_eq!(upgrades.len(), 1);
    let args = &upgrades[0].args;
    assert!(!args.iter().any(|a| a.starts_with("--set")), "{args:?}");
    assert_eq!(&args[..2], ["upgrade", "--install"]);
    // Positional arguments after `--`, where Helm (cobra/pflag) stops
    // reading flags: a release name can never be taken for one.
    let [.., dashes, release, file] = args.as_slice() else {
        panic!("{args:?}")
    };
    assert_eq!([dashes.as_str(), release.as_str()], ["--", "stackbill"]);
    assert!(
        file.ends_with("/var/lib/stackinstall/downloads/chart-stackbill.tgz"),
        "Helm installs the pulled file, not the reference: {args:?}"
    );
    let pulls = calls_of(&calls, "helm", "pull");
    assert_eq!(
        pulls[0].args[pulls[0].args.len() - 2..],
        ["--", "oci://public.ecr.aws/p0g2c5k8/stackbill"]
    );
    let values_path = &args[args.iter().position(|a| a == "--values").unwrap() + 1];
    assert!(
        values_path.ends_with("/var/lib/stackinstall/stackbill-values.yaml"),
        "{values_path}"
    );
    assert!(
        !std::path::Path::new(values_path).exists(),
        "the values file is removed afterwards"
    );
    assert_eq!(
        std::fs::read_to_string(world.state("helm/values-mode"))
            .unwrap()
            .trim(),
        "600"
    );
    let values: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(world.state("helm/values-seen.yaml")).unwrap(),
    )
    .unwrap();
    let [mysql, mongodb, rabbitmq] = <[String; 3]>::try_from(passwords(&world)).unwrap();
    assert_eq!(values["mysql"]["password"], mysql.as_str());
    assert_eq!(values["mongodb"]["password"], mongodb.as_str());
    assert_eq!(values["rabbitmq"]["password"], rabbitmq.as_str());
    assert_eq!(values["mysql"]["host"], HOST_IP);
    assert_eq!(values["imagePullSecrets"][0]["name"], "awscred");

    world.clear_calls();
    redo_release(&world, &[]).success();
    assert!(
        calls_of(&world.calls(), "helm", "upgrade").is_empty(),
        "the deployed release is left alone"
    );

    let file = world
        .read("/etc/stackinstall/credentials.toml")
        .replace(&mysql, "AChangedMysqlPassword12345");
    world.write("/etc/stackinstall/credentials.toml", &file);
    std::fs::set_permissions(
        world.path("/etc/stackinstall/credentials.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    world
        .install(&["--only", "credentials", "--only", "release"])
        .success();
    assert_eq!(
        calls_of(&world.calls(), "helm", "upgrade").len(),
        1,
        "a changed password redeploys"
    );
}

/// `--skip-db`: the databases exist, so the release gets the passwords the
/// operator put in with `credentials set` (standard input, a 0600 file)
/// and the bash installer's file, never made-up ones, and none of them
/// reaches an argument list or the output.
#[test]
fn skip_db_gives_the_release_the_passwords_set_by_the_operator() {
    let world = world();
    let given = [
        "Existing-Mysql-Pass1",
        "Existing-Mongo-Pass2",
        "Legacy-Rabbit-Pass3",
    ];
    let mut outputs = Vec::new();
    let set = world
        .command()
        .args(["credentials", "set", "mysql"])
        .write_stdin(format!("{}\n", given[0]))
        .assert()
        .success();
    outputs.push(stdout(&set) + &stderr(&set));
    let password_file = world.dir.path().join("mongodb-password");
    std::fs::write(&password_file, given[1]).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let set = world
        .command()
        .args(["credentials", "set", "mongodb", "--from-file"])
        .arg(&password_file)
        .assert()
        .success();
    outputs.push(stdout(&set) + &stderr(&set));
    world.write(
        "/root/stackbill-credentials.txt",
        &format!(
            "RABBITMQ:\n  Username: stackbill\n  Password: {}\n",
            given[2]
        ),
    );
    let steps = ["--skip-db", "--only", "credentials", "--only", "release"];
    let plan = world.install(&[&steps[..], &["--plan"]].concat()).success();
    outputs.push(stdout(&plan) + &stderr(&plan));
    let run = world.install(&steps).success();
    outputs.push(stdout(&run) + &stderr(&run));
    assert!(
        stderr(&run)
            .contains("- skipped (--skip-db): packages, mysql, mongodb, rabbitmq, nfs [5 steps]"),
        "{}",
        stderr(&run)
    );
    assert_eq!(passwords(&world), given, "the file holds what was given");
    let values: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(world.state("helm/values-seen.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(values["mysql"]["password"], given[0]);
    assert_eq!(values["mongodb"]["password"], given[1]);
    assert_eq!(values["rabbitmq"]["password"], given[2]);
    let calls = world.calls();
    let mut leaks = 0;
    for password in given {
        leaks += calls
            .iter()
            .filter(|call| call.args.iter().any(|arg| arg.contains(password)))
            .count();
        leaks += outputs
            .iter()
            .filter(|output| output.contains(password))
            .count();
    }
    assert_eq!(leaks, 0, "no password in an argument list or the output");
    println!(
        "skip-db: 3 given passwords reached the release; {} child argument lists and {} outputs checked, {leaks} leaks",
        calls.len(),
        outputs.len()
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The pin of the chart `stackbill` 1.2.0 as `STACKINSTALL_DOWNLOADS__PINS`.
fn chart_pin(sha256: &str) -> String {
    format!(
        r#"{{ "stackbill/1.2.0/stackbill-1.2.0.tgz" = {{ sha256 = "{sha256}", source = "the test's registry" }} }}"#
    )
}

#[test]
fn a_chart_that_does_not_match_its_pin_is_not_installed() {
    let mut world = world();
    world.set_env("STACKINSTALL_CHART__VERSION", "1.2.0");
    // What the fake registry serves for 1.2.0 unless a test puts a chart
    // there, and the manifest digest the fake `helm pull` prints for it.
    let good = b"a stand-in for the chart stackbill 1.2.0\n";
    let file_digest = sha256_hex(good);
    let manifest_digest = sha256_hex(format!("manifest of {file_digest}").as_bytes());
    world.set_env("STACKINSTALL_DOWNLOADS__PINS", &chart_pin(&file_digest));
    let plan = stdout(
        &world
            .install(&["--only", "credentials", "--only", "release", "--plan"])
            .success(),
    );
    for expected in [
        "helm pull --version 1.2.0 --destination /var/lib/stackinstall/downloads/chart-stackbill -- oci://public.ecr.aws/p0g2c5k8/stackbill".to_string(),
        format!("checked against pinned SHA-256 {file_digest} from the test's registry"),
        "-- stackbill /var/lib/stackinstall/downloads/chart-stackbill.tgz".into(),
    ] {
        assert!(plan.contains(&expected), "{expected} in:\n{plan}");
    }

    let tampered = b"stackbill 1.2.0 with a privileged DaemonSet added\n";
    std::fs::create_dir_all(world.state("registry")).unwrap();
    std::fs::write(world.state("registry/stackbill-1.2.0.tgz"), tampered).unwrap();
    let failed = world
        .install(&["--only", "credentials", "--only", "release"])
        .code(1);
    let error = stderr(&failed);
    let tampered_digest = sha256_hex(tampered);
    for expected in [
        "the chart `oci://public.ecr.aws/p0g2c5k8/stackbill` version 1.2.0 does not match its pin `stackbill/1.2.0/stackbill-1.2.0.tgz`".to_string(),
        format!("expected sha256 {file_digest} (from the test's registry)"),
        format!("got {tampered_digest} (the chart file's SHA-256)"),
        format!("{} (the OCI manifest digest `helm pull` reported)", sha256_hex(format!("manifest of {tampered_digest}").as_bytes())),
        "nothing was installed".into(),
    ] {
        assert!(error.contains(&expected), "{expected} in:\n{error}");
    }
    assert!(
        calls_of(&world.calls(), "helm", "upgrade").is_empty(),
        "Helm installed nothing"
    );
    assert!(
        !world.state("helm/stackbill.json").exists(),
        "there is no release"
    );
    assert!(
        !world
            .path("/var/lib/stackinstall/downloads/chart-stackbill")
            .exists(),
        "the tampered chart is removed"
    );

    // The registry serves the pinned chart again: installed from the file.
    std::fs::remove_file(world.state("registry/stackbill-1.2.0.tgz")).unwrap();
    world
        .install(&["--only", "credentials", "--only", "release"])
        .success();
    let seen = std::fs::read_to_string(world.state("helm/stackbill.chart-sha256")).unwrap();
    assert_eq!(seen.trim(), file_digest, "Helm got the checked file");
    assert!(
        !world
            .path("/var/lib/stackinstall/downloads/chart-stackbill")
            .exists()
    );

    // The OCI manifest digest `helm pull` prints is a pin too.
    world.set_env("STACKINSTALL_DOWNLOADS__PINS", &chart_pin(&manifest_digest));
    world.clear_calls();
    world
        .install(&["--only", "credentials", "--only", "release"])
        .success();
    assert_eq!(calls_of(&world.calls(), "helm", "upgrade").len(), 1);
    report(
        "chart pins: 1 tampered chart refused (reference, pin, file and manifest digests named; no release), 2 pin forms accepted (file SHA-256, OCI manifest digest)",
    );
}

#[test]
fn a_chart_and_values_file_left_by_a_killed_run_are_removed_without_a_new_upgrade() {
    let world = world();
    world
        .install(&["--only", "credentials", "--only", "release"])
        .success();
    // A run killed once Helm was done, before it removed its files.
    let chart = world.path("/var/lib/stackinstall/downloads/chart-stackbill.tgz");
    let values = world.path("/var/lib/stackinstall/stackbill-values.yaml");
    std::fs::write(&chart, "a stand-in for the chart stackbill 1.0.0\n").unwrap();
    std::fs::write(&values, "mysql:\n  password: left-behind\n").unwrap();
    world.clear_calls();
    let plan = stdout(&redo_release(&world, &["--plan"]).success());
    for expected in [
        "remove /var/lib/stackinstall/downloads/chart-stackbill.tgz",
        "remove /var/lib/stackinstall/stackbill-values.yaml",
    ] {
        assert!(plan.contains(expected), "{expected} in:\n{plan}");
    }
    assert!(
        !plan.contains("helm pull"),
        "the release is current:\n{plan}"
    );
    redo_release(&world, &[]).success();
    assert!(!chart.exists() && !values.exists());
    assert!(
        world
            .calls()
            .iter()
            .all(|call| call.program != "helm" || call.args[0] == "history"),
        "no pull, no upgrade"
    );
}

#[test]
fn an_unpinned_chart_is_named_loudly_and_refused_with_require_pins() {
    let mut world = world();
    let plan = stdout(
        &world
            .install(&["--only", "credentials", "--only", "release", "--plan"])
            .success(),
    );
    assert!(
        plan.contains("WARNING: not pinned: `[chart] version` is empty")
            && plan.contains("pin `stackbill/VERSION/stackbill-VERSION.tgz`"),
        "{plan}"
    );
    world.set_env("STACKINSTALL_CHART__VERSION", "1.3.0");
    let run = stderr(
        &world
            .install(&["--only", "credentials", "--only", "release"])
            .success(),
    );
    assert!(
        run.contains("warning: oci://public.ecr.aws/p0g2c5k8/stackbill: WARNING: not pinned, so checked against nothing; pin `stackbill/1.3.0/stackbill-1.3.0.tgz`"),
        "{run}"
    );
    world.set_env("STACKINSTALL_CHART__VERSION", "1.4.0");
    world.set_env("STACKINSTALL_DOWNLOADS__REQUIRE_PINS", "true");
    world.clear_calls();
    let refused = stderr(
        &world
            .install(&["--only", "credentials", "--only", "release"])
            .code(2),
    );
    assert!(
        refused.contains("require_pins")
            && refused.contains("`stackbill/1.4.0/stackbill-1.4.0.tgz`"),
        "{refused}"
    );
    assert!(
        world.calls().iter().all(|call| call.program != "helm"),
        "nothing pulled or installed: {:?}",
        world.calls().iter().map(Call::line).collect::<Vec<_>>()
    );
}

#[test]
fn a_failed_helm_run_still_removes_the_values_file() {
    let world = world();
    world.rule(Rule::new(
        "helm",
        &["upgrade"],
        Action::Fail {
            code: 1,
            stderr: "Error: INSTALLATION FAILED: chart not found\n".into(),
        },
    ));
    let failed = world
        .install(&["--only", "credentials", "--only", "release"])
        .code(1);
    assert!(
        stderr(&failed).contains("chart not found"),
        "{}",
        stderr(&failed)
    );
    assert!(
        !world
            .path("/var/lib/stackinstall/stackbill-values.yaml")
            .exists()
    );
}

fn seed_history(world: &World, revisions: serde_json::Value) {
    std::fs::create_dir_all(world.state("helm")).unwrap();
    std::fs::write(world.state("helm/stackbill.json"), revisions.to_string()).unwrap();
}

fn helm_lines(world: &World) -> Vec<String> {
    world
        .calls()
        .iter()
        .filter(|c| c.program == "helm" && c.args[0] != "history")
        .map(|c| {
            // The subcommand and what follows `--` (Helm's positionals),
            // less the chart file's temporary path.
            let dashes = c.args.iter().position(|a| a == "--").unwrap();
            let positional: Vec<&str> = c.args[dashes + 1..]
                .iter()
                .map(String::as_str)
                .filter(|a| !a.starts_with('/'))
                .collect();
            format!("{} {}", c.args[0], positional.join(" "))
        })
        .collect()
}

#[test]
fn a_release_left_pending_install_is_uninstalled_and_installed_again() {
    let world = world();
    seed_history(
        &world,
        serde_json::json!([{ "revision": 1, "status": "pending-install", "description": "Initial install underway" }]),
    );
    world
        .install(&["--only", "credentials", "--only", "release"])
        .success();
    assert_eq!(
        helm_lines(&world),
        [
            "uninstall stackbill",
            "pull oci://public.ecr.aws/p0g2c5k8/stackbill",
            "upgrade stackbill"
        ]
    );
    let history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.state("helm/stackbill.json")).unwrap())
            .unwrap();
    assert_eq!(history[0]["status"], "deployed");
}

#[test]
fn a_release_left_pending_upgrade_is_rolled_back_then_upgraded() {
    let world = world();
    seed_history(
        &world,
        serde_json::json!([
            { "revision": 1, "status": "superseded", "description": "Install complete" },
            { "revision": 2, "status": "deployed", "description": "Upgrade complete" },
            { "revision": 3, "status": "pending-upgrade", "description": "Preparing upgrade" },
        ]),
    );
    world
        .install(&["--only", "credentials", "--only", "release"])
        .success();
    assert_eq!(
        helm_lines(&world),
        [
            "rollback stackbill 2",
            "pull oci://public.ecr.aws/p0g2c5k8/stackbill",
            "upgrade stackbill"
        ]
    );
}

fn stuck_pods(world: &World) {
    let waiting = |name: &str, reason: &str| {
        serde_json::json!({ "metadata": { "name": name }, "status": { "phase": "Pending",
            "conditions": [{ "type": "Ready", "status": "False" }],
            "containerStatuses": [{ "name": "app", "ready": false, "state": { "waiting": { "reason": reason } } }] } })
    };
    let pods = serde_json::json!({ "items": [
        { "metadata": { "name": "sb-ui-1" }, "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } },
        waiting("sb-core-7c9d", "ImagePullBackOff"),
        waiting("sb-kong-5f2a", "CrashLoopBackOff"),
        { "metadata": { "name": "sb-admin-0" }, "status": { "phase": "Pending", "conditions": [
            { "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory." }] } },
    ]});
    world.set_pods(&pods);
}

#[test]
fn wait_times_out_naming_each_pod_that_is_not_ready_and_why() {
    let mut world = world();
    world.set_env("STACKINSTALL_WAIT__TIMEOUT_SECONDS", "1");
    world.set_env("STACKINSTALL_WAIT__POLL_MILLISECONDS", "100");
    stuck_pods(&world);
    let failed = world.install(&["--only", "wait"]).code(1);
    let text = stderr(&failed);
    assert!(text.contains("1/4 pods ready"), "the live count:\n{text}");
    // The pod list (with the pods' environment) is not logged on each poll.
    // The step's own lines: after the timeout, doctor's snapshot of the
    // cluster (its own threads, outside the step) is logged as it is.
    let log: String = (world.logs().lines())
        .filter(|line| line.contains("step{id=\"wait\"}"))
        .map(|line| format!("{line}\n"))
        .collect();
    let polls = log.matches("run: kubectl get pods").count();
    assert!(polls >= 2, "polled more than once:\n{log}");
    assert!(
        !log.contains("containerStatuses"),
        "pod JSON in the log:\n{log}"
    );
    report(&format!("wait: {polls} polls, pod JSON logged 0 times"));
    let report: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("error:"))
        .take_while(|line| !line.starts_with("hint: the full log"))
        .collect();
    insta::assert_snapshot!(report.join("\n"));
}

#[test]
fn wait_is_done_when_every_pod_is_ready() {
    let world = world();
    ready_pods(&world);
    // The pods come up after the first look.
    world.configure(|config| config.pods_hidden_listings = 1);
    let done = world.install(&["--only", "wait"]).success();
    assert!(
        stderr(&done).contains("2/2 pods ready"),
        "{}",
        stderr(&done)
    );
}

#[test]
fn no_password_token_or_aws_key_reaches_argv_logs_or_output() {
    let world = with_keys(world());
    ready_pods(&world);
    let first = world.install(&MY_STEPS).success();
    let second = world.install(&MY_STEPS).success();
    let renew = world.command().arg("ecr-refresh").assert().success();
    let token = servers::moto_token();
    let decoded = String::from_utf8(BASE64.decode(&token).unwrap()).unwrap();
    let mut secrets = passwords(&world);
    secrets.extend([
        token,
        decoded.clone(),
        decoded.trim_start_matches("AWS:").to_string(),
        SECRET_ACCESS_KEY.to_string(),
    ]);

    let mut haystacks: Vec<(String, String)> =
        world.calls().iter().map(|c| (c.line(), c.line())).collect();
    for assert in [&first, &second, &renew] {
        haystacks.push(("stdout".into(), stdout(assert)));
        haystacks.push(("stderr".into(), stderr(assert)));
    }
    let logs: Vec<_> = world
        .files(true)
        .into_iter()
        .filter(|(path, _)| path.starts_with("/var/log/stackinstall/"))
        .collect();
    assert!(!logs.is_empty(), "the runs wrote logs");
    for (path, bytes) in world.files(true) {
        // The files meant to hold them: the tool's own credentials, and
        // the operator's AWS key where the kubelet reads it.
        if ![
            "/etc/stackinstall/credentials.toml",
            "/root/.aws/credentials",
        ]
        .contains(&path.as_str())
        {
            haystacks.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    assert!(calls_of(&world.calls(), "helm", "upgrade").len() == 1);
    for secret in &secrets {
        for (name, text) in &haystacks {
            assert!(
                !text.contains(secret.as_str()),
                "a secret ({} chars) appears in {name}",
                secret.len()
            );
        }
    }
}

#[test]
fn render_writes_the_units_and_the_values_without_secrets() {
    let world = world();
    let out = world.dir.path().join("rendered");
    world
        .command()
        .args([
            "render",
            "--domain",
            "demo.example.com",
            "--out",
            &out.display().to_string(),
        ])
        .assert()
        .success();
    let text = std::fs::read_to_string(out.join("release-values.yaml")).unwrap();
    let values: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    for service in ["mysql", "mongodb", "rabbitmq"] {
        assert_eq!(values[service]["host"], HOST_IP, "{text}");
        assert!(values[service].get("password").is_none(), "{text}");
    }
    let timer = std::fs::read_to_string(out.join("stackinstall-ecr-refresh.timer")).unwrap();
    insta::assert_snapshot!(timer);
    assert!(out.join("stackinstall-ecr-refresh.service").exists());
}

#[test]
fn plan_shows_the_application_actions_and_changes_nothing() {
    // With no AWS credentials at all the plan would stop (exit 2), as the
    // install would.
    let world = with_keys(world());
    let mut args = vec!["--plan"];
    args.extend(MY_STEPS);
    let plan = world.install(&args).success();
    let text = stdout(&plan);
    for expected in [
        "fetch an ECR token for `730335576030.dkr.ecr.ap-south-1.amazonaws.com`",
        "write /etc/systemd/system/stackinstall-ecr-refresh.timer (mode 0644)",
        "systemctl enable --now stackinstall-ecr-refresh.timer",
        "helm pull --destination /var/lib/stackinstall/downloads/chart-stackbill -- oci://public.ecr.aws/p0g2c5k8/stackbill (into a directory only root reads; the chart WARNING: not pinned: `[chart] version` is empty",
        "then helm upgrade --install --namespace sb-apps --values /var/lib/stackinstall/stackbill-values.yaml",
        "-- stackbill /var/lib/stackinstall/downloads/chart-stackbill.tgz",
        "wait until the pods in `sb-apps` are Ready and its Jobs Complete (now 0/0 pods ready) (at most 10 min)",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    let changing: Vec<String> = world
        .calls()
        .iter()
        .filter(|c| {
            !["get", "history", "list", "is-enabled", "is-active", "show"]
                .contains(&c.args[0].as_str())
        })
        .map(Call::line)
        .collect();
    assert!(changing.is_empty(), "a plan only looks: {changing:?}");
}

#[test]
fn default_uninstall_removes_the_release_the_pull_secret_and_the_timer() {
    let world = with_keys(world());
    ready_pods(&world);
    world.install(&MY_STEPS).success();
    assert!(world.state("helm/stackbill.json").exists());
    assert!(pull_secret(&world).is_some());
    world.clear_calls();

    let removal = world
        .command()
        .args(["uninstall", "--yes"])
        .assert()
        .success();
    let calls = world.calls();
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("helm uninstall") && l.ends_with("-- stackbill")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("delete secret awscred -n sb-apps")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "systemctl disable --now stackinstall-ecr-refresh.timer"),
        "{lines:#?}"
    );
    assert!(
        !world.state("helm/stackbill.json").exists(),
        "the release is gone"
    );
    assert!(pull_secret(&world).is_none());
    for unit in ["service", "timer"] {
        let path = format!("/etc/systemd/system/stackinstall-ecr-refresh.{unit}");
        assert!(!world.path(&path).exists(), "{path} is removed");
    }
    let checkpoints: toml::Table =
        toml::from_str(&world.read("/var/lib/stackinstall/state.toml")).unwrap();
    for step in ["registry", "release", "wait"] {
        assert!(checkpoints["steps"].get(step).is_none(), "{step} is undone");
    }
    assert!(
        checkpoints["steps"].get("credentials").is_some(),
        "the credentials are kept by default"
    );
    assert!(world.path("/etc/stackinstall/credentials.toml").exists());
    let passwords = passwords(&world);
    let output = format!("{}{}", stdout(&removal), stderr(&removal));
    for password in &passwords {
        assert!(
            !output.contains(password.as_str()),
            "no password is printed"
        );
    }

    world.clear_calls();
    let again = world
        .command()
        .args(["uninstall", "--yes"])
        .assert()
        .success();
    assert!(
        stdout(&again).contains("nothing to remove")
            || stdout(&again).contains("Nothing to remove"),
        "{}",
        stdout(&again)
    );
    assert!(
        !world.calls().iter().any(|c| c
            .args
            .first()
            .is_some_and(|a| a == "delete" || a == "uninstall")),
        "a second uninstall deletes nothing"
    );
}

// ------------------------------------------- security (issue 12, items 5, 9) --

#[test]
fn the_timer_runs_a_root_owned_copy_of_the_binary_installed_once() {
    use std::os::unix::fs::MetadataExt;
    let world = with_keys(world());
    let plan = world.install(&["--only", "registry", "--plan"]).success();
    assert!(
        stdout(&plan).contains(
            "install this stackinstall as /usr/local/bin/stackinstall (root:root, mode 0755)"
        ),
        "{}",
        stdout(&plan)
    );
    world.install(&["--only", "registry"]).success();

    let service = world.read("/etc/systemd/system/stackinstall-ecr-refresh.service");
    let exec: Vec<&str> = service
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec,
        [
            "ExecStart=/usr/local/bin/stackinstall ecr-refresh --config /etc/stackinstall/ecr-refresh.toml"
        ],
        "{service}"
    );
    let installed = world.path("/usr/local/bin/stackinstall");
    let running = assert_cmd::cargo::cargo_bin("stackinstall");
    let metadata = std::fs::metadata(&installed).unwrap();
    assert_eq!(
        (metadata.mode() & 0o7777, metadata.uid(), metadata.gid()),
        (0o755, 0, 0)
    );
    assert!(
        std::fs::read(&installed).unwrap() == std::fs::read(&running).unwrap(),
        "the installed copy has the running binary's bytes"
    );

    // A re-run finds it current: not written again, not in the plan.
    let stamp = (metadata.ino(), metadata.mtime(), metadata.mtime_nsec());
    world
        .install(&["--only", "registry", "--redo", "registry"])
        .success();
    let again = std::fs::metadata(&installed).unwrap();
    assert_eq!(stamp, (again.ino(), again.mtime(), again.mtime_nsec()));
    let plan = world
        .install(&["--only", "registry", "--redo", "registry", "--plan"])
        .success();
    assert!(!stdout(&plan).contains("install this stackinstall"));

    // A different binary there (an older version) is replaced.
    std::fs::write(&installed, b"#!/bin/sh\necho older\n").unwrap();
    world
        .install(&["--only", "registry", "--redo", "registry"])
        .success();
    assert!(std::fs::read(&installed).unwrap() == std::fs::read(&running).unwrap());
    assert_eq!(
        std::fs::metadata(&installed).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn ecr_refresh_leaves_everything_to_a_run_that_holds_the_lock() {
    let world = with_keys(world());
    world.install(&["--only", "registry"]).success();
    world.delete_object("secret", "sb-apps", "awscred");
    let files = world.files(true);

    // An install or uninstall holds the run lock.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(world.path("/var/lib/stackinstall/lock"))
        .unwrap();
    lock.try_lock().unwrap();
    // A run writes its pid into the root-only file: this test is that run.
    let pid = std::process::id();
    std::fs::write(world.path("/var/lib/stackinstall/lock"), format!("{pid}\n")).unwrap();
    world.clear_calls();
    let held = world.command().args(["ecr-refresh"]).assert().success();
    assert!(
        stdout(&held).contains(&format!(
            "another stackinstall run (pid {pid}) holds the lock"
        )),
        "{}",
        stdout(&held)
    );
    assert!(world.calls().is_empty(), "{:?}", world.calls());
    assert!(
        pull_secret(&world).is_none(),
        "the Secret was not brought back"
    );
    let mut after = world.files(true);
    after.insert(
        "/var/lib/stackinstall/lock".into(),
        files["/var/lib/stackinstall/lock"].clone(),
    );
    assert_eq!(after, files, "no file changed");

    // Once the lock is free, the missing Secret is renewed.
    drop(lock);
    world.command().args(["ecr-refresh"]).assert().success();
    assert!(pull_secret(&world).is_some());
    report("ecr-refresh under a held lock: exit 0, 0 commands run, 0 files changed");
}

#[test]
fn uninstall_stops_the_timer_before_it_deletes_the_pull_secret() {
    let world = with_keys(world());
    world.install(&["--only", "registry"]).success();
    world.clear_calls();
    world
        .command()
        .args(["uninstall", "--yes"])
        .assert()
        .success();
    let lines: Vec<String> = world.calls().iter().map(Call::line).collect();
    let position = |wanted: &str| {
        lines
            .iter()
            .position(|line| line.contains(wanted))
            .unwrap_or_else(|| panic!("no `{wanted}` in {lines:#?}"))
    };
    assert!(
        position("systemctl disable --now stackinstall-ecr-refresh.timer")
            < position("kubectl delete secret awscred -n sb-apps"),
        "{lines:#?}"
    );
}
