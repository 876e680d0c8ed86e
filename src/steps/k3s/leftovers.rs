//! What K3s's own uninstall script can leave on the host: iptables chains,
//! network links and kubelet mounts, reported after `--delete-infra`.

use crate::context::Context;
use crate::host::{self, Command};

/// What K3s's uninstall script can leave: iptables chains, network links,
/// kubelet mounts.
pub fn leftovers(context: &Context) -> Vec<String> {
    let mut found = Vec::new();
    match Command::new("iptables-save").run() {
        Ok(output) => found.extend(
            output
                .stdout
                .lines()
                .filter_map(|line| line.strip_prefix(':'))
                .filter_map(|line| line.split_whitespace().next())
                .filter(|chain| {
                    ["KUBE-", "CNI-", "ISTIO"]
                        .iter()
                        .any(|p| chain.starts_with(p))
                })
                .map(|chain| format!("iptables chain {chain}")),
        ),
        Err(error) => found.push(format!("could not list iptables chains: {error}")),
    }
    match Command::new("ip").args(["-o", "link"]).run() {
        Ok(output) => found.extend(
            output
                .stdout
                .lines()
                .filter_map(|line| line.split(':').nth(1))
                .map(|name| {
                    name.trim()
                        .split('@')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .filter(|name| name == "cni0" || name == "flannel.1")
                .map(|name| format!("network link {name}")),
        ),
        Err(error) => found.push(format!("could not list network links: {error}")),
    }
    let mounts = host::fs::read_optional(&context.host.path("/proc/mounts"))
        .ok()
        .flatten()
        .unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|point| point.contains("/var/lib/kubelet") || point.contains("/run/k3s"))
            .map(|point| format!("mount {point}")),
    );
    found
}
