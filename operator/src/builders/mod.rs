//! Pure functions from a `LingmaInstance` to the objects the operator applies. No I/O: each is
//! unit-tested by value.

mod checksum;
mod pdb;
mod secret;
mod service;
mod statefulset;

use std::collections::BTreeMap;

use k8s_discovery::names::{
    APP_NAME, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF,
    MANAGED_BY,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::LingmaInstance;

pub use checksum::{ACCOUNTS_CHECKSUM_ANNOTATION, accounts_checksum};
pub use pdb::desired_pdb;
pub use secret::{CHECKSUM_KEY, desired_token_secret, desired_tokens_entry, generate_token};
pub use service::desired_service;
pub use statefulset::{PodSettings, desired_statefulset};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the LingmaInstance has no {0}")]
    MissingMetadata(&'static str),
}

/// Labels that select the pods of one instance (immutable in a StatefulSet: keep it minimal).
pub fn selector_labels(instance: &LingmaInstance) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), APP_NAME.to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.name_any()),
    ])
}

/// The label selector string of the pods (status.selector, for the scale subresource).
pub fn selector_string(instance: &LingmaInstance) -> String {
    selector_labels(instance)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on everything the operator creates. `managed-by` is what the gateway selects
/// EndpointSlices by (they copy the Service's labels).
pub fn labels(instance: &LingmaInstance) -> BTreeMap<String, String> {
    let mut labels = selector_labels(instance);
    labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    labels.insert(LABEL_COMPONENT.to_owned(), "lingma-pod".to_owned());
    labels.insert(LABEL_PART_OF.to_owned(), "lingma-gateway".to_owned());
    labels
}

/// Metadata of a child object: same namespace, our labels, owned by the instance so that
/// deleting the instance deletes it (garbage collection).
fn child_meta(instance: &LingmaInstance, name: String) -> Result<ObjectMeta, BuildError> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(
            instance
                .namespace()
                .ok_or(BuildError::MissingMetadata("namespace"))?,
        ),
        labels: Some(labels(instance)),
        owner_references: Some(vec![owner_ref(instance)?]),
        ..ObjectMeta::default()
    })
}

fn owner_ref(instance: &LingmaInstance) -> Result<OwnerReference, BuildError> {
    instance
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingMetadata("uid"))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::LingmaInstance;

    /// An instance as the API server returns it (uid, namespace, generation set).
    pub fn instance(spec: serde_json::Value) -> LingmaInstance {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lingma.io/v1alpha1",
            "kind": "LingmaInstance",
            "metadata": {"name": "team", "namespace": "lingma", "uid": "uid-1", "generation": 3},
            "spec": spec,
        }))
        .expect("valid LingmaInstance")
    }
}

/// Every object the operator applies for `instance`, as multi-document YAML: what
/// `tests/k8s/operator-objects.yaml` holds for the chart's example, so the offline checks
/// (kubernetes-validate, checkov) see the Lingma pods too.
pub fn desired_objects_yaml(
    instance: &LingmaInstance,
    settings: &PodSettings,
    token: &str,
    accounts_checksum: &str,
) -> Result<String, DescribeError> {
    let docs = [
        serde_yaml::to_string(&desired_token_secret(
            instance,
            token,
            "example-checksum-key-not-a-secret",
        )?)?,
        serde_yaml::to_string(&desired_service(instance)?)?,
        serde_yaml::to_string(&desired_tokens_entry(
            instance,
            token,
            "00000000-0000-0000-0000-00000000000a",
        )?)?,
        serde_yaml::to_string(&desired_statefulset(instance, settings, accounts_checksum)?)?,
        serde_yaml::to_string(&desired_pdb(instance)?)?,
    ];
    Ok(docs.join("---\n"))
}

#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("serializing: {0}")]
    Yaml(#[from] serde_yaml::Error),
}
