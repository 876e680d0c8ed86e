//! Times a first install in a timed fake world: the full world of the tests
//! (`tests/it/support/full.rs`: the fake cluster, moto, the real MariaDB,
//! RabbitMQ and SecantusDB), where the fakes that stand for a real host's
//! slow work sleep what that work takes, scaled down 100 times. Runs the
//! install with `--jobs 1` and with the default, and prints for each
//! `sequential S s, critical path C s, wall W s, wall/critical R`: S is the
//! `--jobs 1` wall time, C the longest chain of the step graph
//! (`Step::needs`) with each step's time from the `--jobs 1` run, W this
//! run's wall time. The target is R <= 1.10 with the default.
//!
//! The model (real host seconds, then what the fake sleeps):
//! - K3s's install script, up to a Ready node: 60 s, 0.60 s (`k3s-install`)
//! - `istioctl install` up to istiod ready: 90 s, 0.90 s (`istioctl install`)
//! - a Helm release with `--wait` (the application, the provisioner): 120 s,
//!   1.20 s (`helm upgrade`)
//! - the apt install and first start of each server, stood for by its
//!   first (re)start, since the world's packages are there already:
//!   MySQL 40 s, 0.40 s (`systemctl restart mariadb|mysql`); MongoDB 60 s,
//!   0.60 s (`systemctl restart mongod`); RabbitMQ 40 s, 0.40 s
//!   (`rabbitmqctl await_startup`); NFS 20 s, 0.20 s (`exportfs -ra`)
//! - the pods coming up after the release: 60 s, 0.60 s (the first
//!   `kubectl get pods`)
//!
//! Run with `cargo bench --bench install`, with the test servers of
//! `tests/run-all.sh` up and their settings in the environment (see the
//! README). The bench profile keeps debug assertions on: the world's
//! downloads come from 127.0.0.1 over http, which only such builds accept.
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_macros)]

#[path = "../tests/it/support/mod.rs"]
mod support;

use stackinstall::steps::StepId;
use std::collections::BTreeMap;
use std::time::Instant;

use support::{Action, Rule, World, full, servers};

/// Per fake program and the arguments its call starts with (or holds), the
/// seconds that make it as slow as the real host's work it stands for
/// (already divided by 100).
const MODEL: [(&str, &[&str], f64); 8] = [
    ("k3s-install", &[], 0.60),
    ("istioctl", &["install"], 0.90),
    ("helm", &["upgrade"], 1.20),
    ("systemctl", &["restart", "mariadb"], 0.40),
    ("systemctl", &["restart", "mysql"], 0.40),
    ("systemctl", &["restart", "mongod"], 0.60),
    ("rabbitmqctl", &["await_startup"], 0.40),
    ("exportfs", &["-ra"], 0.20),
];

/// Makes the world's fakes slow as the model says: each sleeps before its
/// own work; the first listing of the pods takes as long as they take to
/// come up after the release.
fn slow_down(world: &World) {
    for (program, args, seconds) in MODEL {
        assert!(
            world.bin.join(program).exists(),
            "`{program}` is a fake of the world"
        );
        world.rule(Rule::new(program, args, Action::Sleep { seconds }));
    }
    let pods = Rule::new("kubectl", &["get"], Action::Sleep { seconds: 0.60 });
    world.rule(pods.args_contain("pods").once());
}

/// One first install with `jobs` (none: the default): its wall time and
/// each step's seconds.
fn install(jobs: Option<&str>) -> (f64, BTreeMap<String, f64>) {
    let user = servers::unique("bench");
    let world = full::quick_full_world(&user);
    slow_down(&world);
    let mut args = vec!["--yes", "--output", "json"];
    if let Some(jobs) = jobs {
        args.extend(["--jobs", jobs]);
    }
    let started = Instant::now();
    let output = world
        .command()
        .timeout(std::time::Duration::from_secs(600))
        .args(["install", "--domain", support::DOMAIN, "--self-signed"])
        .args(&args)
        .output()
        .expect("the binary runs");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let seconds = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let id = step["id"].as_str().unwrap().to_string();
            (id, step["seconds"].as_f64().unwrap_or(0.0))
        })
        .collect();
    (wall, seconds)
}

/// The longest chain of the step graph, each step weighing `seconds`.
fn critical_path(seconds: &BTreeMap<String, f64>) -> f64 {
    let mut finish: BTreeMap<StepId, f64> = BTreeMap::new();
    for id in StepId::ALL {
        let start = (id.info().needs.iter())
            .map(|need| finish.get(need).copied().unwrap_or(0.0))
            .fold(0.0, f64::max);
        let own = seconds.get(id.name()).copied().unwrap_or(0.0);
        finish.insert(id, start + own);
    }
    finish.values().copied().fold(0.0, f64::max)
}

fn main() {
    let (sequential, seconds) = install(Some("1"));
    let critical = critical_path(&seconds);
    let (parallel, _) = install(None);
    for (label, wall) in [("--jobs 1", sequential), ("default", parallel)] {
        println!(
            "{label}: sequential {sequential:.2} s, critical path {critical:.2} s, wall {wall:.2} s, wall/critical {:.2}",
            wall / critical
        );
    }
}
