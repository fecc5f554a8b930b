//! Chat completions: the typed core (`core`: admission, routing, retry; `accepted`: the
//! event stream of an accepted chat) and SSE framing. The HTTP handler is `http::chat`.

mod accepted;
pub mod core;
pub mod sse;

pub use core::{AcceptedChat, ChatEvent, ChatService, ChatSettings, PreparedChat};
