//! What the tests share: the world of a test and its fakes (`world`), the
//! fake cluster and its release server (`cluster`), the world where every
//! step runs (`full`), the test servers (`servers`), and reading what the
//! binary printed (`output`). The benches use it too.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod full;
pub mod in_process;
pub mod output;
pub mod servers;
pub mod world;

pub use output::{
    StepLine, bundle_entries, error_report, finished_steps, json, outcomes, plan_lines, report,
    started_steps, stderr, stdout, step_line, step_times,
};
pub use world::{Action, Call, Config, DOMAIN, Rule, World, os, walk, walk_directories};
