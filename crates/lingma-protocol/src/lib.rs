//! Lingma's local protocol: `Content-Length` framing inside WebSocket text messages,
//! JSON-RPC 2.0 messages, the typed params of the methods we use, and an async client.
//!
//! Field names follow `shared/lingma-protocol.md` exactly (camelCase on the wire).

pub mod client;
pub mod error;
pub mod framing;
pub mod jsonrpc;
pub mod methods;
pub mod wire;

pub use client::{
    CHAT_EVENT_BUFFER, CONSUMER_GRACE, ChatEvent, ChatStream, ClientOptions, LingmaClient,
    ServerEvent,
};
pub use error::ClientError;
