//! Shared helpers for integration tests, the fault suite and the bench: build and locate
//! workspace binaries, run them as child processes that die with the test (alone, or as a
//! whole stack: simulator, sidecar, gateway), find free ports, wait for readiness, keep
//! their logs for assertions (e.g. "no secret in any log line"), and talk to them (OpenAI
//! HTTP calls, Prometheus metrics, the simulator's control API).

mod binaries;
pub mod http1;
pub mod openai;
mod process;
pub mod prom;
pub mod stack;
mod wait;

pub use binaries::{Binaries, binary, workspace_root};
pub use process::{ChildProcess, ProcessBuilder};
pub use wait::{free_port, wait_for_http, wait_for_port, wait_until};
