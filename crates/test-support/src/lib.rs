//! Shared helpers for integration tests: build and locate workspace binaries, run them as
//! child processes that die with the test, find free ports, wait for readiness, and keep
//! their logs for assertions (e.g. "no secret in any log line").

mod binaries;
mod process;
mod wait;

pub use binaries::{binary, workspace_root};
pub use process::{ChildProcess, ProcessBuilder};
pub use wait::{free_port, wait_for_http, wait_for_port, wait_until};
