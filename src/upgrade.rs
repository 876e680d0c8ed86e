//! Which version changes stackinstall makes in place, and which it
//! refuses, naming the version to go through first: K3s never skips a
//! minor (docs.k3s.io "Upgrades": "upgrade one minor version at a time"),
//! Istio moves at most one minor in place (istio.io "Upgrade with
//! istioctl": in-place upgrades are supported across one minor), nothing
//! is downgraded (k0sctl refuses downgrades too: restore the backup made
//! before the upgrade instead), and a Kubernetes must be in the Istio's
//! supported range (`kubernetes_range`).

use std::fmt;

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
    if to < from || (from == to && installed > wanted) {
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

/// A node of the cluster, as `kubectl get nodes -o json` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Its kubelet's version (`status.nodeInfo.kubeletVersion`: K3s's own,
    /// `v1.29.0+k3s1`); `None` when the node does not say.
    pub version: Option<String>,
    /// A server (K3s labels them `node-role.kubernetes.io/control-plane`),
    /// else an agent.
    pub server: bool,
}

/// The nodes of a `kubectl get nodes -o json` list.
pub fn nodes_of(list: &serde_json::Value) -> Vec<Node> {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    (items.iter())
        .map(|node| {
            let labels = &node["metadata"]["labels"];
            Node {
                name: node["metadata"]["name"].as_str().unwrap_or("?").to_string(),
                version: (node["status"]["nodeInfo"]["kubeletVersion"].as_str())
                    .map(str::to_string),
                server: ["control-plane", "master"].iter().any(|role| {
                    labels[format!("node-role.kubernetes.io/{role}")].as_str() == Some("true")
                }),
            }
        })
        .collect()
}

/// Refuses an upgrade of this host's K3s to `wanted` while another node
/// runs an older K3s: stackinstall upgrades the node it runs on, and K3s's
/// order (docs.k3s.io "Upgrades": servers first, one at a time, then the
/// agents) is the operator's to follow across nodes until `join` (issue
/// 26) can. One older node is this one (its K3s is the one upgraded).
pub fn check_nodes(nodes: &[Node], wanted: &str) -> Result<(), Refusal> {
    let Some(target) = Version::parse(wanted) else {
        return Ok(());
    };
    let older: Vec<&Node> = (nodes.iter())
        .filter(|node| {
            node.version.as_deref().is_some_and(|version| {
                Version::parse(version)
                    .is_some_and(|found| found < target || (found == target && version < wanted))
            })
        })
        .collect();
    if older.len() <= 1 {
        return Ok(());
    }
    let named = |server: bool| -> Vec<String> {
        (older.iter())
            .filter(|node| node.server == server)
            .map(|node| node.name.clone())
            .collect()
    };
    let (servers, agents) = (named(true), named(false));
    let shown: Vec<String> = (older.iter())
        .map(|node| {
            let role = if node.server { "server" } else { "agent" };
            format!(
                "{} ({role}, {})",
                node.name,
                node.version.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let list = |names: &[String]| match names.is_empty() {
        true => "none".to_string(),
        false => names.join(", "),
    };
    Err(Refusal {
        message: format!(
            "K3s {wanted}: {} nodes of this cluster run an older K3s ({}), and stackinstall upgrades only the node it runs on",
            older.len(),
            shown.join(", ")
        ),
        hint: format!(
            "upgrade the nodes to {wanted} in K3s's order (docs.k3s.io \"Upgrades\"): the servers one at a time ({}), then the agents ({}); then run the install again",
            list(&servers),
            list(&agents)
        ),
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

    #[test]
    fn other_nodes_on_an_older_k3s_refuse_the_upgrade_naming_servers_then_agents() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "node1", "labels": {"node-role.kubernetes.io/control-plane": "true"}},
             "status": {"nodeInfo": {"kubeletVersion": "v1.29.0+k3s1"}}},
            {"metadata": {"name": "server-2", "labels": {"node-role.kubernetes.io/master": "true"}},
             "status": {"nodeInfo": {"kubeletVersion": "v1.29.0+k3s1"}}},
            {"metadata": {"name": "agent-1", "labels": {}},
             "status": {"nodeInfo": {"kubeletVersion": "v1.29.0+k3s1"}}},
        ]});
        let nodes = nodes_of(&list);
        let refusal = check_nodes(&nodes, "v1.29.5+k3s1").unwrap_err();
        assert!(
            refusal
                .hint
                .contains("the servers one at a time (node1, server-2), then the agents (agent-1)"),
            "{refusal:?}"
        );
        assert!(refusal.message.contains("3 nodes"), "{refusal:?}");
        // The others done by hand first: only this one is left.
        let mut done = nodes.clone();
        for node in &mut done[1..] {
            node.version = Some("v1.29.5+k3s1".into());
        }
        assert_eq!(check_nodes(&done, "v1.29.5+k3s1"), Ok(()));
        assert_eq!(check_nodes(&nodes[..1], "v1.29.5+k3s1"), Ok(()));
        // The fake cluster's node says no version: nothing to compare.
        assert_eq!(
            check_nodes(
                &nodes_of(
                    &serde_json::json!({"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]})
                ),
                "v1.29.5+k3s1"
            ),
            Ok(())
        );
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
