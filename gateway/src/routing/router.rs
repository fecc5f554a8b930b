//! Applies the routing policy to the pool's current members.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::choose::{Candidate, rank};
use crate::config::RoutingPolicy;
use crate::pool::{Pool, Sidecar, SidecarState};

pub struct Router {
    policy: RoutingPolicy,
    load_factor: f64,
    round_robin: AtomicUsize,
    /// GATEWAY_STICKY_WAIT_MS: how long a follow-up waits for its full owner.
    sticky_wait: Duration,
}

/// Default of GATEWAY_STICKY_WAIT_MS.
pub const DEFAULT_STICKY_WAIT: Duration = Duration::from_millis(1500);

impl Router {
    pub fn new(policy: RoutingPolicy, load_factor: f64) -> Self {
        Self {
            policy,
            load_factor,
            round_robin: AtomicUsize::new(0),
            sticky_wait: DEFAULT_STICKY_WAIT,
        }
    }

    /// This router with GATEWAY_STICKY_WAIT_MS set.
    pub fn with_sticky_wait(mut self, bound: Duration) -> Self {
        self.sticky_wait = bound;
        self
    }

    pub fn sticky_wait(&self) -> Duration {
        self.sticky_wait
    }

    /// [`Router::order`] for a request that arrived `waited` ago: while the sticky wait
    /// bound runs, a request whose `owner` is usable gets that owner (it waits for its
    /// own instance, full or not) and after it only vacant sidecars (see
    /// [`super::sticky::VACANT_AFTER`]); after the bound, the owner first and then the
    /// ranking. Admission calls this again at every re-evaluation, so the switch happens
    /// by itself.
    pub fn order_for(
        &self,
        pool: &Pool,
        key: u64,
        owner: Option<&str>,
        exclude: Option<&str>,
        waited: Duration,
    ) -> Vec<Arc<Sidecar>> {
        if let Some(name) = owner
            && Some(name) != exclude
            && super::sticky::owner_only(self.policy, waited, self.sticky_wait)
            && let Some(s) = pool.find(name).filter(|s| s.usable())
        {
            let vacant = self
                .order(pool, key, None, exclude)
                .into_iter()
                .filter(|v| &*v.name != name && Some(&*v.name) != exclude)
                .filter(|v| v.vacant_for(super::sticky::VACANT_AFTER));
            return std::iter::once(s).chain(vacant).collect();
        }
        self.order(pool, key, owner, exclude)
    }

    pub fn policy(&self) -> RoutingPolicy {
        self.policy
    }

    /// Usable sidecars in order of preference: the pinned one first (it holds the
    /// session), then the policy's ranking; `exclude` (a sidecar that just failed) last.
    /// When none is usable, the ejected ones in the same order (panic mode).
    pub fn order(
        &self,
        pool: &Pool,
        key: u64,
        pinned: Option<&str>,
        exclude: Option<&str>,
    ) -> Vec<Arc<Sidecar>> {
        let members = pool.members();
        let mut usable: Vec<&Arc<Sidecar>> = members.iter().filter(|s| s.usable()).collect();
        if usable.is_empty() {
            // Panic mode (Envoy's panic threshold): with nothing usable, the ejected
            // instances (connected, ready, logged in; only their failure streak keeps them
            // out) are the least bad. Trying them beats answering 503 to everyone, e.g.
            // while one instance sits out its cooldown and the other reconnects.
            usable = members
                .iter()
                .filter(|s| s.state() == SidecarState::Ejected)
                .collect();
        }
        let candidates: Vec<Candidate> = usable
            .iter()
            .map(|s| Candidate {
                name_hash: s.name_hash,
                // Over all gateways, not only this one (see `Sidecar::load`).
                load: s.load(),
            })
            .collect();
        let ticket = if self.policy == RoutingPolicy::RoundRobin {
            self.round_robin.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let ranking = rank(self.policy, key, self.load_factor, ticket, &candidates);
        let mut ordered: Vec<Arc<Sidecar>> = Vec::with_capacity(ranking.len());
        if let Some(pin) = pinned
            && let Some(s) = usable.iter().find(|s| &*s.name == pin)
        {
            ordered.push((*s).clone());
        }
        for i in ranking {
            let s = usable[i];
            if Some(&*s.name) != pinned {
                ordered.push(s.clone());
            }
        }
        if let Some(bad) = exclude
            && let Some(pos) = ordered.iter().position(|s| &*s.name == bad)
        {
            let s = ordered.remove(pos);
            ordered.push(s);
        }
        ordered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::ejection::EjectionBudget;
    use crate::pool::fixtures::{connected_sidecar, empty_pool};

    fn names(order: &[Arc<Sidecar>]) -> Vec<String> {
        order.iter().map(|s| s.name.to_string()).collect()
    }

    #[tokio::test]
    async fn a_follow_up_waits_for_its_full_owner_unless_a_sidecar_is_vacant() {
        use mux_protocol::SidecarLoad;
        let busy = SidecarLoad {
            in_flight: 1,
            queued: 0,
        };
        let idle = SidecarLoad {
            in_flight: 0,
            queued: 0,
        };
        let pool = empty_pool(1, 100);
        let budget = Arc::new(EjectionBudget::new(100));
        budget.set_members(3);
        let owner = connected_sidecar(&pool, "owner", 1, budget.clone());
        let b = connected_sidecar(&pool, "b", 1, budget.clone());
        let c = connected_sidecar(&pool, "c", 1, budget);
        pool.set_members_for_test(vec![owner.clone(), b.clone(), c.clone()]);
        for s in [&owner, &b, &c] {
            s.set_load(busy);
        }
        let router = Router::new(RoutingPolicy::Sticky, 1.25);
        let order = |waited| names(&router.order_for(&pool, 7, Some("owner"), None, waited));
        assert_eq!(order(Duration::ZERO), vec!["owner"], "everyone busy");
        b.set_load(idle);
        assert_eq!(
            order(Duration::ZERO),
            vec!["owner"],
            "b is between two turns of its own, not vacant"
        );
        tokio::time::sleep(super::super::sticky::VACANT_AFTER + Duration::from_millis(20)).await;
        assert_eq!(order(Duration::ZERO), vec!["owner", "b"], "b is vacant now");
        // A replica lost b's slot to another's chat: not vacant while held full.
        b.saw_full();
        assert_eq!(order(Duration::ZERO), vec!["owner"]);
        assert!(b.try_reserve().is_none(), "held full until its next report");
        b.set_load(idle);
        assert!(b.try_reserve().is_some(), "its report ends the hold");
        // After the bound, the whole ranking.
        assert_eq!(order(router.sticky_wait()).len(), 3);
    }

    #[tokio::test]
    async fn ejected_instances_are_tried_only_when_nothing_is_usable() {
        let pool = empty_pool(1, 100);
        let budget = Arc::new(EjectionBudget::new(100));
        budget.set_members(2);
        let a = connected_sidecar(&pool, "a", 1, budget.clone());
        let b = connected_sidecar(&pool, "b", 1, budget);
        pool.set_members_for_test(vec![a.clone(), b.clone()]);
        let router = Router::new(RoutingPolicy::LeastInFlight, 1.25);
        assert!(a.record_failure(1, Duration::from_secs(60)), "a ejected");
        assert_eq!(names(&router.order(&pool, 7, None, None)), vec!["b"]);
        b.set_link(None);
        assert_eq!(
            names(&router.order(&pool, 7, None, None)),
            vec!["a"],
            "panic mode: the ejected instance beats a 503"
        );
        assert!(pool.any_usable(), "readiness counts it too");
        a.set_link(None);
        assert!(router.order(&pool, 7, None, None).is_empty());
        assert!(!pool.any_usable());
    }
}
