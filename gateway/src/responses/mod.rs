//! The OpenAI Responses surface: `POST /v1/responses` (stream and not, function tools,
//! `previous_response_id`) and `GET /v1/responses/{id}`, a codec over the chat core and
//! its tool layer. See docs/openai-compatibility.md.

pub mod output;
mod redis_store;
pub mod request;
pub mod store;
pub mod stream;

pub use store::{ResponseStore, StoreError, StoredResponse};

/// Responses kept for `previous_response_id` by a gateway process without Redis.
pub const STORE_CAPACITY: usize = 10_000;
/// How long a stored response can be continued (the sidecars' session TTL default).
pub const STORE_TTL: std::time::Duration = std::time::Duration::from_secs(1800);
