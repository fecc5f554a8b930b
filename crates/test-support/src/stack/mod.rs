//! The stack of real binaries (simulator, sidecar, gateway) on 127.0.0.1 with free ports,
//! each waited for until it is ready, plus the simulator's control client and the memory
//! of a process. Shared by the bench, the fault suite and the integration tests.

mod footprint;
mod gateway;
pub mod netns;
mod sidecar;
mod sim;
mod sim_control;
mod single;

pub use footprint::{Footprint, ProcStatus, footprint, proc_status};
pub use gateway::{Gateway, GatewayOptions};
pub use sidecar::{Sidecar, SidecarOptions};
pub use sim::{SIM_CONTROL_TOKEN, Sim, SimOptions};
pub use sim_control::SimControl;
pub use single::SingleStack;

use std::time::Duration;

/// How long a process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A random-enough suffix for tokens and names (no extra dependency for real UUIDs).
pub fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// Wait until GET `url` answers 200; the error says `what` and ends with the process's log.
async fn wait_for_ok(url: &str, process: &crate::ChildProcess, what: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    crate::wait_for_http(url, 200, READY_TIMEOUT)
        .await
        .with_context(|| format!("{what}; output:\n{}", tail(&process.output())))
}

/// The last 4000 bytes of a log, for error messages.
fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
