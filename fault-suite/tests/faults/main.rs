//! The fault suite: the real gateway, sidecar and simulator binaries under injected faults.
//! Every test ends by checking that each request got a result or an OpenAI error, that the
//! in-flight/queued/open-stream gauges are back to 0, and that no secret reached a log.
//! One test binary (one link) for all of them; each test starts its own stack.

mod agent_surfaces;
mod bad_input;
mod containment;
mod disconnects;
mod echo_bounds;
mod network;
mod overload;
mod quota;
mod shutdown;
mod sidecar_restart;
mod soak;
mod upstream;
mod wedged_sidecar;
