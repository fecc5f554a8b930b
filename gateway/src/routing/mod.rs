//! Which sidecar serves a request: affinity key, rendezvous hashing with bounded load,
//! least-in-flight and round-robin alternatives, and conversation pins.

pub mod affinity;
pub mod choose;
pub mod hash;
pub mod pins;
pub mod router;

pub use affinity::affinity_key;
pub use choose::{Candidate, rank};
pub use pins::{PinDecision, PinMap, check_pin};

/// Hash of a sidecar name, as used in rendezvous scores.
pub fn name_hash(name: &str) -> u64 {
    hash::fnv1a(&[name.as_bytes()])
}
