//! Preflight: checks the operator's input and the host before anything
//! changes: root, operating system, systemd as the init, CPU, memory and
//! disk, ports, the domain,
//! and the certificate and key (or, with `--self-signed`, makes a pair under
//! `/etc/stackinstall/tls/`, kept and reused while it is valid).
//!
//! It runs on every install and in every plan, the same way; its only change
//! to the host is the self-signed pair, which uninstall leaves in place.

use std::path::Path;

use time::OffsetDateTime;

use super::{Action, Role, Step, StepError, StepId, StepInfo};
use crate::certificate::{self, EXPIRY_WARNING_DAYS};
use crate::config::Domain;
use crate::context::Context;
use crate::host::system::{self, PortUse};
use crate::host::{self};
use crate::state::{Fingerprint, sha256_hex};

/// The preflight step.
pub struct Preflight;

/// It checks the inputs, so it runs on every install and every plan.
pub const INFO: StepInfo = StepInfo {
    role: Role::ChecksInputs,
    ..StepInfo::new(StepId::Preflight, "Check the host and the inputs")
};

/// Supported systems: `ID` and `VERSION_ID` of os-release.
const SUPPORTED_SYSTEMS: [(&str, &str); 4] = [
    ("ubuntu", "20.04"),
    ("ubuntu", "22.04"),
    ("ubuntu", "24.04"),
    ("debian", "12"),
];

impl Step for Preflight {
    fn info(&self) -> &'static StepInfo {
        &INFO
    }

    fn inputs(&self, context: &Context, fingerprint: &mut Fingerprint) -> Result<(), StepError> {
        let domain = context.config.install.domain.as_deref();
        fingerprint.add("domain", domain.unwrap_or_default());
        Ok(())
    }

    fn look(&self, context: &Context) -> Result<Vec<Action>, StepError> {
        let domain = check_domain(context)?;
        let mut actions = vec![Action::check(format!(
            "domain {domain} is a valid DNS name"
        ))];
        let certificate = check_certificate(context, domain)?;
        actions.extend([
            check_user(context)?,
            check_system(context)?,
            check_systemd(context)?,
            check_resources(context)?,
        ]);
        actions.push(check_ports(context)?);
        actions.extend(certificate);
        // What each step checks of the inputs and the host (a `--skip-infra`
        // component that must be there, a MongoDB series with packages).
        for id in StepId::ALL {
            if let Some(check) = id.info().preflight {
                actions.extend(check(context)?);
            }
        }
        Ok(actions)
    }

    fn verify(&self, _context: &Context) -> Result<(), StepError> {
        Ok(())
    }
}

fn check_user(context: &Context) -> Result<Action, StepError> {
    if context.plan {
        return Ok(Action::check("a plan needs no root; the install will"));
    }
    check_root()?;
    Ok(Action::check("running as root"))
}

/// Fails unless the install runs as root.
pub fn check_root() -> Result<(), StepError> {
    if system::is_root() {
        return Ok(());
    }
    Err(StepError::input(
        "stackinstall install must run as root",
        "run it with sudo, or add --plan to see what it would do without root",
    ))
}

pub(crate) fn check_system(context: &Context) -> Result<Action, StepError> {
    let path = context.host.path("/etc/os-release");
    let fields = system::os_release(&path).ok_or_else(|| {
        StepError::input(
            format!(
                "cannot read `{}` to tell the operating system",
                context.shown(&path).display()
            ),
            "stackinstall supports Ubuntu 20.04, 22.04, 24.04 and Debian 12",
        )
    })?;
    let id = fields.get("ID").map_or("", String::as_str);
    let version = fields.get("VERSION_ID").map_or("", String::as_str);
    let name = fields
        .get("PRETTY_NAME")
        .cloned()
        .unwrap_or_else(|| format!("{id} {version}"));
    if SUPPORTED_SYSTEMS.contains(&(id, version)) {
        Ok(Action::check(format!(
            "operating system {name} is supported"
        )))
    } else {
        Err(StepError::input(
            format!("the operating system {name} is not supported"),
            "use Ubuntu 20.04, 22.04 or 24.04 (or Debian 12)",
        ))
    }
}

/// The rule of systemd's `sd_booted()`: the host runs systemd as its init
/// when `/run/systemd/system` exists. Every server and K3s run as its
/// units: on a host without it nothing would start them, or start them
/// again after a reboot. A plan says so and goes on.
pub(crate) fn check_systemd(context: &Context) -> Result<Action, StepError> {
    let path = context.host.path("/run/systemd/system");
    let shown = context.shown(&path);
    if path.is_dir() {
        return Ok(Action::check(format!(
            "booted with systemd (`{}` exists)",
            shown.display()
        )));
    }
    let message = format!(
        "this host was not booted with systemd (`{}` does not exist)",
        shown.display()
    );
    let error = StepError::input(
        message.clone(),
        "the servers and K3s run as systemd units, started at every boot: install on a host (a VM or a machine, or a container whose PID 1 is systemd) booted with systemd",
    );
    if context.plan {
        context
            .ui
            .warn(&format!("{message}: the install will stop here"));
        context.plan_stops_with(error);
        return Ok(Action::check(format!(
            "{message}: NOT BOOTED WITH SYSTEMD, the install will stop here"
        )));
    }
    Err(error)
}

pub(crate) fn check_resources(context: &Context) -> Result<Action, StepError> {
    let needs = &context.config.requirements;
    let cpus = system::cpu_count();
    let memory = system::memory_mib().unwrap_or(0);
    let disk = system::free_disk_gib(&context.host.path("/var/lib")).unwrap_or(0);
    let short = [
        (cpus as u64) < u64::from(needs.cpus),
        memory < needs.memory_mib,
        disk < needs.disk_gib,
    ];
    let summary = format!(
        "{cpus} CPUs (needs {}), {memory} MiB memory (needs {}), {disk} GiB free disk (needs {})",
        needs.cpus, needs.memory_mib, needs.disk_gib
    );
    if !short.contains(&true) {
        return Ok(Action::check(format!("resources: {summary}")));
    }
    let error = StepError::input(
        format!(
            "the host is too small for profile `{}`: {summary}",
            context.config.name
        ),
        "use a bigger machine, or lower `[requirements]` in a --config file if you know it is enough",
    );
    if context.plan {
        context.ui.warn(&format!(
            "the host is too small for profile `{}`: the install will stop here",
            context.config.name
        ));
        context.plan_stops_with(error);
        return Ok(Action::check(format!(
            "resources: {summary}: TOO SMALL, the install will stop here"
        )));
    }
    Err(error)
}

/// A port the install needs, the step that serves it, and the programs
/// that may already hold it.
struct NeededPort {
    port: u16,
    step: StepId,
    programs: Vec<String>,
    /// The step's service: a port systemd holds for a socket unit that
    /// starts it is held by its own service.
    unit: String,
}

fn needed_ports(context: &Context) -> Vec<NeededPort> {
    let config = &context.config;
    let port = |port, step, programs: &[String]| NeededPort {
        port,
        step,
        programs: programs.to_vec(),
        unit: String::new(),
    };
    let served = |port: u16, step, programs: &[String], unit: String| NeededPort {
        port,
        step,
        programs: programs.to_vec(),
        unit,
    };
    let k3s = ["k3s".to_string(), "k3s-server".to_string()];
    let mut ports = Vec::new();
    if !config.install.skip_infra {
        ports.push(port(config.cluster.api_port, StepId::K3s, &k3s));
        ports.push(port(config.istio.http_node_port, StepId::Istio, &k3s));
        ports.push(port(config.istio.https_node_port, StepId::Istio, &k3s));
    }
    if !config.install.skip_db {
        let mysql_unit = super::mysql::unit_for(context);
        ports.push(served(
            config.mysql.port,
            StepId::Mysql,
            &config.mysql.server_programs,
            mysql_unit,
        ));
        ports.push(served(
            config.mongodb.port,
            StepId::Mongodb,
            &config.mongodb.server_programs,
            config.mongodb.service.clone(),
        ));
        ports.push(port(
            config.rabbitmq.port,
            StepId::Rabbitmq,
            &config.rabbitmq.server_programs,
        ));
        ports.push(port(
            config.rabbitmq.management_port,
            StepId::Rabbitmq,
            &config.rabbitmq.server_programs,
        ));
        ports.push(port(config.nfs.port, StepId::Nfs, &[]));
    }
    ports
}

fn check_ports(context: &Context) -> Result<Action, StepError> {
    let needed = needed_ports(context);
    let ports: Vec<u16> = needed.iter().map(|n| n.port).collect();
    let mut uses = system::port_uses(&ports);
    for NeededPort {
        port,
        step,
        programs,
        unit,
    } in &needed
    {
        let Some(PortUse::Taken(holder)) = uses.remove(port) else {
            continue;
        };
        if holder.is_none() && context.plan && !system::is_root() {
            context.ui.warn(&format!(
                "port {port} is in use by a program only root can see: the install will check it"
            ));
            continue;
        }
        let ours = match &holder {
            Some(program) if program == "systemd" && !unit.is_empty() => {
                own_socket_unit(*port, unit)?
            }
            Some(program) => programs.contains(program),
            // A kernel service (nfsd) has no process; trust our checkpoint.
            None => context.state.steps.contains_key(step),
        };
        if !ours {
            let holder = holder.map_or("another program".into(), |p| format!("`{p}`"));
            return Err(StepError::input(
                format!("port {port}, needed by the `{step}` step, is already in use by {holder}"),
                format!(
                    "stop that program or move it to another port (`ss -ltnp 'sport = :{port}'` shows it), then run again"
                ),
            ));
        }
    }
    let list: Vec<String> = needed.iter().map(|n| n.port.to_string()).collect();
    Ok(Action::check(format!(
        "ports {} are free or held by their own service",
        list.join(", ")
    )))
}

/// Whether systemd holds `port` for a socket unit that starts `unit` (an
/// enabled `mariadb.socket`): the port is then its own service's.
fn own_socket_unit(port: u16, unit: &str) -> Result<bool, StepError> {
    let unit = unit.strip_suffix(".service").unwrap_or(unit);
    let activated = host::service::activated_by_port(port)?;
    Ok(activated
        .iter()
        .any(|name| name.strip_suffix(".service").unwrap_or(name) == unit))
}

/// The domain, parsed where it was read: here only whether there is one.
fn check_domain(context: &Context) -> Result<&Domain, StepError> {
    context.config.install.domain.as_ref().ok_or_else(|| {
        StepError::input(
            "no domain given",
            "pass --domain NAME (the DNS name the application is reached at)",
        )
    })
}

fn check_certificate(context: &Context, domain: &Domain) -> Result<Vec<Action>, StepError> {
    let install = &context.config.install;
    let given = (install.ssl_cert.is_some(), install.ssl_key.is_some());
    // The flags cannot be given together, but a config file or the
    // environment can set one and a flag the other.
    if install.self_signed && given != (false, false) {
        return Err(StepError::input(
            "both a certificate (--ssl-cert, --ssl-key) and --self-signed are set",
            "choose one: look at `[install]` in the --config file and the STACKINSTALL_INSTALL__* and STACKINSTALL_SSL_* variables",
        ));
    }
    if install.self_signed {
        return self_signed(context, domain);
    }
    let (Some(certificate_path), Some(key_path)) = (&install.ssl_cert, &install.ssl_key) else {
        let message = match given {
            (true, false) => "--ssl-cert is set but --ssl-key is not",
            (false, true) => "--ssl-key is set but --ssl-cert is not",
            _ => "no certificate given",
        };
        return Err(StepError::input(
            message,
            "pass --ssl-cert FILE and --ssl-key FILE, or --self-signed for a test install",
        ));
    };
    let certificate = read_input(certificate_path, "--ssl-cert")?;
    let key = match host::fs::read_bytes(key_path) {
        // A plan needs no root: the key only root may read is the install's
        // to check.
        Err(error)
            if context.plan
                && !system::is_root()
                && error.source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return plan_without_the_key(context, &certificate, certificate_path, key_path, domain);
        }
        _ => read_input(key_path, "--ssl-key")?,
    };
    let info = certificate::check_pair(&certificate, &key, domain, OffsetDateTime::now_utc())
        .map_err(|error| {
            StepError::input(
                format!(
                    "--ssl-cert `{}` / --ssl-key `{}`: {error}",
                    certificate_path.display(),
                    key_path.display()
                ),
                error.hint(key_path),
            )
        })?;
    if info.days_left < EXPIRY_WARNING_DAYS {
        context.ui.warn(&format!(
            "the certificate `{}` expires in {} days ({}): renew it soon",
            certificate_path.display(),
            info.days_left,
            info.not_after.date()
        ));
    }
    Ok(vec![Action::check(format!(
        "certificate {} covers {domain}, matches its key, valid until {}",
        certificate_path.display(),
        info.not_after.date()
    ))])
}

/// A plan run without root, whose key only root can read: the certificate
/// checked alone, and the plan says the key was not.
fn plan_without_the_key(
    context: &Context,
    certificate: &[u8],
    certificate_path: &Path,
    key_path: &Path,
    domain: &Domain,
) -> Result<Vec<Action>, StepError> {
    let now = OffsetDateTime::now_utc();
    let info = certificate::check_certificate(certificate, domain, now).map_err(|error| {
        StepError::input(
            format!("--ssl-cert `{}`: {error}", certificate_path.display()),
            error.hint(key_path),
        )
    })?;
    context.ui.note(&format!(
        "--ssl-key `{}` is readable by root only: this plan without root skips the key check (the install, as root, makes it)",
        key_path.display()
    ));
    Ok(vec![Action::check(format!(
        "certificate {} covers {domain}, valid until {}; key {} not checked (root only; the install checks it)",
        certificate_path.display(),
        info.not_after.date(),
        key_path.display()
    ))])
}

fn read_input(path: &Path, flag: &str) -> Result<Vec<u8>, StepError> {
    host::fs::read_bytes(path).map_err(|error| {
        StepError::input(
            format!(
                "{flag} `{}` cannot be read: {}",
                path.display(),
                error.source
            ),
            format!("check the path given to {flag} and that root can read it"),
        )
    })
}

/// With `--self-signed`: the pair kept from an earlier install, reused
/// while valid; else the `tls` step makes one.
fn self_signed(context: &Context, domain: &str) -> Result<Vec<Action>, StepError> {
    let (certificate_path, key_path) = context.tls_paths().expect("self-signed paths are fixed");
    let current = (
        host::fs::read_bytes(&certificate_path),
        host::fs::read_bytes(&key_path),
    );
    if let (Ok(certificate), Ok(key)) = current {
        let valid = certificate::check_pair(&certificate, &key, domain, OffsetDateTime::now_utc());
        if valid.is_ok_and(|info| info.days_left >= EXPIRY_WARNING_DAYS) {
            return Ok(vec![Action::check(format!(
                "self-signed certificate {} for {domain} is in place (sha256 {})",
                context.shown(&certificate_path).display(),
                &sha256_hex(&certificate)[..16]
            ))]);
        }
    }
    Ok(vec![Action::check(format!(
        "no valid self-signed certificate for {domain} in {}: the `tls` step makes one",
        context.shown(&certificate_path).display()
    ))])
}
