//! Which sidecar serves a request: affinity key, rendezvous hashing with bounded load,
//! least-in-flight and round-robin alternatives, and conversation pins.

pub mod affinity;
pub mod choose;
pub mod pins;
pub mod router;
pub mod sticky;

pub use affinity::affinity_key;
pub use choose::{Candidate, rank};
pub use pins::{PinDecision, PinMap, check_pin};

pub use crate::hash::{self, name_hash};
