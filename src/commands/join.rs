//! `stackinstall join-command` (on a server: the join file and the command
//! to run on a new host) and `stackinstall join` (on the new host: checks
//! everything before any change, then K3s as agent or server through the
//! engine's node profile). See `crate::join` for the file and the checks.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use super::Result;

use crate::cli::{JoinArgs, JoinCommandArgs};
use crate::config::Flags;
use crate::context::Context;
use crate::engine::Selection;
use crate::engine::install as engine;
use crate::host::{self, Command, kube, service};
use crate::join::{self, JoinFile, Joining, Role};
use crate::node;
use crate::secret::Secret;
use crate::steps::k3s::{self, config_file};
use crate::steps::{StepError, preflight};

/// Where the server's token is.
const SERVER_TOKEN: &str = host::backup::K3S_TOKEN;

/// Runs `join-command`.
pub fn run_command(root: &Path, args: JoinCommandArgs) -> Result<()> {
    preflight::check_root()?;
    let context = super::command_context(root, &args.config, Flags::default(), false, false)?;
    if !service::is_active("k3s").map_err(StepError::from)? || !kube::cluster_answers() {
        return Err(StepError::input(
            "K3s does not run as a server on this host: `join-command` runs on a server of the cluster",
            "run it on the first host (where `stackinstall install` ran), or start K3s (`systemctl start k3s`)",
        )
        .into());
    }
    let etcd = config_file::has_etcd(&context);
    if args.role == Role::Server && !etcd {
        return Err(StepError::input(
            "this cluster keeps its data in SQLite: a second server needs embedded etcd",
            "run `sudo stackinstall ha enable` here first (it backs the datastore up, then restarts K3s with cluster-init)",
        )
        .into());
    }
    let nodes = node::list()?;
    if args.role == Role::Agent {
        crate::upgrade::check_agents_follow(&nodes).map_err(StepError::from)?;
    }
    let token = match args.role {
        Role::Agent => bootstrap_token(&args.ttl)?,
        Role::Server => server_token(&context)?,
    };
    let lock_token = match args.role {
        Role::Agent => None,
        Role::Server => Some(lock_token(&args.ttl)?),
    };
    let file = JoinFile {
        server: registration_address(&context)?,
        role: args.role,
        token: token.expose().to_string(),
        k3s_version: running_version(&context)?,
        api_port: context.config.cluster.api_port,
        flags: config_file::cluster_flags(&context)?,
        nodes: nodes.iter().map(|node| node.name.clone()).collect(),
        node_addresses: (nodes.iter())
            .filter(|node| !node.address.is_empty())
            .map(|node| (node.name.clone(), node.address.clone()))
            .collect(),
        export_clients: join::export_clients(
            &host::fs::read_optional(&context.host.path("/etc/exports"))?.unwrap_or_default(),
            &context.config.nfs.path,
        ),
        export_path: context.config.nfs.path.clone(),
        lock_token: lock_token.map(|token| token.expose().to_string()),
        restored: context.facts().k3s.restored.clone(),
    };
    let path = context.host.path(join::join_file_path(args.role));
    if let Some(parent) = path.parent() {
        host::fs::ensure_dir(parent, 0o700)?;
    }
    host::fs::write_atomic(&path, file.render().as_bytes(), 0o600)?;
    let shown = context.shown(&path);
    let validity = match args.role {
        Role::Agent => format!("a bootstrap token valid for {}", args.ttl),
        Role::Server => "the cluster's server token: guard it as root's password".into(),
    };
    crate::outln!(
        "Join file: `{}` (root's, mode 0600; {validity}).\nCopy it to the new host as root over a private channel (scp), then run there:\n\n  sudo stackinstall join --server {} --role {} --token-file {}\n\nThe new host needs K3s {} (its profile's `versions.k3s`), and its address in the NFS export (`[nfs] node_addresses` here, then `sudo stackinstall install --redo nfs`).",
        shown.display(),
        file.server,
        args.role.word(),
        shown.display(),
        file.k3s_version
    );
    if args.role == Role::Server {
        let servers = nodes.iter().filter(|node| node.is_server()).count() + 1;
        if servers % 2 == 0 {
            context.ui.warn(&format!(
                "with this server the cluster has {servers}: an even number of etcd members tolerates no more failures than one fewer; join one more"
            ));
        }
    }
    Ok(())
}

/// A bootstrap token for one agent, from K3s (`k3s token create`); its
/// output is kept out of the log.
fn bootstrap_token(ttl: &str) -> Result<Secret, StepError> {
    let output = Command::new("k3s")
        .args([
            "token",
            "create",
            "--ttl",
            ttl,
            "--description",
            "stackinstall join",
        ])
        .unlogged_stdout()
        .timeout(Duration::from_secs(60))
        .run()?;
    let token = output.stdout.trim().to_string();
    if token.is_empty() {
        return Err(StepError::failed(
            "`k3s token create` printed no token",
            "look at `journalctl -u k3s`, then run again",
        ));
    }
    Ok(Secret::new(token))
}

/// A token of the join lock's ServiceAccount (made here, with its Role),
/// valid for `ttl`; kept out of the log.
fn lock_token(ttl: &str) -> Result<Secret, StepError> {
    kube::apply(&join::lock_rbac()).run()?;
    let output = kube::kubectl([
        "create",
        "token",
        join::LOCK_ACCOUNT,
        "-n",
        "kube-system",
        "--duration",
        ttl,
    ])
    .unlogged_stdout()
    .run()?;
    Ok(Secret::new(output.stdout.trim().to_string()))
}

/// The cluster's server token (K3s's file, root's).
fn server_token(context: &Context) -> Result<Secret, StepError> {
    let path = context.host.path(SERVER_TOKEN);
    match host::fs::read_optional(&path)? {
        Some(text) if !text.trim().is_empty() => Ok(Secret::new(text.trim().to_string())),
        _ => Err(StepError::failed(
            format!("K3s's server token `{SERVER_TOKEN}` is missing"),
            "this host is not the cluster's first server; run `join-command` there",
        )),
    }
}

/// `https://ADDRESS:PORT`: `[cluster] server_address`, else this host's.
fn registration_address(context: &Context) -> Result<String, StepError> {
    let address = match &context.config.cluster.server_address {
        Some(address) => address.clone(),
        None => context.host_ip()?,
    };
    Ok(format!(
        "https://{address}:{}",
        context.config.cluster.api_port
    ))
}

/// The version of the K3s running here.
fn running_version(context: &Context) -> Result<String, StepError> {
    k3s::running_version(context)?.ok_or_else(|| {
        StepError::failed(
            format!("`{} --version` printed no version", k3s::BINARY),
            "reinstall K3s with `stackinstall install --redo k3s`",
        )
    })
}

/// Runs `join`.
pub fn run(root: &Path, args: JoinArgs) -> Result<()> {
    if !args.plan {
        preflight::check_root()?;
    }
    let file = read_join_file(&args)?;
    if file.role != args.role {
        return Err(StepError::input(
            format!(
                "the join file is for a new {}, not a {}",
                file.role.word(),
                args.role.word()
            ),
            format!(
                "run `sudo stackinstall join-command --role {}` on a server for a file of that role",
                args.role.word()
            ),
        )
        .into());
    }
    let flags = super::aws_profile_flags(args.aws_profile.as_ref());
    let mut context = super::command_context(root, &args.config, flags, false, args.plan)?;
    // A joined server's K3s upgrade backs it up first, as the install's
    // does (an agent holds no data of the cluster and takes none).
    context.back_up = Some(crate::backup::before_upgrade);
    context.join = Some(Joining {
        role: args.role,
        server: args.server.clone(),
        flags: file.flags.clone(),
        restored: file.restored.clone(),
    });
    let (checked, ca) = check_before_joining(&context, &file, &args.server)?;
    for line in &checked {
        context.ui.note(line);
    }
    if args.plan {
        let inclusion = Selection::node().resolve();
        context.included = inclusion.included();
        let plan = engine::plan(&context, &inclusion)?;
        super::install::print_plan(&plan, &context.take_plan_stops(), false);
        return Ok(());
    }
    let _lock = context.state_file().lock()?;
    context.reload_state()?;
    context.log_path = Some(host::log::start(
        &context.host.path(super::install::LOG_DIR),
        "join",
    )?);
    tracing::info!(
        "stackinstall {} join: a {} of {}",
        env!("CARGO_PKG_VERSION"),
        args.role.word(),
        args.server
    );
    let token_path = context.host.path(join::TOKEN_FILE);
    if let Some(parent) = token_path.parent() {
        host::fs::ensure_dir(parent, 0o700)?;
    }
    host::fs::ensure_file(&token_path, format!("{}\n", file.token).as_bytes(), 0o600)?;
    let locked = match &file.lock_token {
        Some(lock_token) if args.role == Role::Server => {
            let kubeconfig = join::lock_kubeconfig(&args.server, &ca, lock_token);
            let path = context.host.path(join::LOCK_KUBECONFIG);
            host::fs::write_atomic(&path, kubeconfig.as_bytes(), 0o600)?;
            k3s::lock::take_lock(&context, k3s::lock::LockAccess::Joining)?;
            true
        }
        _ => false,
    };
    let inclusion = Selection::node().resolve();
    context.included = inclusion.included();
    let result = engine::run(&mut context, &inclusion, 1);
    if locked {
        k3s::lock::release_lock(&context, k3s::lock::LockAccess::Joining)?;
    }
    result?;
    crate::outln!(
        "This host joined {} as a {}; `stackinstall nodes` on a server lists it.",
        args.server,
        args.role.word()
    );
    Ok(())
}

/// The join file from `--token-file`, or standard input.
fn read_join_file(args: &JoinArgs) -> Result<JoinFile> {
    let text = match &args.token_file {
        Some(path) if path.as_os_str() != "-" => {
            host::fs::read_optional(path)?.ok_or_else(|| {
                StepError::input(
                    format!("the join file `{}` is not there", path.display()),
                    "copy the file `stackinstall join-command` wrote on a server to this host",
                )
            })?
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| {
                    StepError::input(
                        format!("cannot read the join file on standard input: {error}"),
                        "pass it with `--token-file FILE`",
                    )
                })?;
            text
        }
    };
    Ok(JoinFile::parse(&text)?)
}

/// Everything `join` checks before it changes anything, each a line
/// saying what held; the first that fails is the error.
fn check_before_joining(
    context: &Context,
    file: &JoinFile,
    server: &str,
) -> Result<(Vec<String>, Vec<u8>)> {
    let mut checked = vec![
        preflight::check_system(context)?.detail(),
        preflight::check_systemd(context)?.detail(),
        preflight::check_resources(context)?.detail(),
    ];
    checked.push(check_ports(context, file.role)?);
    checked.push(check_version(context, file)?);
    checked.extend(k3s::upgrade_check(context)?.map(|check| check.detail()));
    if file.role == Role::Server {
        checked.push(check_flags(context, file)?);
    }
    checked.push(check_node_name(context, file)?);
    checked.push(check_export(context, file)?);
    checked.push(check_aws(context)?);
    let live = JoinFile {
        server: server.to_string(),
        ..file.clone()
    };
    let (line, ca) = join::check_server(&live)?;
    checked.push(line);
    Ok((checked, ca))
}

/// The ports K3s needs here free (or K3s's own, on a re-run).
fn check_ports(context: &Context, role: Role) -> Result<String, StepError> {
    let mut tcp = vec![10250];
    if role == Role::Server {
        tcp.extend([context.config.cluster.api_port, 2379, 2380]);
    }
    let running = service::is_active(role.unit())?;
    for (port, used) in host::system::port_uses(&tcp) {
        if let host::system::PortUse::Taken(program) = used
            && !running
        {
            return Err(StepError::input(
                format!(
                    "TCP port {port} is in use{}: K3s needs it on a {}",
                    program.map(|p| format!(" by `{p}`")).unwrap_or_default(),
                    role.word()
                ),
                "stop what listens there (`ss -ltnp`), then run again",
            ));
        }
    }
    if !running && host::system::udp_port_bound(8472) {
        return Err(StepError::input(
            "UDP port 8472 is in use: flannel's VXLAN needs it on every node",
            "stop what is bound there (`ss -lunp`), then run again",
        ));
    }
    let ports: Vec<String> = tcp.iter().map(|port| format!("{port}/tcp")).collect();
    Ok(format!("ports {} and 8472/udp free", ports.join(", ")))
}

/// The same K3s version as the cluster: no skew.
fn check_version(context: &Context, file: &JoinFile) -> Result<String, StepError> {
    let pinned = &context.config.versions.k3s;
    if pinned != &file.k3s_version {
        return Err(StepError::input(
            format!(
                "this host's profile pins K3s {pinned}, the cluster runs {}: a node joins with the cluster's version, never another",
                file.k3s_version
            ),
            format!(
                "set `versions.k3s = \"{}\"` in a --config file here (a cluster of one node is upgraded by `stackinstall install` on it; several nodes in K3s's order, servers one at a time then agents: docs.k3s.io \"Upgrades\")",
                file.k3s_version
            ),
        ));
    }
    Ok(format!("K3s {pinned}, as the cluster"))
}

/// A server's networks are the cluster's: they cannot differ between
/// servers (K3s refuses the start with "critical configuration value
/// mismatch").
fn check_flags(context: &Context, file: &JoinFile) -> Result<String, StepError> {
    let cluster = &context.config.cluster;
    let pairs = [
        (
            "pod_cidr",
            &cluster.pod_cidr,
            &file.flags.cluster_cidr,
            "cluster-cidr",
        ),
        (
            "service_cidr",
            &cluster.service_cidr,
            &file.flags.service_cidr,
            "service-cidr",
        ),
    ];
    for (setting, mine, theirs, flag) in pairs {
        if mine != theirs {
            return Err(StepError::input(
                format!(
                    "`[cluster] {setting}` is {mine} here, but the cluster's servers run with {flag} {theirs}: every server must share it"
                ),
                format!(
                    "set `[cluster] {setting} = \"{theirs}\"` (or leave it to the cluster's), then run again"
                ),
            ));
        }
    }
    Ok(format!(
        "the servers' shared flags taken from the cluster: cluster-cidr {}, service-cidr {}, cluster-dns {}, disable [{}], secrets-encryption {}",
        file.flags.cluster_cidr,
        file.flags.service_cidr,
        file.flags.cluster_dns,
        file.flags.disable.join(", "),
        file.flags.secrets_encryption
    ))
}

/// This host's node name (its hostname, as K3s registers it) is free.
fn check_node_name(context: &Context, file: &JoinFile) -> Result<String, StepError> {
    let name = join::node_name(&context.host);
    let already = service::is_active(file.role.unit())?;
    if file.nodes.contains(&name) && !already {
        return Err(StepError::input(
            format!("the cluster already has a node named `{name}`"),
            "give this host another hostname (`hostnamectl set-hostname NAME`), or remove the old node first (`sudo stackinstall nodes remove NAME` on a server)",
        ));
    }
    let address = context.host_ip()?;
    let stale = (file.node_addresses.iter())
        .find(|(other, at)| **at == address && **other != name && !already);
    if let Some((other, _)) = stale {
        return Err(StepError::input(
            format!(
                "the cluster still has node `{other}` at this host's address {address}: a host replaced under another name would leave its old etcd member beside the new one"
            ),
            format!(
                "remove the old node first: `sudo stackinstall nodes remove {other}` on a server, then a new join file"
            ),
        ));
    }
    Ok(format!("node name `{name}` is free in the cluster"))
}

/// The first host's NFS export serves this host's address.
fn check_export(context: &Context, file: &JoinFile) -> Result<String, StepError> {
    let address = context.host_ip()?;
    if file.export_clients.is_empty() || join::export_covers(&file.export_clients, &address) {
        return Ok(format!(
            "the NFS export `{}` serves {address}",
            file.export_path
        ));
    }
    Err(StepError::input(
        format!(
            "the NFS export `{}` on the first host serves {} only, not this host's address {address}: the kubelet here could not mount the application's volumes",
            file.export_path,
            file.export_clients.join(", ")
        ),
        format!(
            "on the first host add \"{address}\" to `[nfs] node_addresses` in its --config file and run `sudo stackinstall install --redo nfs`; then make a new join file there and run this again"
        ),
    ))
}

/// Every kubelet pulls from ECR through the provider: the node needs a
/// durable AWS credential source, as `install` checks.
fn check_aws(context: &Context) -> Result<String, StepError> {
    if context.config.registry.refresh_hours == 0 {
        return Ok("no ECR renewal in the profile".into());
    }
    let source = crate::ecr::credential_source(&context.config, &context.host)?;
    if source == crate::ecr::CredentialSource::EnvironmentOnly {
        return Err(crate::ecr::environment_only_error(
            crate::ecr::profile_name(&context.config),
        ));
    }
    Ok(format!(
        "AWS credentials for the kubelet's provider: {source}"
    ))
}
