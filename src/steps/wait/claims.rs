//! The namespace's PersistentVolumeClaims that are not Bound, and why: a
//! claim whose StorageClass does not exist stays Pending for ever, and so do
//! the pods that mount it.

use serde_json::Value;

use super::{Kind, PodState, items};
use crate::steps::StepError;

/// One state per claim of `claims` (`kubectl get pvc -o json`) that is not
/// Bound; `class_exists` says whether a StorageClass is in the cluster.
pub fn claim_states(
    claims: &Value,
    class_exists: impl Fn(&str) -> Result<bool, StepError>,
) -> Result<Vec<PodState>, StepError> {
    let mut states = Vec::new();
    for claim in items(claims) {
        let phase = claim["status"]["phase"].as_str().unwrap_or("Pending");
        if phase == "Bound" {
            continue;
        }
        let class = claim["spec"]["storageClassName"].as_str().unwrap_or("");
        let problem = if class.is_empty() {
            format!("{phase}: it names no StorageClass")
        } else if !class_exists(class)? {
            format!(
                "{phase}: its StorageClass `{class}` does not exist, so no volume is ever made for it"
            )
        } else {
            format!(
                "{phase}: StorageClass `{class}` exists, its provisioner has not made the volume yet"
            )
        };
        states.push(PodState {
            name: format!("pvc/{}", claim["metadata"]["name"].as_str().unwrap_or("?")),
            problem: Some(problem),
            kind: Kind::Claim,
            failed: false,
        });
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pending_claim_names_its_missing_storage_class() {
        let claims = json!({ "items": [
            { "metadata": { "name": "data" }, "spec": { "storageClassName": "nfs-client" }, "status": { "phase": "Pending" } },
            { "metadata": { "name": "logs" }, "spec": { "storageClassName": "nfs-client" }, "status": { "phase": "Bound" } },
        ]});
        let states = claim_states(&claims, |_| Ok(false)).unwrap();
        assert_eq!(states.len(), 1, "a Bound claim needs nothing");
        assert_eq!(
            states[0].problem.as_deref(),
            Some(
                "Pending: its StorageClass `nfs-client` does not exist, so no volume is ever made for it"
            )
        );
        let states = claim_states(&claims, |_| Ok(true)).unwrap();
        assert!(
            states[0]
                .problem
                .as_deref()
                .unwrap()
                .contains("has not made the volume yet")
        );
    }
}
