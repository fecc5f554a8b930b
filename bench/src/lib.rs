//! The bench harness: drive the stack test-support starts (OpenAI HTTP or the sidecar's mux
//! protocol), generate load without coordinated omission, report figures next to their
//! goals. The `bench` binary runs the scenarios.

pub mod load;
pub mod mux_client;
pub mod report;

pub use test_support::{openai, prom, stack};
