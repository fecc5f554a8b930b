//! Typed params and results of the methods we use. Unknown fields are ignored and missing
//! optional ones default, because builds differ (shared/lingma-protocol.md, section 8).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceFolder {
    pub uri: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub process_id: Option<u32>,
    pub client_info: ClientInfo,
    pub root_uri: String,
    pub capabilities: Value,
    pub workspace_folders: Vec<WorkspaceFolder>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    #[serde(default)]
    pub capabilities: Value,
    #[serde(default)]
    pub server_info: ServerInfo,
}

/// `auth/status.status`: 1 = logged out, 2 = logged in; other values are unknown (A5).
pub const AUTH_STATUS_LOGGED_OUT: i64 = 1;
pub const AUTH_STATUS_LOGGED_IN: i64 = 2;

/// `auth/status` result. Holds tokens: never log or forward it whole.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthStatus {
    pub status: i64,
    pub name: String,
    pub id: String,
    pub account_id: String,
    pub token: String,
    pub refresh_token: String,
    pub expire_time: Value,
    pub user_type: Value,
    pub whitelist: Value,
    pub cloud_type: Value,
    pub privacy_policy_agreed: Value,
    pub quota: Value,
    pub org_id: String,
    pub org_name: String,
    pub email: String,
}

impl AuthStatus {
    pub fn logged_in(&self) -> bool {
        self.status == AUTH_STATUS_LOGGED_IN
    }
}

impl std::fmt::Debug for AuthStatus {
    // Tokens must not reach logs through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStatus")
            .field("status", &self.status)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `auth/login` result: the login URL. Its field name is unknown (A6), so every string
/// field that looks like a URL is accepted.
pub fn login_url_from_result(result: &Value) -> Option<String> {
    match result {
        Value::String(s) if s.starts_with("http") => Some(s.clone()),
        Value::Object(map) => {
            for key in ["url", "loginUrl", "authUrl", "data"] {
                if let Some(url) = map.get(key).and_then(login_url_from_result) {
                    return Some(url);
                }
            }
            map.values().find_map(login_url_from_result)
        }
        _ => None,
    }
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLoginParams {
    pub token: String,
    pub refresh_token: String,
    pub expires_in: String,
    pub expire_time: String,
    pub user_id: String,
    pub username: String,
}

impl std::fmt::Debug for DeviceLoginParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLoginParams")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One entry of `config/queryModels` (result: scene -> list).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ModelEntry {
    pub key: String,
    pub display_name: String,
    pub format: String,
    pub is_vl: bool,
    pub is_reasoning: bool,
    pub source: String,
}

pub type QueryModelsResult = BTreeMap<String, Vec<ModelEntry>>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelConfig {
    pub key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AskExtra {
    pub model_config: ModelConfig,
    #[serde(default)]
    pub context: Vec<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginPayloadConfig {
    pub is_enable_auto_memory: bool,
    pub is_enable_project_rule: bool,
    pub is_enable_ask_agent: bool,
}

/// `chat/ask` params (section 3.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAskParams {
    pub request_id: String,
    pub session_id: String,
    pub question_text: String,
    #[serde(default)]
    pub chat_context: Value,
    pub chat_task: String,
    pub is_reply: bool,
    pub source: i64,
    pub stream: bool,
    #[serde(default)]
    pub task_definition_type: String,
    #[serde(default)]
    pub code_language: String,
    pub extra: AskExtra,
    pub session_type: String,
    #[serde(default)]
    pub target_agent: String,
    #[serde(default)]
    pub plugin_payload_config: PluginPayloadConfig,
    pub mode: String,
    #[serde(default)]
    pub shell_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_model: Option<Value>,
}

/// `chat/ask` result: `success` (observed) or `isSuccess` (plugin class) (A3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatAskResult {
    pub success: Option<bool>,
    pub is_success: Option<bool>,
    pub request_id: String,
    pub error_message: String,
    pub status: Value,
}

impl ChatAskResult {
    pub fn accepted(&self) -> bool {
        self.success.or(self.is_success).unwrap_or(false)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatStopParams {
    pub request_id: String,
    #[serde(default)]
    pub session_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatAnswer {
    pub request_id: String,
    pub session_id: String,
    pub text: String,
    pub overwrite: bool,
    pub is_filtered: bool,
    pub timestamp: Value,
    pub extra: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatThink {
    pub request_id: String,
    pub session_id: String,
    pub text: String,
    /// `start` or `done`.
    pub step: String,
    pub timestamp: Value,
}

/// `chat/finish.statusCode` values with a meaning (section 7).
pub mod finish_codes {
    pub const OK: i64 = 200;
    pub const RATE_LIMITED: i64 = 429;
    pub const UNAUTHORIZED: i64 = 401;
    pub const FORBIDDEN: i64 = 403;
    pub const FILTERED: i64 = 406;
    pub const FILTERED_ALT: i64 = 601;
    pub const TIMEOUT: i64 = 408;
    pub const INTERNAL: i64 = 500;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatFinish {
    pub request_id: String,
    pub session_id: String,
    pub reason: String,
    pub status_code: i64,
    pub full_answer: String,
    pub extra: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessStepCallback {
    pub request_id: String,
    pub session_id: String,
    pub step: String,
    pub description: String,
    pub status: String,
    pub result: Value,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionTitleUpdate {
    pub session_id: String,
    pub session_title: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContextUsageSync {
    pub used_tokens: i64,
    pub limit_tokens: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ToolInvoke {
    pub request_id: String,
    pub tool_call_id: String,
    pub name: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolInvokeResult {
    pub tool_call_id: String,
    pub name: String,
    pub success: bool,
    pub error_message: String,
    pub result: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionSummary {
    pub session_id: String,
    pub session_title: String,
    pub gmt_create: Value,
    pub gmt_modified: Value,
    pub session_type: String,
    pub chat_records: Value,
}
