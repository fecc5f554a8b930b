//! Applies the routing policy to the pool's current members.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::choose::{Candidate, rank};
use crate::config::RoutingPolicy;
use crate::pool::{Pool, Sidecar};

pub struct Router {
    policy: RoutingPolicy,
    load_factor: f64,
    round_robin: AtomicUsize,
}

impl Router {
    pub fn new(policy: RoutingPolicy, load_factor: f64) -> Self {
        Self {
            policy,
            load_factor,
            round_robin: AtomicUsize::new(0),
        }
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
                load: s.in_flight(),
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
