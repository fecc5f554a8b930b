//! Names and labels shared by the operator (which creates the objects) and the gateway's
//! discovery (which selects them). One place, so the two cannot drift apart.

/// `app.kubernetes.io/managed-by` value on everything the operator creates.
pub const MANAGED_BY: &str = "lingma-operator";
/// `app.kubernetes.io/name` value of LingmaInstance objects.
pub const APP_NAME: &str = "lingma";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Label the EndpointSlice controller puts on every slice: the owning Service's name.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The default selector of the gateway (GATEWAY_K8S_LABEL_SELECTOR).
pub const DEFAULT_LABEL_SELECTOR: &str = "app.kubernetes.io/managed-by=lingma-operator";

/// Name of the sidecar port (the mux WebSocket, probes, metrics).
pub const SIDECAR_PORT_NAME: &str = "mux";
pub const SIDECAR_PORT: i32 = 8318;

/// Key of the per-instance token Secret that holds the gateway-to-sidecar bearer token.
pub const TOKEN_KEY: &str = "token";

/// Name of the Secret holding an instance's sidecar token (mounted by its pods).
pub fn token_secret_name(instance: &str) -> String {
    format!("{instance}-sidecar-token")
}

/// The one Secret per namespace the gateway may read (`get` by this name only): the operator
/// copies each instance's token into it, keyed by instance name, with the uid of the
/// instance's Service. Account passwords never live there.
pub const SIDECAR_TOKENS_SECRET: &str = "lingma-sidecar-tokens";

/// One entry of [`SIDECAR_TOKENS_SECRET`] (JSON under the instance's key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenEntry {
    /// The gateway-to-sidecar bearer token of the instance.
    pub token: String,
    /// Uid of the instance's headless Service: only EndpointSlices owned by this Service are
    /// trusted with the token, so a slice someone else labels like ours receives nothing.
    pub service_uid: String,
}
