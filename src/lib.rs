//! stackinstall: one binary that installs K3s, Helm and Istio, host
//! databases and an application's Helm release, every step checkpointed.

#[macro_use]
pub mod print;

pub mod action;
pub mod ask;
pub mod backup;
pub mod certificate;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod credentials;
pub mod doctor;
pub mod ecr;
pub mod engine;
pub mod error;
pub mod host;
pub mod join;
pub mod node;
pub mod pgp;
pub mod provider;
pub mod render;
pub mod resume;
pub mod secret;
pub mod state;
pub mod step_id;
pub mod steps;
pub mod ui;
pub mod upgrade;
