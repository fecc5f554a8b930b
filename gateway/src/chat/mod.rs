//! Chat: the typed core (`core`: admission, routing, retry; `accepted`: the event stream of
//! an accepted chat), the tool layer over it (`turns`, `tools`) and SSE framing of chat
//! completions. The HTTP handlers are in `http`.

mod accepted;
pub mod core;
pub mod sse;
pub mod tools;
pub mod turns;

pub use core::{AcceptedChat, ChatEvent, ChatService, ChatSettings, PreparedChat};
