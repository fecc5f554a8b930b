//! The pure part of discovery: which sidecars the current EndpointSlices describe.

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::names::{LABEL_INSTANCE, LABEL_SERVICE_NAME, SIDECAR_PORT, SIDECAR_PORT_NAME};

/// One ready address of one sidecar, before its token is known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadyAddress {
    /// Pod name (the EndpointSlice's targetRef), else the address itself.
    pub name: String,
    /// `ws://ip:port`.
    pub url: String,
    /// The LingmaInstance (its token entry is keyed by it).
    pub instance: String,
    /// Uid of the Service controlling the slice (None when no Service controls it).
    pub service_uid: Option<String>,
}

/// The EndpointSlices seen so far, by name; rebuilt into addresses on demand.
#[derive(Debug, Default)]
pub struct SliceSet {
    slices: BTreeMap<String, Vec<ReadyAddress>>,
}

impl SliceSet {
    /// Records a slice (new or changed) and returns its instance.
    pub fn apply(&mut self, slice: &EndpointSlice) -> Option<String> {
        let key = slice.name_any();
        let instance = instance_of(slice);
        let addresses = match &instance {
            Some(instance) => ready_addresses(slice, instance),
            None => Vec::new(),
        };
        self.slices.insert(key, addresses);
        instance
    }

    pub fn delete(&mut self, slice: &EndpointSlice) {
        self.slices.remove(&slice.name_any());
    }

    pub fn clear(&mut self) {
        self.slices.clear();
    }

    /// Every ready address, sorted by name and deduplicated (a pod may briefly sit in two slices).
    pub fn ready(&self) -> Vec<ReadyAddress> {
        let mut all: Vec<ReadyAddress> = self.slices.values().flatten().cloned().collect();
        all.sort();
        all.dedup_by(|a, b| a.name == b.name);
        all
    }
}

fn instance_of(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.labels();
    labels
        .get(LABEL_INSTANCE)
        .or_else(|| labels.get(LABEL_SERVICE_NAME))
        .cloned()
}

fn ready_addresses(slice: &EndpointSlice, instance: &str) -> Vec<ReadyAddress> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(SIDECAR_PORT_NAME))
        .or_else(|| ports.first())
        .and_then(|p| p.port)
        .unwrap_or(SIDECAR_PORT);
    let ipv6 = slice.address_type == "IPv6";
    let service_uid = slice
        .owner_references()
        .iter()
        .find(|o| o.kind == "Service" && o.controller == Some(true))
        .map(|o| o.uid.clone());
    slice
        .endpoints
        .iter()
        // The API says a missing `ready` means ready; terminating endpoints carry ready=false.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| {
            let address = e.addresses.first()?;
            let host = if ipv6 {
                format!("[{address}]")
            } else {
                address.clone()
            };
            let name = e
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .or_else(|| e.hostname.clone())
                .unwrap_or_else(|| address.clone());
            Some(ReadyAddress {
                name,
                url: format!("ws://{host}:{port}"),
                instance: instance.to_owned(),
                service_uid: service_uid.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).expect("valid EndpointSlice")
    }

    #[test]
    fn keeps_only_ready_endpoints_with_pod_names_and_mux_port() {
        let s = slice(serde_json::json!({
            "metadata": {"name": "a-xyz", "labels": {"app.kubernetes.io/instance": "a"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "a", "uid": "svc-a", "controller": true}]},
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9000}, {"name": "mux", "port": 8318}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "a-0"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "a-1"}},
                {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Pod", "name": "a-2"}}
            ]
        }));
        let mut set = SliceSet::default();
        assert_eq!(set.apply(&s).as_deref(), Some("a"));
        assert_eq!(set.ready()[0].service_uid.as_deref(), Some("svc-a"));
        let names: Vec<_> = set.ready().into_iter().map(|a| (a.name, a.url)).collect();
        assert_eq!(
            names,
            vec![
                ("a-0".to_owned(), "ws://10.0.0.1:8318".to_owned()),
                ("a-2".to_owned(), "ws://10.0.0.3:8318".to_owned()),
            ]
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed_and_deleted_slices_leave() {
        let s = slice(serde_json::json!({
            "metadata": {"name": "b-1", "labels": {"kubernetes.io/service-name": "b"}},
            "addressType": "IPv6",
            "ports": [{"port": 8318}],
            "endpoints": [{"addresses": ["fd00::1"], "conditions": {"ready": true}}]
        }));
        let mut set = SliceSet::default();
        set.apply(&s);
        assert_eq!(set.ready()[0].url, "ws://[fd00::1]:8318");
        assert_eq!(set.ready()[0].instance, "b");
        assert_eq!(set.ready()[0].service_uid, None, "no Service controls it");
        set.delete(&s);
        assert!(set.ready().is_empty());
    }
}
