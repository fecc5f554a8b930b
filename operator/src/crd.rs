//! The `LingmaInstance` custom resource (group `lingma.io`, version `v1alpha1`).
//!
//! The Rust types are the source of truth: `operator crd` prints the CRD generated from them and
//! `crds/lingma.io_lingmainstances.yaml` is checked against it by a test.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool of Lingma processes, one per pod, each logged in with one account of a Secret.
// Several `printcolumn(...)` entries share keys by design; clippy reads them as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "lingma.io",
    version = "v1alpha1",
    kind = "LingmaInstance",
    plural = "lingmainstances",
    shortname = "lingma",
    namespaced,
    // The name becomes the StatefulSet's (pod names carry a 10-character revision hash in a
    // 63-character label) and a Service's (a DNS-1035 label).
    validation = Rule::new(
        "self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    )
    .message("metadata.name must be a DNS-1035 label of at most 52 characters"),
    status = "LingmaInstanceStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Replicas whose sidecar is ready (connected and logged in)"
    ),
    printcolumn(
        name = "Logged-In",
        type_ = "integer",
        json_path = ".status.loggedInReplicas",
        description = "Replicas logged in to Lingma"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired replicas"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status",
        description = "The Ready condition"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='LoggedIn')].reason",
        description = "Why replicas are (not) logged in",
        priority = "1"
    ),
    printcolumn(
        name = "Paused",
        type_ = "integer",
        json_path = ".status.pausedReplicas",
        description = "Replicas whose account is paused (rate limited or out of quota)",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LingmaInstanceSpec {
    /// Number of Lingma processes (pods). Pod ordinal i logs in with account i mod n.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 256))]
    pub replicas: i32,
    /// Where the Lingma accounts come from.
    pub accounts: AccountsSpec,
    /// Where the Lingma binary comes from and which pod image runs it.
    #[serde(default)]
    pub lingma: LingmaSourceSpec,
    /// Defaults sent to Lingma for every chat.
    #[serde(default)]
    pub defaults: ChatDefaults,
    /// Automatic login with the account of the replica's slot.
    #[serde(default)]
    pub auto_login: AutoLoginSpec,
    /// Limits of one Lingma process.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Persistent volume for Lingma's work directory (login state, cache, sessions). Immutable:
    /// a StatefulSet's volume claim templates cannot change (docs/operator.md, resizing storage).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "spec.storage is immutable; resize the PVCs directly (docs/operator.md, resizing storage)"
    }]))]
    pub storage: StorageSpec,
    /// Overrides of the generated pod template.
    #[serde(default)]
    pub pod: PodOverrides,
}

fn default_replicas() -> i32 {
    1
}

/// The accounts Secret. Credentials are only ever read from a Secret, never from the resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountsSpec {
    pub secret_ref: SecretKeyRef,
}

/// A key of a Secret in the instance's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Key holding CSV `u1:p1,u2:p2` or JSON `[{"username":"u1","password":"p1"}]`.
    #[serde(default = "default_accounts_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
}

/// A DNS-1123 subdomain (object names).
const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key of a Secret's data.
const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";
/// A Kubernetes quantity, as resource.Quantity's schema spells it.
const QUANTITY: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

fn default_accounts_key() -> String {
    "accounts".to_owned()
}

/// How the pod gets its Lingma binary.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// The binary is baked into the pod image; no download.
    Image,
    /// Downloaded from the VS Code marketplace by the `bootstrap` init container.
    #[default]
    Marketplace,
    /// Downloaded from a VSIX URL by the `bootstrap` init container.
    Vsix,
}

impl SourceType {
    /// The value of LINGMA_SOURCE_TYPE.
    pub fn as_env(self) -> &'static str {
        match self {
            SourceType::Image => "image",
            SourceType::Marketplace => "marketplace",
            SourceType::Vsix => "vsix",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.source != 'vsix' || has(self.vsixUrl)",
    "message": "source vsix needs vsixUrl"
}]))]
pub struct LingmaSourceSpec {
    /// Pod image (the `lingma-pod` image with the sidecar). Empty = the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// Image pull policy of the pod image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// image | marketplace | vsix.
    #[serde(default)]
    pub source: SourceType,
    /// Marketplace publisher (source marketplace).
    #[serde(default = "default_publisher")]
    #[schemars(length(min = 1, max = 128), regex(pattern = MARKETPLACE_NAME))]
    pub marketplace_publisher: String,
    /// Marketplace extension (source marketplace).
    #[serde(default = "default_extension")]
    #[schemars(length(min = 1, max = 128), regex(pattern = MARKETPLACE_NAME))]
    pub marketplace_extension: String,
    /// VSIX URL (source vsix). https only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), extend("x-kubernetes-validations" = [{
        "rule": "self.startsWith('https://')",
        "message": "vsixUrl must be an https:// URL"
    }]))]
    pub vsix_url: Option<String>,
    /// Extension version to download (sources marketplace and vsix). A pin, not `latest`, so a
    /// pod restart never brings an untested upgrade; `latest` only when written by name.
    #[serde(default = "default_lingma_version")]
    #[schemars(length(min = 1, max = 64), regex(pattern = LINGMA_VERSION_PATTERN))]
    pub version: String,
    /// SHA-256 (64 hex digits) the downloaded package must have; empty = not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,
    /// Run the bootstrap at every pod start even when a cached binary exists.
    #[serde(default)]
    pub bootstrap_always: bool,
    /// Ignore the cache and download again.
    #[serde(default)]
    pub force_refresh: bool,
}

impl Default for LingmaSourceSpec {
    fn default() -> Self {
        Self {
            image: None,
            image_pull_policy: None,
            source: SourceType::default(),
            marketplace_publisher: default_publisher(),
            marketplace_extension: default_extension(),
            vsix_url: None,
            version: default_lingma_version(),
            sha256: None,
            bootstrap_always: false,
            force_refresh: false,
        }
    }
}

/// A marketplace publisher or extension name.
const MARKETPLACE_NAME: &str = r"^[A-Za-z0-9][-A-Za-z0-9_.]*$";

/// The Lingma version pods download by default: the same pin as `lingma-bootstrap`'s
/// `DEFAULT_LINGMA_VERSION` (a test keeps them equal).
pub const DEFAULT_LINGMA_VERSION: &str = "2.6.10";
const LINGMA_VERSION_PATTERN: &str = r"^(latest|[0-9A-Za-z][-0-9A-Za-z_.+]*)$";

fn default_lingma_version() -> String {
    DEFAULT_LINGMA_VERSION.to_owned()
}

fn default_publisher() -> String {
    "Alibaba-Cloud".to_owned()
}

fn default_extension() -> String {
    "tongyi-lingma".to_owned()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AskMode {
    #[default]
    Chat,
    Agent,
}

impl AskMode {
    pub fn as_env(self) -> &'static str {
        match self {
            AskMode::Chat => "chat",
            AskMode::Agent => "agent",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatDefaults {
    /// Lingma model key used when a request's model maps to none.
    #[serde(default = "default_model")]
    #[schemars(length(min = 1, max = 128))]
    pub model: String,
    /// chat | agent.
    #[serde(default)]
    pub ask_mode: AskMode,
    /// Enterprise dedicated-domain endpoint (empty = public cloud). https only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), extend("x-kubernetes-validations" = [{
        "rule": "self == '' || self.startsWith('https://')",
        "message": "dedicatedDomainUrl must be an https:// URL"
    }]))]
    pub dedicated_domain_url: Option<String>,
}

impl Default for ChatDefaults {
    fn default() -> Self {
        Self {
            model: default_model(),
            ask_mode: AskMode::default(),
            dedicated_domain_url: None,
        }
    }
}

fn default_model() -> String {
    "org_auto".to_owned()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoLoginSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_true")]
    pub headless: bool,
    /// Seconds one login attempt may take.
    #[serde(default = "default_login_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// Attempts after the first failure before the login state becomes failed.
    #[serde(default = "default_login_retries")]
    #[schemars(range(min = 0, max = 20))]
    pub max_retry: i32,
}

impl Default for AutoLoginSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            headless: true,
            timeout_seconds: default_login_timeout(),
            max_retry: default_login_retries(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_login_timeout() -> i32 {
    180
}
fn default_login_retries() -> i32 {
    2
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.quotaPauseMaxSeconds >= self.quotaPauseSeconds",
    "message": "quotaPauseMaxSeconds must be at least quotaPauseSeconds"
}]))]
pub struct LimitsSpec {
    /// Chats one Lingma process runs at once.
    #[serde(default = "default_max_chats")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrent_chats: i32,
    /// Deadline, in seconds, of one JSON-RPC call to Lingma.
    #[serde(default = "default_rpc_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub rpc_timeout_seconds: i32,
    /// Seconds to wait for a started Lingma process to accept connections.
    #[serde(default = "default_startup_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub startup_timeout_seconds: i32,
    /// Seconds an account sits out after Lingma says it is rate limited or out of quota (the
    /// first pause; each pause in a row doubles, up to quotaPauseMaxSeconds). 0 = never pause:
    /// each limited chat fails on its own and the replica stays in rotation.
    #[serde(default = "default_quota_pause")]
    #[schemars(range(min = 0, max = 3600))]
    pub quota_pause_seconds: i32,
    /// Longest pause, in seconds (at least quotaPauseSeconds).
    #[serde(default = "default_quota_pause_max")]
    #[schemars(range(min = 0, max = 86400))]
    pub quota_pause_max_seconds: i32,
    /// Lingma `chat/finish` codes (`extra.errorCode` or `statusCode`) that mean the account's
    /// quota is used up; empty = none (a 429 still pauses as rate limited). The real codes
    /// are not documented: 110 is Qoder CN's "daily usage limit".
    #[serde(default = "default_quota_error_codes")]
    #[schemars(length(max = 64))]
    pub quota_error_codes: Vec<i64>,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_concurrent_chats: default_max_chats(),
            rpc_timeout_seconds: default_rpc_timeout(),
            startup_timeout_seconds: default_startup_timeout(),
            quota_pause_seconds: default_quota_pause(),
            quota_pause_max_seconds: default_quota_pause_max(),
            quota_error_codes: default_quota_error_codes(),
        }
    }
}

fn default_max_chats() -> i32 {
    1
}
fn default_rpc_timeout() -> i32 {
    30
}
fn default_startup_timeout() -> i32 {
    40
}
/// The sidecar's SIDECAR_QUOTA_PAUSE_SEC default (a test keeps them equal via .env.example).
fn default_quota_pause() -> i32 {
    30
}
/// The sidecar's SIDECAR_QUOTA_PAUSE_MAX_SEC default.
fn default_quota_pause_max() -> i32 {
    900
}
/// The sidecar's LINGMA_QUOTA_ERROR_CODES default.
fn default_quota_error_codes() -> Vec<i64> {
    vec![110]
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each replica's work-directory volume.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = QUANTITY))]
    pub size: String,
    /// Storage class (empty = the cluster default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> String {
    "2Gi".to_owned()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Resources of the `lingma` container (default: 250m CPU, 512Mi memory requested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

/// Observed state, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LingmaInstanceStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist (the scale subresource reads it).
    #[serde(default)]
    pub replicas: i32,
    /// Pods whose sidecar takes chats: connected to Lingma, logged in and its account not
    /// paused.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods whose account is paused (rate limited or out of quota): out of rotation until
    /// the pause ends.
    #[serde(default)]
    pub paused_replicas: i32,
    /// Pods logged in to Lingma.
    #[serde(default)]
    pub logged_in_replicas: i32,
    /// Accounts found in the accounts Secret.
    #[serde(default)]
    pub accounts: i32,
    /// Label selector of the pods, for the scale subresource (HPA).
    #[serde(default)]
    pub selector: String,
    /// One entry per pod, by ordinal.
    #[serde(default)]
    pub instances: Vec<ReplicaStatus>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The state of one replica.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Pod name.
    pub name: String,
    /// Account slot (the pod ordinal modulo the number of accounts).
    pub account_slot: i32,
    /// Takes chats: the pod is ready (sidecar connected and logged in) and its account is
    /// not paused.
    pub ready: bool,
    /// Login state as the sidecar reports it: unknown, logged_out, logging_in, logged_in, failed.
    pub login: String,
    /// Why the login failed (Expired, ChallengeRequired, QuotaExhausted, WrongCredentials...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set while the replica's account is paused: Lingma said it is rate limited or out of
    /// quota, and the sidecar takes no chats until `resumeTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<ReplicaPause>,
}

/// An account pause as the sidecar reported it (`GET /login/status`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaPause {
    /// rate_limited | quota_exhausted (the sidecar's words, as in its metrics).
    pub reason: String,
    /// When the pause ends (the operator's clock when it asked, plus what the sidecar said
    /// was left); the next chat then probes the account.
    pub resume_time: Time,
    /// Pauses in a row without a successful chat in between (1 = the first); each one lasts
    /// longer, up to limits.quotaPauseMaxSeconds.
    pub pauses: i32,
}

/// The CRD as YAML, as `operator crd` prints it and `crds/` stores it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&LingmaInstance::crd())
}

#[cfg(test)]
mod tests;
