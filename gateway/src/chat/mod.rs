//! Chat completions: the typed core and SSE framing. The HTTP handler is `http::chat`.

pub mod core;
pub mod sse;

pub use core::{AcceptedChat, ChatEvent, ChatService, ChatSettings, PreparedChat};
