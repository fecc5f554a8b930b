//! Applies the routing policy to the pool's current members.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::choose::{Candidate, rank};
use crate::config::RoutingPolicy;
use crate::pool::{Pool, Sidecar};

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
    /// bound runs, a request whose `owner` is usable gets only that owner (it waits for
    /// its own instance, full or not); after it, the owner first and then the ranking.
    /// Admission calls this again at every re-evaluation, so the switch happens by itself.
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
            return vec![s];
        }
        self.order(pool, key, owner, exclude)
    }

    pub fn policy(&self) -> RoutingPolicy {
        self.policy
    }

    /// Usable sidecars in order of preference: the pinned one first (it holds the
    /// session), then the policy's ranking; `exclude` (a sidecar that just failed) last.
    pub fn order(
        &self,
        pool: &Pool,
        key: u64,
        pinned: Option<&str>,
        exclude: Option<&str>,
    ) -> Vec<Arc<Sidecar>> {
        let members = pool.members();
        let usable: Vec<&Arc<Sidecar>> = members.iter().filter(|s| s.usable()).collect();
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
