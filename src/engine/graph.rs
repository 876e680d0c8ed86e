//! The step graph: each step's `needs` are its edges, built and checked
//! once. The listed order ([`StepId::ALL`]) must be a topological order
//! (every step after the steps it needs, so the graph has no cycle), and a
//! step's `inputs_from` must be among the steps it needs, directly or not.

use std::sync::OnceLock;

use crate::step_id::StepId;

const STEPS: usize = StepId::ALL.len();

/// The graph, computed from the steps' constants.
struct Graph {
    /// Per step, every step it needs, directly or not.
    reaches: [[bool; STEPS]; STEPS],
    /// Per step, the longest chain of steps that need it, one after the
    /// other (`wait` needs `gateway`, which needs `release`, ...).
    chain: [usize; STEPS],
}

fn graph() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(|| build().unwrap_or_else(|fault| panic!("the step graph: {fault}")))
}

fn build() -> Result<Graph, String> {
    let mut reaches = [[false; STEPS]; STEPS];
    for (at, id) in StepId::ALL.into_iter().enumerate() {
        let info = id.info();
        if info.id != id || id.position() != at {
            return Err(format!(
                "`{id}` is listed at {at} with the constant of `{}`",
                info.id
            ));
        }
        for need in info.needs {
            if need.position() >= at {
                return Err(format!(
                    "`{id}` needs `{need}`, which is not listed before it"
                ));
            }
            reaches[at][need.position()] = true;
            let through = reaches[need.position()];
            for (index, reached) in through.into_iter().enumerate() {
                reaches[at][index] |= reached;
            }
        }
        if let Some(input) = info
            .inputs_from
            .iter()
            .find(|input| !reaches[at][input.position()])
        {
            return Err(format!(
                "`{id}` takes inputs from `{input}` without needing it"
            ));
        }
    }
    let mut chain = [0; STEPS];
    for id in StepId::ALL.into_iter().rev() {
        for need in id.info().needs {
            chain[need.position()] = chain[need.position()].max(chain[id.position()] + 1);
        }
    }
    Ok(Graph { reaches, chain })
}

/// The steps that need `id` directly, in install order.
pub fn dependents(id: StepId) -> impl Iterator<Item = StepId> {
    (StepId::ALL.into_iter()).filter(move |other| other.info().needs.contains(&id))
}

/// The length of the longest chain of steps that need `id`.
pub fn chain(id: StepId) -> usize {
    graph().chain[id.position()]
}

/// Whether `step` needs `other`, directly or through the steps it needs.
pub fn needs(step: StepId, other: StepId) -> bool {
    graph().reaches[step.position()][other.position()]
}

/// The steps whose outputs `step` takes as inputs, and theirs, in install
/// order.
pub fn input_steps(step: StepId) -> Vec<StepId> {
    let mut found = Vec::new();
    let mut pending = step.info().inputs_from.to_vec();
    while let Some(id) = pending.pop() {
        if !found.contains(&id) {
            found.push(id);
            pending.extend(id.info().inputs_from);
        }
    }
    found.sort();
    found
}

#[cfg(test)]
#[allow(clippy::disallowed_macros)]
mod tests {
    use super::*;

    /// The graph is built and checked: the listed order is an order of it.
    #[test]
    fn the_list_is_an_order_of_the_step_graph() {
        build().unwrap();
        let edges: usize = StepId::ALL.iter().map(|id| id.info().needs.len()).sum();
        println!("{STEPS} steps, {edges} edges in the step graph");
    }

    #[test]
    fn the_step_with_the_longest_chain_after_it_starts_first() {
        // k3s -> istio -> namespace -> registry|tls -> release -> gateway
        // -> wait -> backups -> summary
        assert_eq!(
            (
                chain(StepId::Wait),
                chain(StepId::Backups),
                chain(StepId::Summary)
            ),
            (2, 1, 0)
        );
        assert!(chain(StepId::K3s) > chain(StepId::Istio));
        assert!(chain(StepId::Istio) > chain(StepId::Mysql));
        assert!(chain(StepId::Packages) > chain(StepId::Mysql));
        for database in [StepId::Mysql, StepId::Mongodb, StepId::Rabbitmq] {
            assert!(
                chain(StepId::Istio) > chain(database),
                "istio before {database}"
            );
        }
        assert!(chain(StepId::Namespace) > chain(StepId::Storage));
        assert!(needs(StepId::Wait, StepId::Preflight));
        assert!(!needs(StepId::Mysql, StepId::K3s));
    }
}
