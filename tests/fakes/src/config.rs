//! A test world as the fakes see it: where they record their calls, where
//! they keep their state, and the behaviour the test asked of them. The
//! test writes the configuration (`record/fakes.json`) before it runs the
//! binary; every fake call reads it.
//!
//! A world is a directory: `bin/` (first on PATH, each fake program a link
//! to the one fake binary), `record/` (this configuration, the call log,
//! the state) and `root/` (the `--root` of the binary under test).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The configuration file, in the record directory.
pub const FILE: &str = "fakes.json";

/// What the fakes of one world do.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default)]
pub struct Config {
    /// The world's root (`--root`): the host files a fake reads or writes
    /// (K3s's kubeconfig, `/etc/exports`, unit files) are under it.
    pub root: PathBuf,
    /// Seconds every call sleeps before its work: a world whose fakes take
    /// a little time, so that a kill lands in the midst of work.
    pub delay_seconds: f64,
    /// Behaviours a test asked for, looked at in order, the first that
    /// matches a call applies.
    pub rules: Vec<Rule>,
    /// systemd: a unit the state does not know, and whose file is not in
    /// the root's `/etc/systemd/system/`, is installed, enabled and active
    /// (a host whose servers run), or not there at all. `k3s` and
    /// `stackinstall-*` units are never there until someone made them.
    pub units_present: bool,
    /// dpkg: every package asked about by name is installed; otherwise the
    /// state's package list (`state/dpkg.json`) says.
    pub all_packages_installed: bool,
    /// apt-get refuses to run: a world whose packages are all there.
    pub apt_forbidden: bool,
    /// What `apt-get install NAME` brings along besides NAME (apt's
    /// dependencies): the versioned packages of a server.
    pub package_dependencies: BTreeMap<String, Vec<String>>,
    /// `rabbitmqctl` does its commands through the management API of the
    /// real RabbitMQ on 127.0.0.1 at this port (as `guest`), instead of
    /// starting an Erlang VM per call.
    pub rabbitmq_management_port: Option<u16>,
    /// `rabbitmqctl import_definitions` returns once the users and vhosts
    /// are in, and the users' tags and the permissions land this many
    /// seconds later (0: all at once).
    pub rabbitmq_import_lag_seconds: f64,
    /// Programs recorded, then run for real.
    pub passthrough: BTreeMap<String, Passthrough>,
    /// `ip -o link`: the host's network links.
    pub ip_links: Vec<String>,
    /// `iptables-save`: the chains of the filter table.
    pub iptables_chains: Vec<String>,
    /// The cluster's Kubernetes minor version (`kubectl version`).
    pub kubernetes_minor: u32,
    /// How many listings of pods see none yet (pods that come up after a
    /// while).
    pub pods_hidden_listings: u32,
    /// The directory of a cluster several worlds (hosts) share: its
    /// objects, tokens and datastore (`programs::members`). `None`: the
    /// world's own state directory, a cluster of one host.
    pub cluster_state: Option<PathBuf>,
    /// This host's node name (its hostname, as K3s registers it).
    pub node_name: String,
    /// This host's address, as its Node's InternalIP.
    pub node_address: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::new(),
            delay_seconds: 0.0,
            rules: Vec::new(),
            units_present: false,
            all_packages_installed: false,
            apt_forbidden: false,
            package_dependencies: BTreeMap::new(),
            rabbitmq_management_port: None,
            rabbitmq_import_lag_seconds: 0.0,
            passthrough: BTreeMap::new(),
            ip_links: vec!["1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536".into()],
            iptables_chains: vec![":INPUT ACCEPT [0:0]".into()],
            kubernetes_minor: 29,
            pods_hidden_listings: 0,
            cluster_state: None,
            node_name: "node1".into(),
            node_address: "192.0.2.10".into(),
        }
    }
}

impl Config {
    /// The configuration of the world whose record directory is `record`
    /// (the defaults when the test wrote none).
    pub fn load(record: &Path) -> Self {
        match std::fs::read(record.join(FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .unwrap_or_else(|error| panic!("{}: {error}", record.join(FILE).display())),
            Err(_) => Self::default(),
        }
    }

    /// Writes the configuration into the record directory `record`.
    pub fn save(&self, record: &Path) {
        let text = serde_json::to_string_pretty(self).expect("the configuration serializes");
        std::fs::write(record.join(FILE), text)
            .unwrap_or_else(|error| panic!("{}: {error}", record.join(FILE).display()));
    }

    /// `path` (an absolute host path) under the world's root.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// One behaviour of a fake that a test asked for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Rule {
    /// The program it applies to.
    pub program: String,
    /// The call's arguments start with these.
    #[serde(default)]
    pub args: Vec<String>,
    /// The call's arguments, joined by spaces, contain this.
    #[serde(default)]
    pub args_contain: Option<String>,
    /// Only while this file exists in the state directory.
    #[serde(default)]
    pub while_file: Option<String>,
    /// Only the first matching call.
    #[serde(default)]
    pub once: bool,
    pub action: Action,
}

impl Rule {
    /// A rule for every call of `program` whose arguments start with `args`.
    pub fn new(program: &str, args: &[&str], action: Action) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
            args_contain: None,
            while_file: None,
            once: false,
            action,
        }
    }

    /// The rule applies only while `file` exists in the state directory.
    pub fn while_file(mut self, file: &str) -> Self {
        self.while_file = Some(file.into());
        self
    }

    /// The rule applies to the first matching call only.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// The rule applies to calls whose arguments contain `text`.
    pub fn args_contain(mut self, text: &str) -> Self {
        self.args_contain = Some(text.into());
        self
    }

    /// Whether the rule is about this call (its file aside).
    pub fn matches(&self, program: &str, args: &[String]) -> bool {
        self.program == program
            && args.len() >= self.args.len()
            && args
                .iter()
                .zip(&self.args)
                .all(|(arg, wanted)| arg == wanted)
            && (self.args_contain.as_ref()).is_none_or(|text| args.join(" ").contains(text))
    }
}

/// What a rule makes the fake do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum Action {
    /// Sleeps, then does the call's work: the time the real program takes.
    Sleep { seconds: f64 },
    /// Never returns, as a program hung with a child of its own: starts
    /// `sleep` and waits for it. The fake's pid and the child's go to
    /// `hung/PROGRAM.pid` and `hung/PROGRAM.child.pid` in the state.
    Hang,
    /// Fails with `code` and `stderr`, without doing the work.
    Fail { code: i32, stderr: String },
    /// Does the work, then the Kubernetes API goes down (K3s stops).
    StopK3sAfter,
}

/// A real program a fake records, then runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Passthrough {
    /// The real program.
    pub program: PathBuf,
    /// After a successful call whose first argument is `after`, the host
    /// file `from` (of the real machine) is copied to `to` (a host path
    /// under the world's root): what the real program wrote, seen by the
    /// binary under test.
    #[serde(default)]
    pub copy: Option<CopyBack>,
}

/// A file a passthrough program wrote, copied into the world.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CopyBack {
    pub after: String,
    pub from: PathBuf,
    pub to: String,
}
