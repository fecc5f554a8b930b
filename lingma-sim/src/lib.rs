//! `lingma-sim`: a TEST DOUBLE of Alibaba's Lingma process. It speaks Lingma's local
//! protocol (`Content-Length` framing in WebSocket text messages, JSON-RPC 2.0, chat events
//! pushed as requests; see shared/lingma-protocol.md section 9) so tests, benchmarks and the
//! local demo can run without the real binary or an account. It always names itself
//! `lingma-sim` (`serverInfo.name`, logs, pages) and is never presented as Lingma.
//!
//! Use it as a binary (`lingma-sim start --workDir D --socketPort P --httpPort H`) or in
//! process: `lingma_sim::start(SimConfig { .. })` returns a [`SimHandle`].

mod answer;
mod chat;
mod compose;
pub mod config;
mod conn;
mod connection;
mod control;
mod events;
pub mod fault;
mod frames;
mod http;
pub mod login;
mod persist;
mod rpc;
mod sessions;
mod sim;
mod state;
pub mod stats;
pub mod tools;

pub use config::{LoginChallenge, LoginMode, OverLimit, SimConfig};
pub use fault::Fault;
pub use login::LoginPhase;
pub use sim::{SimError, SimHandle, start};
pub use stats::{RecentAsk, StatsSnapshot};
pub use tools::ToolStyle;

/// Version reported by `initialize`, `status` and `version`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-sim");

/// `serverInfo.name`: never "lingma".
pub const SERVER_NAME: &str = "lingma-sim";
