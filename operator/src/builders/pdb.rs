use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{BuildError, child_meta, selector_labels};
use crate::crd::LingmaInstance;

/// At most one Lingma pod voluntarily evicted at a time: each holds a logged-in session and
/// its chats drain on SIGTERM.
pub fn desired_pdb(instance: &LingmaInstance) -> Result<PodDisruptionBudget, BuildError> {
    Ok(PodDisruptionBudget {
        metadata: child_meta(instance, instance.name_any())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(instance)),
                match_expressions: None,
            }),
            // A pod that never became ready (e.g. wrong credentials) must not block node drains.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::fixtures::instance;

    #[test]
    fn pdb_allows_one_disruption_of_the_instance_pods() {
        let pdb = desired_pdb(&instance(
            serde_json::json!({"accounts": {"secretRef": {"name": "acc"}}}),
        ))
        .expect("builds");
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        let labels = spec
            .selector
            .and_then(|s| s.match_labels)
            .expect("match labels");
        assert_eq!(labels["app.kubernetes.io/instance"], "team");
        assert_eq!(
            pdb.metadata.owner_references.expect("owner")[0].kind,
            "LingmaInstance"
        );
    }
}
