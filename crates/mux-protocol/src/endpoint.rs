/// One sidecar as discovery sees it (static list or Kubernetes EndpointSlices). Shared by
/// every discovery source and the gateway's pool.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SidecarEndpoint {
    /// Stable name (pod name in a cluster), used for routing and metric labels.
    pub name: String,
    /// Base URL of the sidecar, e.g. `ws://10.0.0.7:8318` (the mux path is appended).
    pub url: String,
    /// Bearer token for this sidecar (per instance in a cluster); `None` = the gateway's
    /// default SIDECAR_TOKEN.
    pub token: Option<String>,
}

impl std::fmt::Debug for SidecarEndpoint {
    // The token must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarEndpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
