//! The bench harness: start the real binaries, drive them (OpenAI HTTP or the sidecar's mux
//! protocol), generate load without coordinated omission, read metrics and memory, report
//! figures next to their goals. The `bench` binary runs the scenarios; the fault suite uses
//! the same harness.

pub mod load;
pub mod mux_client;
pub mod openai;
pub mod prom;
pub mod report;
pub mod stack;
