//! Which version changes stackinstall makes in place, and which it
//! refuses, naming the version to go through first: K3s never skips a
//! minor (docs.k3s.io "Upgrades": "upgrade one minor version at a time"),
//! Istio moves at most one minor in place (istio.io "Upgrade with
//! istioctl": in-place upgrades are supported across one minor), nothing
//! is downgraded (k0sctl refuses downgrades too: restore the backup made
//! before the upgrade instead), and a Kubernetes must be in the Istio's
//! supported range (`kubernetes_range`).

use std::fmt;

use crate::node::{Etcd, Node};

/// A program whose version stackinstall pins and may upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    K3s,
    Istio,
    Helm,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Self::K3s => "K3s",
            Self::Istio => "Istio",
            Self::Helm => "Helm",
        }
    }
}

/// `major.minor.patch` of a version text (`v1.29.0+k3s1`, `1.20.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// Parses `v1.29.0+k3s1`, `1.20.3`, `v3.14.2`; `None` otherwise.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['+', '-']).next()?;
        let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
        let (major, minor) = (parts.next()??, parts.next()??);
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What moving `component` from one version to another is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// The same version: nothing to do.
    Same,
    /// An upgrade stackinstall makes in place.
    Upgrade,
}

/// A change of version stackinstall refuses, and the way through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

/// A refused move is an input error of the step that asked, with its hint.
impl From<Refusal> for crate::error::StepError {
    fn from(refusal: Refusal) -> Self {
        Self::input(refusal.message, refusal.hint)
    }
}

/// Whether `component` may go from `installed` to `wanted` in place.
pub fn check_path(component: Component, installed: &str, wanted: &str) -> Result<Move, Refusal> {
    let name = component.name();
    let (Some(from), Some(to)) = (Version::parse(installed), Version::parse(wanted)) else {
        return Err(Refusal {
            message: format!("cannot compare {name} `{installed}` with `{wanted}`: not a version"),
            hint: "pin a version like `v1.30.2+k3s1` or `1.21.0`".into(),
        });
    };
    if installed == wanted || (from == to && component != Component::K3s) {
        return Ok(Move::Same);
    }
    if is_older(wanted, installed) {
        return Err(Refusal {
            message: format!(
                "{name} {installed} is installed and the profile pins {wanted}: that is a downgrade, which stackinstall refuses"
            ),
            hint: format!(
                "pin {installed} or newer; to go back, restore the backup made before the upgrade (`stackinstall restore FILE`)"
            ),
        });
    }
    let through = |minor: u64| match component {
        Component::K3s => format!("v{}.{minor}.x+k3s1", from.major),
        _ => format!("{}.{minor}.x", from.major),
    };
    match component {
        _ if to.major != from.major => Err(Refusal {
            message: format!("{name} {installed} → {wanted} changes the major version"),
            hint: format!(
                "stackinstall upgrades {name} within major version {} only",
                from.major
            ),
        }),
        Component::K3s if to.minor > from.minor + 1 => Err(Refusal {
            message: format!(
                "K3s {installed} → {wanted} skips a minor version (K3s: upgrade one minor at a time)"
            ),
            hint: format!(
                "pin the newest {} first (`versions.k3s`), install, then {wanted}",
                through(from.minor + 1)
            ),
        }),
        Component::Istio if to.minor > from.minor + 1 => Err(Refusal {
            message: format!(
                "Istio {installed} → {wanted} moves more than one minor version (Istio upgrades in place across one minor)"
            ),
            hint: format!(
                "pin the newest {} first (`versions.istio`), install, then {wanted}",
                through(from.minor + 1)
            ),
        }),
        _ => Ok(Move::Upgrade),
    }
}

/// Whether `version` is older than `than` (a K3s build counts:
/// `v1.29.0+k3s1` is older than `v1.29.0+k3s2`).
pub fn is_older(version: &str, than: &str) -> bool {
    match (Version::parse(version), Version::parse(than)) {
        (Some(found), Some(target)) => found < target || (found == target && version < than),
        _ => false,
    }
}

/// Whether the server `this` (on K3s `found`) may move to `wanted` now, in
/// K3s's order across nodes (docs.k3s.io "Upgrades": "upgrade the server
/// nodes one at a time, then the agents"): every other etcd member Ready,
/// since this server's restart takes its member away for a while and the
/// others must keep a quorum; and no node behind `found`, where an
/// earlier upgrade was left half done (the skew would grow past one
/// minor). Other nodes on `found` are fine: they follow (`order`).
pub fn check_nodes(nodes: &[Node], this: &str, found: &str, wanted: &str) -> Result<(), Refusal> {
    let others = || nodes.iter().filter(|node| node.name != this);
    let down: Vec<String> = others()
        .filter(|node| node.etcd_member && !node.ready)
        .map(|node| node.name.clone())
        .collect();
    if !down.is_empty() {
        let etcd = Etcd::of(nodes, Some(this));
        return Err(Refusal {
            message: format!(
                "K3s {found} → {wanted} restarts this server's etcd member, and {} of the cluster's {} etcd members {} not Ready ({}): etcd's quorum must be healthy first",
                down.len(),
                etcd.members,
                if down.len() == 1 { "is" } else { "are" },
                down.join(", ")
            ),
            hint: "bring them back first (`stackinstall nodes` lists them; `journalctl -u k3s` on each), then run again".into(),
        });
    }
    let behind: Vec<String> = others()
        .filter(|node| is_older(&node.version, found))
        .map(Node::described)
        .collect();
    if !behind.is_empty() {
        return Err(Refusal {
            message: format!(
                "K3s {wanted}: {} still run{} a K3s older than this server's {found}: the last upgrade is not finished",
                behind.join(", "),
                if behind.len() == 1 { "s" } else { "" }
            ),
            hint: format!(
                "bring every node to {found} first, servers one at a time then agents: on each, `sudo stackinstall join` with a new join file (`sudo stackinstall join-command --role server|agent` here); then run again"
            ),
        });
    }
    Ok(())
}

/// What follows this server's move to `wanted`, in K3s's order: the other
/// servers one at a time, then the agents, each still on an older K3s;
/// empty when this is the last node.
pub fn order(nodes: &[Node], this: &str, wanted: &str) -> Option<String> {
    let behind = |server: bool| -> Vec<&str> {
        (nodes.iter())
            .filter(|node| node.name != this && node.is_server() == server)
            .filter(|node| is_older(&node.version, wanted))
            .map(|node| node.name.as_str())
            .collect()
    };
    let (servers, agents) = (behind(true), behind(false));
    let mut next = Vec::new();
    if !servers.is_empty() {
        next.push(format!(
            "the other servers one at a time ({})",
            servers.join(", ")
        ));
    }
    if !agents.is_empty() {
        next.push(format!("the agents ({})", agents.join(", ")));
    }
    (!next.is_empty()).then(|| {
        format!(
            "then {}: on each `sudo stackinstall join` with a new join file (`sudo stackinstall join-command --role server|agent` on this server) and `versions.k3s = \"{wanted}\"`",
            next.join(", then ")
        )
    })
}

/// An agent follows the servers: refused while the servers run different
/// K3s versions (an upgrade of the servers is under way), naming those
/// still behind.
pub fn check_agents_follow(nodes: &[Node]) -> Result<(), Refusal> {
    let servers: Vec<&Node> = nodes.iter().filter(|node| node.is_server()).collect();
    let Some(newest) = (servers.iter())
        .map(|node| node.version.as_str())
        .filter(|version| Version::parse(version).is_some())
        .reduce(|newest, version| match is_older(newest, version) {
            true => version,
            false => newest,
        })
    else {
        return Ok(());
    };
    let behind: Vec<String> = (servers.iter())
        .filter(|node| is_older(&node.version, newest))
        .map(|node| node.described())
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    Err(Refusal {
        message: format!(
            "the servers are being upgraded to K3s {newest}, and {} {} not there yet: agents follow once every server is",
            behind.join(", "),
            if behind.len() == 1 { "is" } else { "are" }
        ),
        hint: "finish the servers first, one at a time (`sudo stackinstall join` on each with a file from `sudo stackinstall join-command --role server`), then make the agent's file; docs.k3s.io \"Upgrades\": servers first, then agents".into(),
    })
}

/// Kubernetes minor versions each Istio minor supports: istio.io
/// "Supported Releases" (docs/releases/supported-releases, the table
/// "Support status of Istio releases", column "Supported Kubernetes
/// Versions"; its data file is istio/istio.io
/// `data/compatibility/supportStatus.yml`, `k8sVersions`, checked for 1.23
/// to 1.26).
const SUPPORT_MATRIX: [(u64, u64, u64); 9] = [
    (18, 24, 27),
    (19, 25, 28),
    (20, 25, 29),
    (21, 26, 29),
    (22, 27, 30),
    (23, 27, 30),
    (24, 28, 31),
    (25, 29, 32),
    (26, 29, 33),
];

/// The Kubernetes minors (lowest, highest) the Istio `version` supports;
/// `None` for an Istio the table does not know.
pub fn kubernetes_range(istio: &str) -> Option<(u64, u64)> {
    let version = Version::parse(istio)?;
    (version.major == 1)
        .then(|| {
            SUPPORT_MATRIX
                .iter()
                .find(|(minor, ..)| *minor == version.minor)
        })?
        .map(|(_, low, high)| (*low, *high))
}

/// The Istio minors stackinstall knows (for messages).
pub fn known_istio() -> String {
    let first = SUPPORT_MATRIX[0].0;
    let last = SUPPORT_MATRIX[SUPPORT_MATRIX.len() - 1].0;
    format!("Istio 1.{first} to 1.{last}")
}

/// Refuses an Istio that does not support the Kubernetes minor
/// `kubernetes` (a K3s `v1.30.2+k3s1` is Kubernetes 1.30), naming an
/// Istio that does.
pub fn check_pair(istio: &str, kubernetes: &str) -> Result<(), Refusal> {
    let Some(kube) = Version::parse(kubernetes) else {
        return Ok(());
    };
    let Some((low, high)) = kubernetes_range(istio) else {
        return Err(Refusal {
            message: format!(
                "Istio {istio} is not in stackinstall's support matrix ({})",
                known_istio()
            ),
            hint: "pin an Istio version stackinstall knows in `versions.istio`".into(),
        });
    };
    if (low..=high).contains(&kube.minor) {
        return Ok(());
    }
    let supporting: Vec<String> = (SUPPORT_MATRIX.iter())
        .filter(|(_, low, high)| (*low..=*high).contains(&kube.minor))
        .map(|(minor, ..)| format!("1.{minor}"))
        .collect();
    Err(Refusal {
        message: format!(
            "Istio {istio} does not support Kubernetes 1.{}: it supports Kubernetes 1.{low} to 1.{high}",
            kube.minor
        ),
        hint: match supporting.is_empty() {
            true => "pin a K3s in that range (`versions.k3s`)".into(),
            false => format!(
                "pin an Istio that supports it ({}) in `versions.istio`, or a K3s in 1.{low} to 1.{high}",
                supporting.join(", ")
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Component::{Helm, Istio, K3s};

    /// The refusal table: each move, and the version named to go through.
    #[test]
    fn skips_downgrades_and_jumps_are_refused_naming_the_way_through() {
        let table: [(Component, &str, &str, Result<Move, &str>); 12] = [
            (K3s, "v1.29.0+k3s1", "v1.29.0+k3s1", Ok(Move::Same)),
            (K3s, "v1.29.0+k3s1", "v1.29.3+k3s1", Ok(Move::Upgrade)),
            (K3s, "v1.29.0+k3s1", "v1.29.0+k3s2", Ok(Move::Upgrade)),
            (K3s, "v1.29.0+k3s1", "v1.30.2+k3s1", Ok(Move::Upgrade)),
            (
                K3s,
                "v1.29.0+k3s1",
                "v1.31.0+k3s1",
                Err("pin the newest v1.30.x+k3s1 first"),
            ),
            (K3s, "v1.29.3+k3s1", "v1.29.0+k3s1", Err("downgrade")),
            (K3s, "v1.29.0+k3s2", "v1.29.0+k3s1", Err("downgrade")),
            (Istio, "1.20.3", "1.21.0", Ok(Move::Upgrade)),
            (
                Istio,
                "1.20.3",
                "1.22.0",
                Err("pin the newest 1.21.x first"),
            ),
            (Istio, "1.21.0", "1.20.3", Err("downgrade")),
            (Helm, "v3.14.2", "v3.16.0", Ok(Move::Upgrade)),
            (Helm, "v3.14.2", "v4.0.0", Err("within major version 3")),
        ];
        for (component, from, to, expected) in table {
            let found = check_path(component, from, to);
            match (expected, found) {
                (Ok(wanted), Ok(found)) => assert_eq!(found, wanted, "{from} → {to}"),
                (Err(words), Err(refusal)) => assert!(
                    refusal.message.contains(words) || refusal.hint.contains(words),
                    "{from} → {to}: {refusal:?} does not say {words}"
                ),
                (expected, found) => panic!("{from} → {to}: {found:?}, wanted {expected:?}"),
            }
        }
    }

    #[test]
    fn an_istio_outside_the_kubernetes_range_is_refused_naming_one_that_fits() {
        assert!(check_pair("1.20.3", "v1.29.0+k3s1").is_ok());
        let refusal = check_pair("1.20.3", "v1.30.2+k3s1").unwrap_err();
        assert!(
            refusal.hint.contains("1.22, 1.23, 1.24, 1.25, 1.26"),
            "{refusal:?}"
        );
        assert!(check_pair("1.25.0", "v1.32.1+k3s1").is_ok());
        let unknown = check_pair("1.40.0", "v1.30.2+k3s1").unwrap_err();
        assert!(
            unknown.message.contains("Istio 1.18 to 1.26"),
            "{unknown:?}"
        );
    }

    fn node(name: &str, server: bool, version: &str, ready: bool) -> Node {
        Node::for_tests(name, server, version, ready)
    }

    #[test]
    fn servers_go_one_at_a_time_with_a_quorum_then_the_agents() {
        let (old, new) = ("v1.29.0+k3s1", "v1.29.5+k3s1");
        let cluster = [
            node("first", true, old, true),
            node("server-2", true, old, true),
            node("server-3", true, old, true),
            node("agent-1", false, old, true),
        ];
        assert_eq!(check_nodes(&cluster, "first", old, new), Ok(()));
        let then = order(&cluster, "first", new).unwrap();
        assert!(
            then.contains("then the other servers one at a time (server-2, server-3), then the agents (agent-1)"),
            "{then}"
        );
        // The first server done: the second goes, then the third.
        let mut rolling = cluster.clone();
        rolling[0].version = new.into();
        assert_eq!(check_nodes(&rolling, "server-2", old, new), Ok(()));
        rolling[1].version = new.into();
        rolling[2].version = new.into();
        assert_eq!(
            order(&rolling, "server-3", new).unwrap(),
            format!(
                "then the agents (agent-1): on each `sudo stackinstall join` with a new join file (`sudo stackinstall join-command --role server|agent` on this server) and `versions.k3s = \"{new}\"`"
            )
        );
        rolling[3].version = new.into();
        assert_eq!(order(&rolling, "first", new), None);

        // Another member not Ready: its quorum would not survive this restart.
        let mut down = cluster.clone();
        down[2].ready = false;
        let refusal = check_nodes(&down, "first", old, new).unwrap_err();
        assert!(
            refusal
                .message
                .contains("1 of the cluster's 3 etcd members is not Ready (server-3)"),
            "{refusal:?}"
        );
        // An agent not Ready does not stop a server.
        let mut agent_down = cluster.clone();
        agent_down[3].ready = false;
        assert_eq!(check_nodes(&agent_down, "first", old, new), Ok(()));
        // A node left behind by the last upgrade: finish that one first.
        let mut behind = cluster.clone();
        behind[3].version = "v1.28.9+k3s1".into();
        let refusal = check_nodes(&behind, "first", old, new).unwrap_err();
        assert!(
            refusal.message.contains("agent-1 (agent, v1.28.9+k3s1) still runs a K3s older than this server's v1.29.0+k3s1"),
            "{refusal:?}"
        );
        // The fake cluster's nodes that say no version: nothing behind.
        let unknown = [node("a", true, "", true), node("b", false, "", true)];
        assert_eq!(check_nodes(&unknown, "a", old, new), Ok(()));
        assert_eq!(order(&unknown, "a", new), None);
    }

    #[test]
    fn agents_wait_until_every_server_runs_the_new_k3s() {
        let (old, new) = ("v1.29.0+k3s1", "v1.29.5+k3s1");
        let mut cluster = [
            node("first", true, new, true),
            node("server-2", true, old, true),
            node("agent-1", false, old, true),
        ];
        let refusal = check_agents_follow(&cluster).unwrap_err();
        assert!(
            refusal.message.contains(
                "upgraded to K3s v1.29.5+k3s1, and server-2 (server, v1.29.0+k3s1) is not there yet"
            ),
            "{refusal:?}"
        );
        cluster[1].version = new.into();
        assert_eq!(check_agents_follow(&cluster), Ok(()));
    }

    #[test]
    fn versions_parse_with_their_prefix_and_build() {
        assert_eq!(
            Version::parse("v1.29.0+k3s1").unwrap().to_string(),
            "1.29.0"
        );
        assert_eq!(Version::parse("1.20").unwrap().patch, 0);
        assert_eq!(Version::parse("nonsense"), None);
    }
}
