//! The pool's ejection budget (Envoy's `max_ejection_percent`): at most this share of the
//! members is ejected at once, so when every instance is failing the gateway keeps trying
//! the ones not yet ejected (the last to fail: the least bad) instead of answering 503 to
//! everything and taking itself out of its Service through `/readyz`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

pub struct EjectionBudget {
    max_percent: u8,
    /// Pool members (set on every membership change).
    members: AtomicUsize,
    /// Ejected sidecars by name, with the end of their ejection (ms since the pool epoch).
    ejected: Mutex<HashMap<String, u64>>,
}

impl EjectionBudget {
    pub fn new(max_percent: u8) -> Self {
        Self {
            max_percent: max_percent.min(100),
            members: AtomicUsize::new(0),
            ejected: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn set_members(&self, n: usize) {
        self.members.store(n, Ordering::Relaxed);
    }

    /// The most members that may be ejected at once (rounded down: with one member and
    /// any share below 100 %, none).
    fn limit(&self) -> usize {
        self.members.load(Ordering::Relaxed) * usize::from(self.max_percent) / 100
    }

    /// Take a place for `name` until `until_ms` if the share allows it (`now_ms` ends the
    /// places of ejections that are over). False = eject nothing, keep it in rotation.
    pub(crate) fn try_eject(&self, name: &str, now_ms: u64, until_ms: u64) -> bool {
        let mut ejected = self.ejected.lock();
        ejected.retain(|_, until| *until > now_ms);
        if !ejected.contains_key(name) && ejected.len() >= self.limit() {
            return false;
        }
        ejected.insert(name.to_owned(), until_ms);
        true
    }

    /// A member left the pool: its place is free.
    pub(crate) fn forget(&self, name: &str) {
        self.ejected.lock().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_share_and_places_free_up_with_time() {
        let budget = EjectionBudget::new(50);
        budget.set_members(4);
        assert!(budget.try_eject("a", 0, 100));
        assert!(budget.try_eject("b", 0, 100));
        assert!(!budget.try_eject("c", 0, 100), "half of 4 already out");
        assert!(
            budget.try_eject("a", 10, 200),
            "an ejected one may be ejected again"
        );
        assert!(budget.try_eject("c", 150, 300), "b's ejection ended at 100");
        budget.forget("a");
        assert!(budget.try_eject("d", 150, 300));
    }

    #[test]
    fn a_lone_instance_is_never_ejected_below_100_percent() {
        let budget = EjectionBudget::new(50);
        budget.set_members(1);
        assert!(!budget.try_eject("only", 0, 100));
        let all = EjectionBudget::new(100);
        all.set_members(1);
        assert!(all.try_eject("only", 0, 100));
    }
}
