//! Kubernetes discovery of Lingma sidecars for the gateway.
//!
//! Watches the EndpointSlices of the LingmaInstance headless Services (selected by label), keeps
//! only ready addresses, reads each instance's sidecar token from its Secret and publishes the
//! current set through a `tokio::sync::watch::Receiver<Vec<SidecarEndpoint>>`.
//!
//! RBAC the gateway needs in the watched namespace: `list`/`watch` on
//! `discovery.k8s.io/endpointslices` and `get` on `secrets`.

pub mod names;
pub mod slices;
mod watch;

pub use watch::{DiscoveryConfig, watch_sidecars};
