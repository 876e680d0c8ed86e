//! Reliability and security of the whole install (issue 5): a full install
//! in one world (`support/full.rs`) killed at many moments, interrupted,
//! run twice at once, fed damaged files and bad input, and scanned for
//! secrets.
#![allow(clippy::disallowed_methods)]

#[path = "support/cluster.rs"]
mod cluster;
mod common;
#[path = "support/full.rs"]
mod full;
#[path = "support/servers.rs"]
mod servers;

use common::stderr;

#[test]
fn a_full_install_runs_every_step_and_a_second_run_changes_nothing() {
    let world = full::full_world(&servers::unique("full"));
    let first = world.install(&[]);
    let text = stderr(&first);
    assert!(
        first.get_output().status.success(),
        "install failed:\n{text}"
    );
    eprintln!("{text}");
    let second = world.install(&[]);
    let text = stderr(&second);
    assert!(
        second.get_output().status.success(),
        "re-run failed:\n{text}"
    );
    eprintln!("{text}");
}
