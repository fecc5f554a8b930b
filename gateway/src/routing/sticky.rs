//! The sticky wait bound: a follow-up turn whose owner (the sidecar holding its session)
//! is usable but full waits for it up to GATEWAY_STICKY_WAIT_MS before it may go to
//! another sidecar (and start a fresh session there, re-sending the whole history).
//!
//! Evaluated by the router on every re-evaluation of admission (each freed slot, status
//! or load change, and the queue's periodic re-check), from the time since the request
//! arrived, so the bound holds however the queue in front of it is organised.

use std::time::Duration;

use crate::config::RoutingPolicy;

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
