//! Deficit round-robin between per-key queues, with unit cost per request: each key with
//! waiters gets `weight` grants per round, in turn, so one key's backlog cannot starve
//! another's. Within a key, the first waiter that can use a free slot goes first.
//! Pure (no clock, no I/O): the scheduler says which waiters are eligible.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

struct Lane<T> {
    weight: u32,
    /// Grants left in this key's current turn.
    deficit: u32,
    items: VecDeque<T>,
}

/// Per-key FIFO queues served in weighted turns.
pub struct Drr<T> {
    lanes: HashMap<Arc<str>, Lane<T>>,
    /// Keys with waiters; the front one has the turn.
    ring: VecDeque<Arc<str>>,
    len: usize,
}

impl<T> Default for Drr<T> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Drr<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waiters of `key`.
    pub fn queued_of(&self, key: &str) -> usize {
        self.lanes.get(key).map_or(0, |l| l.items.len())
    }

    /// Add a waiter at the end of its key's queue; a key new to the ring waits for its
    /// turn behind the keys already there.
    pub fn push(&mut self, key: &Arc<str>, weight: u32, item: T) {
        let ring = &mut self.ring;
        let lane = self.lanes.entry(key.clone()).or_insert_with(|| {
            ring.push_back(key.clone());
            Lane {
                weight: 1,
                deficit: 0,
                items: VecDeque::new(),
            }
        });
        lane.weight = weight.max(1);
        lane.items.push_back(item);
        self.len += 1;
    }

    /// The next waiter in DRR order that `eligible` accepts (it is called on waiters in
    /// that order and stops at the first yes), or `None` when no waiter is eligible.
    pub fn pop_next(&mut self, mut eligible: impl FnMut(&T) -> bool) -> Option<T> {
        let mut misses = 0;
        while misses < self.ring.len() {
            let key = self.ring.front()?.clone();
            let Some(lane) = self.lanes.get_mut(&key) else {
                self.ring.pop_front();
                continue;
            };
            if lane.deficit == 0 {
                lane.deficit = lane.weight;
            }
            if let Some(item) = lane
                .items
                .iter()
                .position(&mut eligible)
                .and_then(|pos| lane.items.remove(pos))
            {
                lane.deficit -= 1;
                self.len -= 1;
                if lane.items.is_empty() {
                    self.lanes.remove(&key);
                    self.ring.pop_front();
                } else if lane.deficit == 0 {
                    self.ring.rotate_left(1);
                }
                return Some(item);
            }
            // Nothing this key waits for is free: the next key gets a look; this one
            // keeps the rest of its turn.
            self.ring.rotate_left(1);
            misses += 1;
        }
        None
    }

    /// Take out the waiter of `key` that `pred` picks (it left: timeout, cancel).
    pub fn remove(&mut self, key: &str, pred: impl Fn(&T) -> bool) -> Option<T> {
        let lane = self.lanes.get_mut(key)?;
        let pos = lane.items.iter().position(pred)?;
        let item = lane.items.remove(pos)?;
        self.len -= 1;
        if lane.items.is_empty() {
            self.lanes.remove(key);
            self.ring.retain(|k| &**k != key);
        }
        Some(item)
    }

    pub fn find_mut(&mut self, key: &str, pred: impl Fn(&T) -> bool) -> Option<&mut T> {
        self.lanes.get_mut(key)?.items.iter_mut().find(|t| pred(t))
    }

    pub fn index_in_lane(&self, key: &str, pred: impl Fn(&T) -> bool) -> Option<usize> {
        self.lanes.get(key)?.items.iter().position(pred)
    }

    /// Roughly how many grants go before the waiter with `ahead` waiters before it in
    /// the lane of `key` (weight `weight`), itself included: it needs
    /// `ceil((ahead + 1) / weight)` turns, and in as many turns every other key takes
    /// up to its weight per turn.
    pub fn position(&self, key: &str, weight: u32, ahead: usize) -> usize {
        let weight = usize::try_from(weight.max(1)).unwrap_or(1);
        let turns = (ahead + 1).div_ceil(weight);
        let others: usize = self
            .lanes
            .iter()
            .filter(|(k, _)| &***k != key)
            .map(|(_, lane)| {
                let w = usize::try_from(lane.weight).unwrap_or(1);
                lane.items.len().min(turns.saturating_mul(w))
            })
            .sum();
        others + ahead + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn drain(drr: &mut Drr<(char, u32)>) -> String {
        std::iter::from_fn(|| drr.pop_next(|_| true))
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn a_backlog_does_not_starve_a_light_key() {
        let mut drr = Drr::default();
        for i in 0..6 {
            drr.push(&key("a"), 1, ('a', i));
        }
        drr.push(&key("b"), 1, ('b', 0));
        drr.push(&key("b"), 1, ('b', 1));
        assert_eq!(drain(&mut drr), "ababaaaa");
        assert!(drr.is_empty());
    }

    #[test]
    fn weights_give_proportional_turns_and_fifo_within_a_key() {
        let mut drr = Drr::default();
        for i in 0..6 {
            drr.push(&key("a"), 2, ('a', i));
            drr.push(&key("b"), 1, ('b', i));
        }
        let order: Vec<_> = std::iter::from_fn(|| drr.pop_next(|_| true)).collect();
        let keys: String = order.iter().map(|(k, _)| *k).collect();
        assert_eq!(&keys[..9], "aabaabaab");
        let a_seq: Vec<u32> = order
            .iter()
            .filter(|(k, _)| *k == 'a')
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(a_seq, vec![0, 1, 2, 3, 4, 5], "FIFO within a key");
    }

    #[test]
    fn a_key_whose_waiters_cannot_run_is_skipped_not_blocking() {
        let mut drr = Drr::default();
        drr.push(&key("a"), 1, ('a', 0));
        drr.push(&key("b"), 1, ('b', 0));
        // Only b's waiter can use the free slot.
        assert_eq!(drr.pop_next(|(k, _)| *k == 'b'), Some(('b', 0)));
        assert_eq!(drr.pop_next(|(k, _)| *k == 'b'), None);
        assert_eq!(drr.len(), 1);
        // Within a key, a later waiter that can run goes before one that cannot.
        drr.push(&key("a"), 1, ('a', 1));
        assert_eq!(drr.pop_next(|(_, i)| *i == 1), Some(('a', 1)));
        assert_eq!(drain(&mut drr), "a");
    }

    #[test]
    fn removal_and_positions() {
        let mut drr = Drr::default();
        for i in 0..4 {
            drr.push(&key("a"), 1, ('a', i));
        }
        drr.push(&key("b"), 1, ('b', 0));
        // A new b request: 2 turns -> two of a's, b's one, then itself.
        assert_eq!(drr.position("b", 1, drr.queued_of("b")), 4);
        // A new a request waits behind all of a's and b's one.
        assert_eq!(drr.position("a", 1, drr.queued_of("a")), 6);
        assert_eq!(drr.remove("a", |(_, i)| *i == 2), Some(('a', 2)));
        assert_eq!(drr.remove("b", |_| true), Some(('b', 0)));
        assert_eq!(drr.queued_of("b"), 0);
        assert_eq!(drain(&mut drr), "aaa");
    }
}
