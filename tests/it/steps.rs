//! The cluster's steps in the test's own process (issue 20 item 5): the
//! library's steps and engine on a world's host whose programs are the
//! fakes called as functions (`support::in_process`). Each step's look, run
//! and verification alone, the engine's plan and run, and the same plan as
//! the binary's: what `cluster.rs` checks by starting the binary, in a
//! fraction of its time.

use std::time::Instant;

use stackinstall::action::perform_all;
use stackinstall::context::Context;
use stackinstall::engine::Selection;
use stackinstall::engine::install::{self as engine, StepResult};
use stackinstall::step_id::StepId;

use crate::support::cluster::cluster_world;
use crate::support::{World, stdout};

/// The cluster's steps, as `cluster_world` selects them for the binary.
const CLUSTER: [&str; 6] = ["k3s", "helm", "istio", "namespace", "tls", "gateway"];

fn cluster_selection() -> Selection {
    let only: Vec<String> = CLUSTER.iter().map(|id| id.to_string()).collect();
    Selection::parse(&only, None, &[], false, false).expect("the cluster's steps are steps")
}

/// A context for `world` with the cluster's steps selected, as the binary
/// makes one.
fn context_for(world: &World, plan: bool) -> Context {
    let mut context = world.in_process_context(plan);
    context.included = cluster_selection().resolve().included();
    context
}

/// The `kubectl apply` calls' objects, as `Kind/namespace/name`.
fn applied(world: &World) -> Vec<String> {
    crate::cluster::applied(&world.calls())
}

/// A running cluster with Istio: what the namespace, tls and gateway
/// steps need before they can look.
fn cluster_with_istio(world: &World) {
    world.start_k3s();
    world.put_object(serde_json::json!({ "kind": "Deployment",
        "metadata": { "name": "istiod", "namespace": "istio-system" },
        "status": { "readyReplicas": 1 } }));
}

#[test]
fn each_cluster_object_step_looks_applies_verifies_and_then_has_nothing_to_do() {
    let (world, _releases) = cluster_world();
    cluster_with_istio(&world);
    let mut context = context_for(&world, false);
    let _programs = context.host.enter();
    let expected = [
        (StepId::Namespace, vec!["Namespace/-/sb-apps"]),
        (
            StepId::Tls,
            vec![
                "Secret/istio-system/stackbill-tls-secret",
                "Secret/sb-apps/stackbill-tls-secret",
            ],
        ),
        (
            StepId::Gateway,
            vec![
                "Gateway/sb-apps/stackbill-gateway",
                "VirtualService/sb-apps/stackbill-vs",
            ],
        ),
    ];
    for (id, objects) in expected {
        world.clear_calls();
        let started = Instant::now();
        let step = id.step();
        let actions = step.look(&context).unwrap();
        assert!(
            actions.iter().any(|action| action.changes_host()),
            "{}: nothing to do on a new cluster",
            id.name()
        );
        let changed = perform_all(&mut context, actions).unwrap();
        assert!(changed, "{}", id.name());
        step.verify(&context).unwrap();
        assert_eq!(applied(&world), objects, "{}", id.name());
        world.clear_calls();
        let again = step.look(&context).unwrap();
        assert!(
            !again.iter().any(|action| action.changes_host()),
            "{}: a second look finds work: {again:?}",
            id.name()
        );
        assert!(
            (world.calls().iter()).all(|call| !call.is("kubectl", "apply")),
            "{}: a look applies nothing",
            id.name()
        );
        eprintln!(
            "in-process: {} looked, applied, verified and looked again in {} ms",
            id.name(),
            started.elapsed().as_millis()
        );
    }
}

#[test]
fn a_step_that_finds_no_cluster_fails_its_look_with_the_reason() {
    let (world, _releases) = cluster_world();
    // K3s was never started: the API refuses, as a stopped K3s's does.
    let context = context_for(&world, false);
    let _programs = context.host.enter();
    let error = StepId::Namespace.step().look(&context).unwrap_err();
    assert!(!error.to_string().is_empty());
    assert!(
        (world.calls().iter()).any(|call| call.program == "kubectl"),
        "the look asked the cluster"
    );
    assert!(
        (world.calls().iter()).all(|call| !call.is("kubectl", "apply")),
        "nothing was applied"
    );
}

#[test]
fn the_engine_installs_the_cluster_in_process_and_a_second_run_changes_nothing() {
    let (world, releases) = cluster_world();
    let inclusion = cluster_selection().resolve();
    let started = Instant::now();
    let mut context = context_for(&world, false);
    let outcomes = engine::run(&mut context, &inclusion, 2).unwrap();
    let first = started.elapsed();
    for outcome in outcomes.iter().filter(|o| CLUSTER.contains(&o.id)) {
        assert_eq!(outcome.result, StepResult::Changed, "{}", outcome.id);
    }
    for outcome in outcomes.iter().filter(|o| !CLUSTER.contains(&o.id)) {
        let expected = match outcome.id {
            "preflight" => StepResult::Unchanged,
            _ => StepResult::Skipped,
        };
        assert_eq!(outcome.result, expected, "{}", outcome.id);
    }
    let install = (world.calls().into_iter())
        .find(|call| call.program == "k3s-install")
        .expect("the K3s install script ran");
    assert_eq!(install.env("INSTALL_K3S_SKIP_DOWNLOAD"), Some("true"));
    assert_eq!(
        applied(&world),
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
        crate::support::cluster::K3S_BINARY
    );

    // A new run, as a second `stackinstall install` would make one.
    world.clear_calls();
    let downloads = releases.requests().len();
    let started = Instant::now();
    let mut context = context_for(&world, false);
    let outcomes = engine::run(&mut context, &inclusion, 2).unwrap();
    let second = started.elapsed();
    for outcome in outcomes.iter().filter(|o| CLUSTER.contains(&o.id)) {
        assert_eq!(outcome.result, StepResult::AlreadyDone, "{}", outcome.id);
    }
    assert_eq!(
        releases.requests().len(),
        downloads,
        "nothing downloaded again"
    );
    let changes: Vec<String> = (world.calls().iter())
        .filter(|call| {
            [
                "apply", "delete", "create", "patch", "install", "upgrade", "restart",
            ]
            .iter()
            .any(|verb| call.args.first().is_some_and(|first| first == verb))
        })
        .map(|call| call.line())
        .collect();
    assert_eq!(changes, Vec::<String>::new());
    eprintln!(
        "in-process: the cluster lane installed in {} ms, re-run in {} ms ({} fake calls)",
        first.as_millis(),
        second.as_millis(),
        world.calls().len()
    );
}

/// The plan with the resources check's line cut before the free disk (it
/// changes between two looks while anything else writes to the disk).
fn without_free_disk(mut plan: serde_json::Value) -> serde_json::Value {
    for step in plan["steps"].as_array_mut().unwrap() {
        for action in step["actions"].as_array_mut().unwrap() {
            let detail = action["detail"].as_str().unwrap_or_default();
            if let Some((kept, _)) = detail.split_once(" GiB free disk") {
                action["detail"] = kept.into();
            }
        }
    }
    plan
}

#[test]
fn the_in_process_plan_is_the_binarys_plan() {
    let (world, _releases) = cluster_world();
    cluster_with_istio(&world);
    let context = context_for(&world, true);
    let _programs = context.host.enter();
    let plan = engine::plan(&context, &cluster_selection().resolve()).unwrap();
    let ours = without_free_disk(serde_json::to_value(&plan).unwrap());
    let binary = without_free_disk(
        serde_json::from_str(&stdout(
            &world.install(&["--plan", "--output", "json"]).success(),
        ))
        .unwrap(),
    );
    if ours != binary {
        let dir = world.dir.path();
        std::fs::write(dir.join("ours.json"), format!("{ours:#}")).unwrap();
        std::fs::write(dir.join("binary.json"), format!("{binary:#}")).unwrap();
        let diff = std::process::Command::new("diff")
            .args(["-u", "binary.json", "ours.json"])
            .current_dir(dir)
            .output()
            .unwrap();
        panic!(
            "the plans differ:\n{}",
            String::from_utf8_lossy(&diff.stdout)
        );
    }
    let decided: Vec<&str> = (plan.steps.iter()).map(|step| step.id).collect();
    assert!(decided.contains(&"gateway"), "{decided:?}");
}
