//! Chat: the typed core, the tool layer over it, SSE framing of chat completions and what
//! the surfaces' handlers share.

pub mod core;
pub mod handler;
pub mod sse;
pub mod tools;
pub mod turns;

pub use core::{AcceptedChat, ChatEvent, ChatService, ChatSettings, PreparedChat};
