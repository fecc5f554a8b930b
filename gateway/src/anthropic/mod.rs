//! The Anthropic Messages surface: `POST /v1/messages` (stream and not) and
//! `POST /v1/messages/count_tokens`, a codec over the chat core and its tool layer.
//! See docs/anthropic-compatibility.md.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

pub use error::AnthropicError;

/// Whether errors on this path must take the Anthropic shape (auth runs before the
/// handler, so it asks).
pub fn is_anthropic_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}
