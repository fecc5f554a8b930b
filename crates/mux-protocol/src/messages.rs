use serde::{Deserialize, Serialize};

/// Gateway-chosen id of one chat on one mux connection (unique per connection).
pub type StreamId = u64;

/// Gateway -> sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Start a chat. The sidecar answers with `Started` then `Delta`s then `Finish`,
    /// or with one `Error` at any point.
    Chat { id: StreamId, request: ChatRequest },
    /// Stop a chat (client went away). The sidecar stops the upstream chat, frees the
    /// stream and answers with `Error { kind: Cancelled }` unless it had already finished.
    Cancel { id: StreamId },
}

/// One chat as the gateway hands it over: already validated and flattened to text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The gateway's request id (x-request-id), forwarded for log correlation.
    pub request_id: String,
    /// Lingma model key (already mapped by the gateway); `None` = the sidecar's DEFAULT_MODEL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The whole conversation as the client sent it, content flattened to text.
    pub messages: Vec<ChatMessage>,
    /// Session-map scope: [`crate::api_key_scope`] of the client's API key ("" when the
    /// gateway has no keys). Never the key itself.
    #[serde(default)]
    pub scope: String,
    /// Whether the session map may be used for this request (SESSION_REUSE_ENABLED on the
    /// gateway side AND no per-request opt-out).
    #[serde(default = "default_true")]
    pub session_reuse: bool,
    /// How long the sidecar may queue this chat when its Lingma is at capacity, in ms
    /// (0 = fail at once with `Overloaded`).
    #[serde(default)]
    pub queue_timeout_ms: u64,
    /// Whether the chat may wait in the sidecar's queue for a slot (up to
    /// `queue_timeout_ms`). `false`: refused with `Overloaded` at once unless a slot is free
    /// now, so a gateway replica that saw the sidecar free, but lost its last slot to
    /// another replica's chat, can place the chat elsewhere instead of queueing behind it.
    /// Waiting for Lingma to become ready is not affected. Absent = `true` (what sidecars
    /// did before the field existed).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub wait_for_slot: bool,
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// OpenAI roles; tool/function results are user-side text for Lingma.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Role {
    /// Turns that make up the conversation key (assistant turns are excluded, as in the
    /// original gateway: clients may reformat the echoed answer).
    pub fn is_keyed(self) -> bool {
        !matches!(self, Role::Assistant)
    }

    /// What a client adds to start a turn: a user message or a tool result.
    pub fn is_turn_input(self) -> bool {
        matches!(self, Role::User | Role::Tool | Role::Function)
    }
}

/// Sidecar -> gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on every connection, and sent again whenever any field changes.
    Status(SidecarStatus),
    /// Lingma accepted the ask (`chat/ask` answered with success); sent at once, before
    /// any delta. From here on the chat ran upstream: neither side retries it.
    Started {
        id: StreamId,
        session: SessionOutcome,
        /// Upstream Lingma sessionId (a UUID the sidecar minted).
        session_id: String,
    },
    /// A piece of the answer. At least one of the two fields is set.
    Delta {
        id: StreamId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasoning_content: Option<String>,
    },
    /// End of a successful chat; the stream is freed.
    Finish {
        id: StreamId,
        finish_reason: FinishReason,
        usage: Usage,
        session_id: String,
    },
    /// End of a failed chat; the stream is freed.
    Error {
        id: StreamId,
        kind: ErrorKind,
        /// Safe, short, English text; never upstream raw text or secrets.
        message: String,
        /// True when no `Started` had been sent for this stream (Lingma never accepted the
        /// ask), so the gateway may retry elsewhere if the kind allows it.
        before_output: bool,
    },
    /// The conversation keys the sidecar's session map holds: a snapshot after the first
    /// `status`, then changes (see [`crate::SessionKeys`]).
    Sessions(crate::SessionKeys),
    /// Chats running and waiting in the sidecar over all gateways, pushed on change.
    Load(crate::SidecarLoad),
}

/// Every `type` a `ServerMessage` may have. A gateway ignores (quietly) a message whose
/// type is not here: a newer sidecar may send types this build does not know.
pub const SERVER_MESSAGE_TYPES: &[&str] = &[
    "status", "started", "delta", "finish", "error", "sessions", "load",
];

/// Whether `text` is a JSON object whose `type` is not a [`ServerMessage`] type this build
/// knows (to be ignored), as opposed to a malformed message of a known type.
pub fn is_unknown_server_type(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Tag<'_>>(text)
        .is_ok_and(|t| !SERVER_MESSAGE_TYPES.contains(&t.kind.as_ref()))
}

/// What the sidecar is and can do right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarStatus {
    pub protocol_version: u32,
    /// Instance name (pod name), used in metrics labels.
    pub name: String,
    /// Connected to Lingma and logged in: may take chats.
    pub ready: bool,
    pub connection: ConnectionState,
    pub login: LoginState,
    /// Chats its Lingma runs at once (LINGMA_MAX_CONCURRENT_CHATS).
    pub capacity: u32,
    /// Chats running upstream now, over all gateways.
    pub in_flight: u32,
    /// Chats waiting in the sidecar for upstream capacity, over all gateways.
    pub queued: u32,
    /// Draining (SIGTERM or re-login): finishes open chats, takes no new ones.
    pub draining: bool,
    /// Models Lingma reports (empty while logged out).
    pub models: Vec<ModelInfo>,
    /// Set while the account is rate limited or out of quota: the sidecar takes no chats
    /// (`ready` is false) until the pause ends, then sends a Status without it. Absent from
    /// older sidecars (additive, no version change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<AccountPause>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Lingma model key, e.g. `dashscope_qwen3_coder`.
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub is_reasoning: bool,
    #[serde(default)]
    pub is_vl: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Stopped,
    Starting,
    Ready,
    Reconnecting,
    Failed,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LoginState {
    Unknown,
    LoggedOut,
    LoggingIn,
    LoggedIn,
    Failed { reason: LoginFailure },
}

/// Why a login is not there; short and safe, mirrored in the operator's `LoggedIn` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginFailure {
    Expired,
    ChallengeRequired,
    QuotaExhausted,
    WrongCredentials,
    NoAccount,
    Timeout,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionOutcome {
    /// The upstream session was continued (isReply=true, only the new message sent).
    Reused,
    /// A fresh upstream session (the whole conversation flattened and sent).
    New,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
}

/// Token counts. Lingma reports none per chat, so the sidecar estimates them
/// (`estimated = true`); the gateway passes them on as OpenAI `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(default)]
    pub estimated: bool,
}

/// Failure classes; the gateway maps each to one HTTP status and OpenAI error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request's own fault -> 400: malformed (gateway bug or version skew), or
    /// refused by Lingma (a JSON-RPC error or a rejection of `chat/ask`, an unlisted
    /// `chat/finish` code). Never counts against the instance, never retried elsewhere.
    BadRequest,
    /// Unknown model key -> 404.
    UnknownModel,
    /// Lingma or its account is rate limited / out of quota -> 429.
    RateLimited,
    /// Sidecar at capacity and the queue wait ran out -> 429 (or retry elsewhere).
    Overloaded,
    /// Not connected, not logged in, draining -> 503 (retry elsewhere).
    Unavailable,
    /// Upstream auth/quota failure (401/403 from Lingma's cloud) -> 502.
    UpstreamAuth,
    /// An RPC deadline or the per-chat idle timeout ran out -> 504.
    Timeout,
    /// The connection to Lingma was lost mid-chat -> 502.
    ConnectionLost,
    /// Lingma answered with an error -> 502.
    Upstream,
    /// The chat was cancelled by the gateway.
    Cancelled,
    /// Sidecar bug -> 500.
    Internal,
}

/// Why and for how long a sidecar's account sits out ([`SidecarStatus::paused`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPause {
    pub reason: PauseReason,
    /// Milliseconds, counted from when this Status was sent, until the sidecar takes chats
    /// again. The pause ends by itself (a new Status says so); the next chat is the probe.
    pub retry_after_ms: u64,
    /// Pauses in a row without a successful chat in between (1 = the first); each one
    /// lasts longer, up to the sidecar's cap.
    pub pauses: u32,
}

/// What Lingma said about the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// `chat/finish` with statusCode 429: a short-term rate limit.
    RateLimited,
    /// A quota code (`chat/finish` errorCode, e.g. 110 "daily usage limit"): the account's
    /// quota is used up.
    QuotaExhausted,
}

#[cfg(test)]
mod pause_tests {
    use super::*;

    fn status(paused: Option<AccountPause>) -> SidecarStatus {
        SidecarStatus {
            protocol_version: crate::PROTOCOL_VERSION,
            name: "s".into(),
            ready: paused.is_none(),
            connection: ConnectionState::Ready,
            login: LoginState::LoggedIn,
            capacity: 1,
            in_flight: 0,
            queued: 0,
            draining: false,
            models: vec![],
            paused,
        }
    }

    #[test]
    fn paused_is_additive_on_the_wire() {
        // Absent when not paused, so an older gateway sees the same Status as before.
        let json = serde_json::to_value(ServerMessage::Status(status(None))).expect("json");
        assert!(json.get("paused").is_none(), "{json}");
        // An older sidecar's Status (no field) reads as not paused.
        let back: ServerMessage = serde_json::from_value(json).expect("parse");
        assert_eq!(back, ServerMessage::Status(status(None)));

        let pause = AccountPause {
            reason: PauseReason::QuotaExhausted,
            retry_after_ms: 1500,
            pauses: 2,
        };
        let json =
            serde_json::to_value(ServerMessage::Status(status(Some(pause.clone())))).expect("json");
        assert_eq!(
            json["paused"],
            serde_json::json!({"reason": "quota_exhausted", "retry_after_ms": 1500, "pauses": 2})
        );
        let back: ServerMessage = serde_json::from_value(json).expect("parse");
        assert_eq!(back, ServerMessage::Status(status(Some(pause))));
    }
}

#[cfg(test)]
mod chat_request_tests {
    use super::*;

    #[test]
    fn wait_for_slot_is_additive_on_the_wire() {
        // An older gateway's chat (no field) may wait for a slot, as before.
        let old = serde_json::json!({"request_id": "r", "messages": [], "queue_timeout_ms": 5});
        let parsed: ChatRequest = serde_json::from_value(old).expect("parse");
        assert!(parsed.wait_for_slot);
        // Sent only when false, so a waiting chat reads the same to an older sidecar.
        let json = serde_json::to_value(&parsed).expect("json");
        assert!(json.get("wait_for_slot").is_none(), "{json}");
        let no_wait = ChatRequest {
            wait_for_slot: false,
            ..parsed
        };
        let json = serde_json::to_value(&no_wait).expect("json");
        assert_eq!(json["wait_for_slot"], false);
        let back: ChatRequest = serde_json::from_value(json).expect("parse");
        assert_eq!(back, no_wait);
    }
}
