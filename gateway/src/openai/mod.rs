//! The OpenAI wire format: request parsing and validation, response and chunk bodies.

pub mod request;
pub mod response;
pub mod validate;

pub use validate::{ValidatedChat, parse_chat_request};
