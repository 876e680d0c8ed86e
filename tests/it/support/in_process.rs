//! A world's steps run in the test's own process: the library's steps and
//! engine, with a host whose programs are the world's fakes called as
//! functions (`stackinstall::host::process`, `stackinstall_fakes::call`).
//! No stackinstall binary starts, and no fake program: a step's look, run
//! and verification take milliseconds. The fakes record each call in the
//! world's call log as they do when they run as programs.

use std::path::PathBuf;
use std::sync::Arc;

use stackinstall::config::{Config, Flags, Sources};
use stackinstall::context::Context;
use stackinstall::host::process::{Invocation, Programs};
use stackinstall::host::{Host, Output};
use stackinstall::ui::{Mode, Ui};

use super::world::{DOMAIN, World};

/// The world's fakes, in-process.
struct Fakes {
    record: PathBuf,
    /// The world's `bin`: a program is there when the world faked it.
    bin: PathBuf,
}

impl Programs for Fakes {
    fn run(&self, invocation: &Invocation) -> Option<Output> {
        let (program, args) = match script_exec(invocation) {
            Some((program, args)) => (program, args),
            None => (invocation.program.to_string(), invocation.args.to_vec()),
        };
        // The world's fakes come first on its `PATH`; the machine's
        // programs (`tar`, a file a step installed) after them.
        if program.contains('/') || !self.bin.join(&program).exists() {
            return run_real(&program, &args, invocation);
        }
        let reply = stackinstall_fakes::call(
            &self.record,
            &program,
            args,
            invocation.stdin.unwrap_or_default().to_vec(),
            invocation.env.to_vec(),
        );
        Some(Output {
            stdout: reply.stdout,
            stderr: reply.stderr,
            code: Some(reply.code),
        })
    }
}

/// `sh SCRIPT ARGS…` of a test's one-line script `exec PROGRAM "$@"` (the
/// K3s install script the tests serve): what `sh` would run, `PROGRAM
/// ARGS…`. There is no `sh` in-process; no other script can run.
fn script_exec(invocation: &Invocation) -> Option<(String, Vec<String>)> {
    let (script, args) = invocation.args.split_first()?;
    if invocation.program != "sh" {
        return None;
    }
    let text = std::fs::read_to_string(script).ok()?;
    let line = text
        .strip_prefix("#!/bin/sh\n")?
        .strip_suffix(" \"$@\"\n")?;
    let program = line.strip_prefix("exec ")?;
    Some((program.to_string(), args.to_vec()))
}

/// A program the world did not fake (`tar`, or a file a step installed
/// such as the K3s binary the tests serve): the machine runs it, as it
/// would without the in-process host; `None` when there is none.
fn run_real(program: &str, args: &[String], invocation: &Invocation) -> Option<Output> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(invocation.env.iter().cloned())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let stdin = invocation.stdin.unwrap_or_default().to_vec();
    let mut pipe = child.stdin.take()?;
    std::thread::spawn(move || pipe.write_all(&stdin));
    let output = child.wait_with_output().ok()?;
    Some(Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code(),
    })
}

impl World {
    /// The world's host, its programs the world's fakes in-process.
    pub fn in_process_host(&self) -> Host {
        let fakes = Fakes {
            record: self.record.clone(),
            bin: self.bin.clone(),
        };
        Host::with_programs(&self.root, Arc::new(fakes))
    }

    /// A context for an install of `DOMAIN --self-signed` on this world, as
    /// the binary would make one from the world's environment (`plan`: a
    /// plan, which changes nothing). Enter its host (`context.host.enter()`)
    /// before calling a step on this thread.
    pub fn in_process_context(&self, plan: bool) -> Context {
        // The variables the binary's configuration would read.
        let environment: Vec<(String, String)> = (self.environment().into_iter())
            .filter(|(key, _)| key.starts_with("STACKINSTALL_"))
            .collect();
        let sources = Sources {
            environment,
            flags: Flags {
                domain: Some(DOMAIN.into()),
                self_signed: true,
                ..Flags::default()
            },
            ..Sources::default()
        };
        let config = Config::load(&sources).expect("the world's configuration loads");
        let ui = Ui::new(Mode::Plain, true);
        ui.set_quiet(true);
        let home = self.root.join("root");
        Context::new(config, self.in_process_host(), ui, plan, &home)
            .expect("the world's state loads")
    }
}
