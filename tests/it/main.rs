//! stackinstall's integration tests: one test binary, one module per area
//! (uv's `crates/uv/tests/it/`), sharing one world builder and one set of
//! fakes (`support`, `tests/fakes/`). `tests/run-all.sh` runs them with the
//! test servers; README.md says what runs where.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod support;

mod agents;
mod application;
mod backup;
mod boxes;
mod cli;
mod cluster;
mod crash;
mod databases;
mod doctor;
mod export;
mod inputs;
mod install;
mod join;
mod journeys;
mod mongodb;
mod provider;
mod reliability;
mod scheduled_backups;
mod security;
mod steps;
mod terminal;
mod uninstall;
mod upgrade;
