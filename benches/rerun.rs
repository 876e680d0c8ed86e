//! Times a no-op re-run: `install` in a world where every step it runs is
//! done. First the engine alone (config, state, lock, log, fingerprints,
//! verification) with the engine's own steps; then the full world of the
//! tests (`tests/it/support/full.rs`: every step, the fake cluster answering
//! at once, the real MariaDB, RabbitMQ, SecantusDB and moto of
//! the environment file `tests/run-all.sh` writes), where it also counts
//! the programs a re-run spawns, by program.
//! Run with `cargo bench --bench rerun` (the bench profile keeps debug
//! assertions on: the full world's downloads are served over http from
//! 127.0.0.1, which only such builds accept); prints the median and the
//! spread.
#![allow(clippy::disallowed_methods, dead_code, clippy::disallowed_macros)]

#[path = "../tests/it/support/mod.rs"]
mod support;

use support::{full, servers};

use std::collections::BTreeMap;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 30;
const FULL_RUNS: usize = 10;

fn install(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stackinstall"));
    command
        .args(["install", "--domain", "demo.example.com", "--self-signed"])
        .env("STACKINSTALL_ROOT", root)
        .env("HOME", "/root")
        .env("NO_COLOR", "1")
        .env("STACKINSTALL_ONLY", "credentials,summary")
        .env("STACKINSTALL_REQUIREMENTS__CPUS", "1")
        .env("STACKINSTALL_REQUIREMENTS__MEMORY_MIB", "256")
        .env("STACKINSTALL_REQUIREMENTS__DISK_GIB", "0")
        .env(
            "STACKINSTALL_MONGODB__SERVER_PROGRAMS",
            r#"["mongod", "secantusd-py", "python3"]"#,
        );
    command
}

/// The median, min and max of `times`, in milliseconds.
fn spread(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        millis(times[times.len() / 2]),
        millis(times[0]),
        millis(times[times.len() - 1]),
    )
}

/// No-op re-runs of the full world: wall time and programs spawned.
fn full_world() {
    if !cfg!(debug_assertions) {
        // Its downloads come from 127.0.0.1 over http: debug builds only.
        println!(
            "full world: needs debug assertions (the bench profile has them; `--profile dev` too)"
        );
        return;
    }
    let user = servers::unique("bench");
    let world = full::quick_full_world(&user);
    let first = world.install(&[]);
    assert!(
        first.get_output().status.success(),
        "{}",
        support::stderr(&first)
    );
    let mut spawned = BTreeMap::new();
    let mut last = String::new();
    let mut times: Vec<Duration> = (0..FULL_RUNS)
        .map(|_| {
            world.clear_calls();
            let started = Instant::now();
            let output = world.install(&[]);
            let elapsed = started.elapsed();
            assert!(output.get_output().status.success());
            last = support::stderr(&output);
            spawned.clear();
            for call in world.calls() {
                *spawned.entry(call.program).or_insert(0) += 1;
            }
            elapsed
        })
        .collect();
    let (median, min, max) = spread(&mut times);
    let total: usize = spawned.values().sum();
    println!(
        "full world no-op re-run over {FULL_RUNS} runs: median {median:.1} ms, min {min:.1} ms, max {max:.1} ms; {total} programs spawned per run: {spawned:?}"
    );
    // Where the last run's time went: each step's own time, slowest first.
    let steps = support::step_times(&last);
    let slowest: Vec<String> = (steps.iter().take(6))
        .map(|(seconds, id)| format!("{id} {seconds:.1} s"))
        .collect();
    println!("slowest steps of the last run: {}", slowest.join(", "));
    let uninstall = world
        .command()
        .args(["uninstall", "--delete-db", "--yes"])
        .output()
        .expect("the binary runs");
    assert!(
        uninstall.status.success(),
        "{}",
        String::from_utf8_lossy(&uninstall.stderr)
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=ubuntu\nVERSION_ID=\"22.04\"\n",
    )
    .unwrap();
    let first = install(root).output().expect("the binary runs");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let output = install(root).output().expect("the binary runs");
            assert!(output.status.success());
            started.elapsed()
        })
        .collect();
    let (median, min, max) = spread(&mut times);
    println!(
        "engine no-op re-run over {RUNS} runs: median {median:.1} ms, min {min:.1} ms, max {max:.1} ms"
    );
    full_world();
}
