//! The sidecar of one Lingma process: supervises it, keeps it logged in, and multiplexes
//! the gateway's chats onto its WebSocket. `main.rs` only parses the configuration and
//! calls [`run::run`]; `config` and `accounts` are reused by the local stack and the
//! single-host mode.

pub mod accounts;
pub mod announce;
pub mod capacity;
pub mod chat;
pub mod config;
pub mod http;
pub mod lingma_process;
pub mod login;
pub mod metrics;
pub mod mux;
pub mod quota;
pub mod run;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod supervisor;
pub mod telemetry;
