//! The command line: commands and flags, nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Turns a fresh Ubuntu host into a running application platform: K3s, Helm
/// and Istio, host databases, and the application's Helm release behind an
/// Istio Gateway. Every step is checkpointed, so running it again is safe.
///
/// Without a command it installs: `stackinstall --domain D --ssl-cert C
/// --ssl-key K` is `stackinstall install --domain D --ssl-cert C --ssl-key K`.
#[derive(Debug, Parser)]
#[command(
    name = "stackinstall",
    version,
    propagate_version = true,
    max_term_width = 100,
    override_usage = "stackinstall [--root DIR] --domain NAME (--ssl-cert FILE --ssl-key FILE | --self-signed) [OPTIONS]\n       stackinstall [--root DIR] COMMAND"
)]
pub struct Cli {
    /// Take every host path under DIR instead of `/` (for tests and image builds)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "STACKINSTALL_ROOT",
        default_value = "/"
    )]
    pub root: PathBuf,

    /// The install's flags, when no command is given (with a command, they
    /// are refused: see [`Cli::parse_checked`]).
    #[command(flatten)]
    pub install: InstallArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Whether the command's result is JSON on standard output (`--output
    /// json`): its failure is then a JSON document there too.
    pub fn wants_json(&self) -> bool {
        let output = match &self.command {
            None => self.install.output,
            Some(Command::Install(args)) => args.output,
            Some(Command::Status(args)) => args.output,
            Some(Command::Doctor(args)) => args.output,
            Some(_) => Output::Text,
        };
        output == Output::Json
    }

    /// Parses the command line; exits with the usage error (code 2) when
    /// an install flag comes before a command (`stackinstall --domain D
    /// status`). `--root` is global and goes anywhere.
    pub fn parse_checked() -> Self {
        use clap::parser::ValueSource;
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Self::command();
        let matches = command.get_matches_mut();
        if let Some(name) = matches.subcommand_name() {
            let misplaced = command.get_arguments().find(|arg| {
                arg.get_id() != "root"
                    && matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
            });
            if let Some(arg) = misplaced {
                let flag = arg.get_long().unwrap_or(arg.get_id().as_str());
                command
                    .error(
                        clap::error::ErrorKind::ArgumentConflict,
                        format!("`--{flag}` is an install flag: it goes without a command, or after `install`, not before `{name}`"),
                    )
                    .exit();
            }
        }
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the platform and the application, or show the plan
    Install(InstallArgs),
    /// Remove what the install made, in reverse: by default the release, its
    /// cluster objects, the timers and the credential provider's files; the
    /// --delete-* switches go further
    Uninstall(UninstallArgs),
    /// Show every step's checkpoint and the live health of what it installed
    Status(StatusArgs),
    /// Write every manifest and config file the install would apply, for review or GitOps
    Render(RenderArgs),
    /// Show where the credentials are and which exist (with --reveal, what they are);
    /// `credentials set SERVICE` puts an existing password in
    Credentials(CredentialsArgs),
    /// Renew the ECR pull secret when it is missing or half way to expiry (run by a timer)
    EcrRefresh(EcrRefreshArgs),
    /// Look for the known failure classes on the installed host, read-only:
    /// host services, the cluster, the mesh, and an HTTPS request end to end
    Doctor(DoctorArgs),
    /// Write one archive of the credentials, state, configuration, TLS pair,
    /// release values, K3s datastore and token and the databases, encrypted
    /// with age; `--verify FILE` checks one
    Backup(BackupArgs),
    /// Put a backup back on this host (the same or a fresh one): files, K3s's
    /// datastore and the databases, then converge with the install
    Restore(RestoreArgs),
    /// The kubelet's image credential provider: a CredentialProviderRequest on
    /// stdin, a CredentialProviderResponse with an ECR token on stdout
    EcrCredentialProvider(EcrCredentialProviderArgs),
    /// On a server: write a join file (the token, root's, 0600) and print the
    /// command that joins a new host to this cluster
    JoinCommand(JoinCommandArgs),
    /// On a new host: check everything, then join the cluster as an agent or
    /// a server (K3s, the kubelet's credential provider, the NFS client)
    Join(JoinArgs),
    /// The cluster's nodes: role, K3s version, readiness, etcd membership;
    /// `nodes remove NAME` takes one out
    Nodes(NodesArgs),
    /// On a joined node: leave the cluster (cordon, drain, delete the node and
    /// its etcd member, then K3s's own uninstall here)
    Leave(LeaveArgs),
    /// High availability: `ha enable` moves the first server's datastore from
    /// SQLite to embedded etcd (after a backup), so that servers can join
    Ha(HaArgs),
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// On an agent: go ahead, the node was removed on a server (`nodes remove NAME`)
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct HaArgs {
    #[command(subcommand)]
    pub action: HaAction,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum HaAction {
    /// Move the datastore from SQLite to embedded etcd (K3s v1.22.2 or later)
    Enable,
}

#[derive(Debug, Args)]
pub struct JoinCommandArgs {
    /// What the new host will be
    #[arg(long, value_enum, default_value_t = crate::join::Role::Agent)]
    pub role: crate::join::Role,

    /// How long an agent's bootstrap token is valid (`k3s token create --ttl`)
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: String,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The cluster's registration address, as `join-command` printed it
    #[arg(long, value_name = "URL")]
    pub server: String,

    /// What this host becomes
    #[arg(long, value_enum)]
    pub role: crate::join::Role,

    /// The join file `join-command` wrote (`-` or none: standard input)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Make the checks and print the node profile's actions; change nothing
    #[arg(long)]
    pub plan: bool,

    /// The AWS shared-config profile the kubelet's provider uses
    #[arg(long, value_name = "NAME")]
    pub aws_profile: Option<String>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub action: Option<NodesAction>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodesAction {
    /// Cordon, drain and delete the node (its etcd member with it); refused
    /// when the servers left would lose quorum
    Remove {
        /// The node's name
        name: String,
    },
}

/// Where the configuration comes from.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// Built-in profile name or profile file [default: stackbill-poc]
    #[arg(long, value_name = "NAME|FILE", env = "STACKINSTALL_PROFILE")]
    pub profile: Option<String>,

    /// A TOML file overriding profile values and setting [install] options
    #[arg(long, value_name = "FILE", env = "STACKINSTALL_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The DNS name the application is reached at
    #[arg(long, value_name = "NAME", env = "STACKINSTALL_DOMAIN")]
    pub domain: Option<String>,

    /// The TLS certificate (PEM, full chain, leaf first) for the domain
    #[arg(
        long,
        value_name = "FILE",
        env = "STACKINSTALL_SSL_CERT",
        requires = "ssl_key",
        conflicts_with = "self_signed"
    )]
    pub ssl_cert: Option<PathBuf>,

    /// The certificate's private key (PEM)
    #[arg(
        long,
        value_name = "FILE",
        env = "STACKINSTALL_SSL_KEY",
        requires = "ssl_cert",
        conflicts_with = "self_signed"
    )]
    pub ssl_key: Option<PathBuf>,

    /// Make a self-signed certificate for the domain (for tests and demos)
    #[arg(long)]
    pub self_signed: bool,

    #[command(flatten)]
    pub config: ConfigArgs,

    /// Skip K3s, Helm and Istio (they must already be installed)
    #[arg(long)]
    pub skip_infra: bool,

    /// With --skip-infra: the kubeconfig of the cluster to install into
    /// (else `KUBECONFIG`, which sudo drops unless kept, else K3s's);
    /// recorded, so that status, doctor, uninstall and the renewal timer
    /// use it too
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// Skip MySQL, MongoDB, RabbitMQ and NFS (their passwords must be in the credentials file)
    #[arg(long)]
    pub skip_db: bool,

    /// Print every step with its state and the actions it would take; change nothing
    #[arg(long)]
    pub plan: bool,

    /// Output format of the plan or the run's result
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Run only this step (repeatable); the others are left as they are
    #[arg(
        long,
        value_name = "STEP",
        conflicts_with = "from",
        env = "STACKINSTALL_ONLY",
        value_delimiter = ','
    )]
    pub only: Vec<String>,

    /// Start at this step; earlier steps are left as they are
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,

    /// Run this step again even if its checkpoint says done (repeatable)
    #[arg(long, value_name = "STEP")]
    pub redo: Vec<String>,

    /// Do not ask: go ahead without the `Proceed?` question, and fail on a
    /// missing input instead of asking for it
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// The AWS shared-config profile to fetch the ECR token with
    #[arg(long, value_name = "NAME")]
    pub aws_profile: Option<String>,

    /// How many steps may run at once (steps that need nothing of each
    /// other: the cluster beside the host's servers); 1 runs them one by
    /// one in the listed order
    #[arg(long, env = "STACKINSTALL_JOBS", value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also delete the PersistentVolumeClaims in the namespace
    #[arg(long)]
    pub delete_pvc: bool,

    /// Also delete the namespace (and everything in it)
    #[arg(long)]
    pub delete_namespace: bool,

    /// Also drop our databases and users, remove their config files, the NFS
    /// export and the credentials file (the next install makes new passwords)
    #[arg(long)]
    pub delete_db: bool,

    /// Also remove the NFS provisioner's release, Istio, Helm and K3s (with
    /// K3s's uninstall script)
    #[arg(long)]
    pub delete_infra: bool,

    /// Every --delete-* switch
    #[arg(long)]
    pub all: bool,

    /// Do not ask for confirmation (needed without a terminal)
    #[arg(long, short = 'y', visible_alias = "force")]
    pub yes: bool,

    /// Print what would be removed and kept; change nothing
    #[arg(long)]
    pub plan: bool,

    /// Output format of the plan or the run's result
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Write the archive to FILE [default: `[backup] directory`/backup-TIME.tar.gz.age]
    #[arg(long, value_name = "FILE", conflicts_with = "verify")]
    pub out: Option<PathBuf>,

    /// Write it without encryption (root's, mode 0600): it holds every password in clear
    #[arg(long, conflicts_with = "verify")]
    pub unencrypted: bool,

    /// Check the archive FILE against its manifest (decrypting it first); change nothing
    #[arg(long, value_name = "FILE")]
    pub verify: Option<PathBuf>,

    /// What the backup timer runs: encrypted to `[backup] key_file` (required), written as
    /// `[backup] directory`/scheduled-backup-TIME.tar.gz.age, keeping the newest `[backup] keep`
    #[arg(long, conflicts_with_all = ["out", "unencrypted", "verify"])]
    pub scheduled: bool,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `stackinstall backup` wrote
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Do not ask for confirmation (needed without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct EcrRefreshArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The AWS shared-config profile to fetch the ECR token with
    #[arg(long, value_name = "NAME")]
    pub aws_profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct EcrCredentialProviderArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The AWS shared-config profile to fetch the ECR token with
    #[arg(long, value_name = "NAME")]
    pub aws_profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Output format
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The domain the application is reached at [default: the configuration's, else the live Gateway's]
    #[arg(long, value_name = "NAME", env = "STACKINSTALL_DOMAIN")]
    pub domain: Option<String>,

    /// The installed certificate (PEM) [default: the self-signed one when there is one]
    #[arg(long, value_name = "FILE", env = "STACKINSTALL_SSL_CERT")]
    pub ssl_cert: Option<PathBuf>,

    /// Output format of the report
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Also write a support bundle (.tar.gz, secrets redacted) to FILE
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,

    /// How long each check may take
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub timeout_seconds: u64,

    /// Check only these areas [default: all]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "AREA")]
    pub checks: Vec<DoctorArea>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The DNS name the application is reached at
    #[arg(long, value_name = "NAME", env = "STACKINSTALL_DOMAIN")]
    pub domain: String,

    /// The directory to write the files into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CredentialsArgs {
    /// Print the passwords themselves
    #[arg(long)]
    pub reveal: bool,

    #[command(subcommand)]
    pub action: Option<CredentialsAction>,
}

/// What `credentials` can change.
#[derive(Debug, Subcommand)]
pub enum CredentialsAction {
    /// Put an existing service password into the credentials file (for
    /// `--skip-db`, where the databases exist already): read from standard
    /// input (not echoed on a terminal) or from a 0600 file, never from the
    /// command line
    Set(CredentialsSetArgs),
}

#[derive(Debug, Args)]
pub struct CredentialsSetArgs {
    /// The service whose password it is
    #[arg(value_parser = ["mysql", "mongodb", "rabbitmq"])]
    pub service: String,

    /// Read the password from this file (mode 0600, owned by root) instead of standard input
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

/// What `doctor` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorArea {
    /// Database logins, NFS export, disk, certificate, registry token
    Host,
    /// Nodes, Istio, the gateway Service, storage, pods
    Cluster,
    /// Gateway servers, routes, subsets, sidecars, mTLS
    Mesh,
    /// HTTPS to the gateway's NodePort: certificate and routes
    Probe,
}

impl DoctorArea {
    /// The area's name, as check names start.
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Cluster => "cluster",
            Self::Mesh => "mesh",
            Self::Probe => "probe",
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}
