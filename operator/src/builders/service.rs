use k8s_discovery::names::{SIDECAR_PORT, SIDECAR_PORT_NAME};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{BuildError, child_meta, selector_labels};
use crate::crd::LingmaInstance;

/// The headless Service: its EndpointSlices are the gateway's discovery source, and it is the
/// StatefulSet's governing Service (stable pod DNS names).
pub fn desired_service(instance: &LingmaInstance) -> Result<Service, BuildError> {
    Ok(Service {
        metadata: child_meta(instance, instance.name_any())?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Only ready sidecars (connected and logged in) may receive chats.
            publish_not_ready_addresses: Some(false),
            selector: Some(selector_labels(instance)),
            ports: Some(vec![ServicePort {
                name: Some(SIDECAR_PORT_NAME.to_owned()),
                port: SIDECAR_PORT,
                target_port: Some(IntOrString::String(SIDECAR_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                app_protocol: Some("kubernetes.io/ws".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::fixtures::instance;

    #[test]
    fn headless_service_selects_instance_pods_and_carries_discovery_labels() {
        let svc = desired_service(&instance(
            serde_json::json!({"accounts": {"secretRef": {"name": "acc"}}}),
        ))
        .expect("builds");
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(false));
        let labels = svc.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "lingma-operator");
        assert_eq!(labels["app.kubernetes.io/name"], "lingma");
        assert_eq!(labels["app.kubernetes.io/instance"], "team");
        let selector = spec.selector.as_ref().expect("selector");
        assert_eq!(
            selector.len(),
            2,
            "selector must not include mutable labels"
        );
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("mux"), 8318));
        let owner = &svc.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("LingmaInstance", "team", "uid-1")
        );
        assert_eq!(owner.controller, Some(true));
    }
}
