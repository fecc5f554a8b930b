//! The sticky wait bound: a follow-up turn whose owner (the sidecar holding its session)
//! is usable but full waits for it up to GATEWAY_STICKY_WAIT_MS before it may go to
//! another sidecar (and start a fresh session there, re-sending the whole history).
//!
//! Evaluated by the router on every re-evaluation of admission (each freed slot, status
//! or load change, and the queue's periodic re-check), from the time since the request
//! arrived, so the bound holds however the queue in front of it is organised.

use std::time::Duration;

use crate::config::RoutingPolicy;

/// A sidecar that has run and queued nothing, over all gateways, for this long is vacant:
/// a follow-up whose owner is full takes it at once rather than wait out the bound.
///
/// Why not "load 0": between two turns of its own conversations a busy sidecar is idle
/// for one client round trip (a few ms), and follow-ups that jumped onto it then displaced
/// those conversations (measured: session reuse 0.48 at M = 2N). Why not "holds no
/// session key": keys of conversations that ended or moved stay in its map, so a truly
/// idle sidecar seldom qualified. 100 ms is far above a round trip and far below a chat
/// (hundreds of ms with the simulator, seconds with Lingma). Several replicas may see the
/// same vacancy at once: the chat goes with `wait_for_slot: false`, so only one gets the
/// slot and the others are refused before anything runs, and wait for their owners again.
pub const VACANT_AFTER: Duration = Duration::from_millis(100);

/// Whether a request with a usable owner may, at `waited` since its arrival, only take a
/// slot on that owner. Only sticky routing waits; the other policies try the owner first
/// and otherwise take any free slot at once.
pub fn owner_only(policy: RoutingPolicy, waited: Duration, bound: Duration) -> bool {
    policy == RoutingPolicy::Sticky && waited < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_waits_up_to_the_bound_then_may_migrate() {
        let bound = Duration::from_millis(1500);
        let p = RoutingPolicy::Sticky;
        assert!(owner_only(p, Duration::ZERO, bound));
        assert!(owner_only(p, Duration::from_millis(1499), bound));
        assert!(!owner_only(p, bound, bound));
        assert!(
            !owner_only(p, Duration::ZERO, Duration::ZERO),
            "0 = never wait"
        );
        for other in [RoutingPolicy::LeastInFlight, RoutingPolicy::RoundRobin] {
            assert!(!owner_only(other, Duration::ZERO, bound));
        }
    }
}
