//! The gateway <-> sidecar protocol ("lingma-mux", version 1).
//!
//! One WebSocket per (gateway process, sidecar) pair carries many concurrent chats. Every
//! WebSocket text message holds exactly one JSON [`ClientMessage`] (gateway -> sidecar) or
//! [`ServerMessage`] (sidecar -> gateway). Chats are told apart by the gateway-chosen
//! [`StreamId`]. See `docs/mux-protocol.md` for the full contract.

mod endpoint;
mod estimate;
mod keys;
mod messages;
mod ownership;
mod token;
mod vocabulary;

pub use endpoint::SidecarEndpoint;
pub use estimate::estimate_tokens;
pub use keys::{api_key_scope, continuation_key, conversation_key, new_turn_start};
pub use messages::*;
pub use ownership::{KeyDigest, MAX_DIGESTS_PER_MESSAGE, SessionKeys, SidecarLoad};
pub use token::{SidecarToken, TokenFileError};
pub use vocabulary::Blame;

/// Version of this protocol; the sidecar refuses a client whose `?v=` differs.
pub const PROTOCOL_VERSION: u32 = 1;
/// WebSocket sub-protocol name the gateway offers and the sidecar accepts.
pub const SUBPROTOCOL: &str = "lingma-mux.v1";
/// Path of the mux endpoint on the sidecar.
pub const MUX_PATH: &str = "/v1/mux";
