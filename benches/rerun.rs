//! Times a no-op re-run: `install` in a world where every step it runs is
//! done: the engine (config, state, lock, log, fingerprints, verification)
//! with the engine's own steps; the cluster and database steps need fakes or
//! servers and are timed by their tests.
//! Run with `cargo bench --bench rerun`; prints the median and the spread.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 30;

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

fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
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
    times.sort();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "no-op re-run over {RUNS} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        millis(times[RUNS / 2]),
        millis(times[0]),
        millis(times[RUNS - 1])
    );
}
