//! The programs, one module each (or a few small ones together).

pub mod cluster;
pub mod helm;
pub mod host;
pub mod istioctl;
pub mod jsonpath;
pub mod kubectl;
pub mod members;
pub mod packages;
pub mod rabbitmq;
pub mod systemctl;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::config::Passthrough;
use crate::{Fake, Reply};

/// Runs the program the fake was started as.
pub fn run(fake: &Fake) -> Reply {
    match fake.program.as_str() {
        "kubectl" => kubectl::run(fake),
        "istioctl" => istioctl::run(fake),
        "helm" => helm::run(fake),
        "systemctl" => systemctl::run(fake),
        "dpkg-query" => packages::dpkg_query(fake),
        "apt-get" => packages::apt_get(fake),
        "exportfs" => host::exportfs(fake),
        "k3s" => host::k3s(fake),
        "k3s-install" => host::k3s_install(fake),
        "k3s-uninstall" => host::k3s_uninstall(fake),
        "rabbitmqctl" => rabbitmq::run(fake),
        "rabbitmq-plugins" => rabbitmq::plugins(fake),
        "ip" => host::ip(fake),
        "iptables-save" => host::iptables_save(fake),
        other => Reply::fail(127, format!("stackinstall-fake: no fake `{other}`\n")),
    }
}

/// Runs the real program for a recorded call: the same arguments and
/// standard input, its output and exit status passed on; then copies the
/// file it wrote into the world, when the world asks for that.
pub fn passthrough(fake: &Fake, passthrough: &Passthrough) -> Reply {
    let child = Command::new(&passthrough.program)
        .args(&fake.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            return Reply::fail(127, format!("{}: {error}\n", passthrough.program.display()));
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&fake.stdin);
    }
    let output = child.wait_with_output().expect("the real program ends");
    let code = output.status.code().unwrap_or(1);
    if let Some(copy) = &passthrough.copy
        && code == 0
        && fake.args.first() == Some(&copy.after)
    {
        let target = fake.host_path(&copy.to);
        let _ = std::fs::create_dir_all(target.parent().unwrap());
        let _ = std::fs::copy(&copy.from, target);
    }
    Reply {
        code,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
