//! Chat completions: the typed core, SSE framing and the HTTP handler.

pub mod core;
pub mod handler;
pub mod sse;

pub use core::{AcceptedChat, ChatEvent, ChatService, ChatSettings, PreparedChat};
