//! Kubernetes discovery of Lingma sidecars for the gateway.
//!
//! Watches the EndpointSlices of the LingmaInstance headless Services (selected by label), keeps
//! only ready addresses of slices owned by the instance's own Service, reads each instance's
//! sidecar token from the operator's one tokens Secret and publishes the current set through a
//! `tokio::sync::watch::Receiver<Vec<SidecarEndpoint>>`.
//!
//! RBAC the gateway needs in the watched namespace: `list`/`watch` on
//! `discovery.k8s.io/endpointslices` and `get` on the Secret `lingma-sidecar-tokens` only
//! (`resourceNames`), never on the other Secrets (account passwords).

pub mod names;
pub mod slices;
mod watch;

pub use watch::{DiscoveryConfig, watch_sidecars, watch_sidecars_synced};
