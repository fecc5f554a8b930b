//! Method names (shared/lingma-protocol.md, section 3).

// client -> Lingma
pub const INITIALIZE: &str = "initialize";
pub const AUTH_STATUS: &str = "auth/status";
pub const AUTH_LOGIN: &str = "auth/login";
pub const AUTH_DEVICE_LOGIN: &str = "auth/device_login";
pub const AUTH_LOGOUT: &str = "auth/logout";
pub const CONFIG_QUERY_MODELS: &str = "config/queryModels";
pub const CONFIG_UPDATE_ENDPOINT: &str = "config/updateEndpoint";
pub const CHAT_ASK: &str = "chat/ask";
pub const CHAT_STOP: &str = "chat/stop";
pub const CHAT_LIST_ALL_SESSIONS: &str = "chat/listAllSessions";
pub const CHAT_GET_SESSION_BY_ID: &str = "chat/getSessionById";
pub const CHAT_DELETE_SESSION_BY_ID: &str = "chat/deleteSessionById";
pub const PING: &str = "ping";
pub const TOOL_INVOKE_RESULT: &str = "tool/invokeResult";

// Lingma -> client (pushed as requests that must be acked)
pub const CHAT_ANSWER: &str = "chat/answer";
pub const CHAT_FINISH: &str = "chat/finish";
pub const CHAT_THINK: &str = "chat/think";
pub const CHAT_PROCESS_STEP_CALLBACK: &str = "chat/process_step_callback";
pub const SESSION_TITLE_UPDATE: &str = "session/title/update";
pub const TOOL_INVOKE: &str = "tool/invoke";
pub const AUTH_SYNC_TOKEN_UPDATE: &str = "auth/syncTokenUpdate";
pub const CONTEXT_USAGE_SYNC: &str = "context/usage/sync";
pub const WINDOW_LOG_MESSAGE: &str = "window/logMessage";
pub const TELEMETRY_EVENT: &str = "telemetry/event";
