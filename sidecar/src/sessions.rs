//! The session map: conversation key (scoped per API key, computed by `mux_protocol`) ->
//! Lingma `sessionId`, LRU + TTL.
//!
//! A hit is *claimed*: the entry leaves the map while its turn runs, so two concurrent
//! requests never continue one upstream session, and a failed or cancelled turn leaves
//! nothing behind (the upstream session may hold half a turn). A successful turn stores
//! the session again under its continuation key.
//!
//! Every change of the set of keys (stored, claimed, evicted, expired) is published as a
//! [`KeyChange`] while the map's lock is held, and [`SessionMap::watch`] takes a snapshot
//! and subscribes under that same lock: a mux connection that announces the snapshot and
//! then the changes never misses or reorders one (`sidecar/src/announce.rs`).

use lru::LruCache;
use mux_protocol::KeyDigest;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Changes a slow announcer may fall behind by before it must start over from a snapshot.
const CHANGE_BUFFER: usize = 4096;

/// One key entering (`held`) or leaving the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyChange {
    pub digest: KeyDigest,
    pub held: bool,
}

struct Entry {
    session_id: String,
    stored_at: Instant,
}

pub struct SessionMap {
    entries: Mutex<LruCache<String, Entry>>,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    changes: broadcast::Sender<KeyChange>,
}

/// Counters for metrics and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl SessionMap {
    /// `max_entries` 0 is treated as 1; `ttl` zero means entries never expire by age.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(cap)),
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            changes: broadcast::Sender::new(CHANGE_BUFFER),
        }
    }

    /// The digests of the keys held now (expired ones left out) and the changes from this
    /// moment on, taken atomically.
    pub fn watch(&self) -> (Vec<KeyDigest>, broadcast::Receiver<KeyChange>) {
        let now = Instant::now();
        let entries = self.entries.lock();
        let rx = self.changes.subscribe();
        let held = entries
            .iter()
            .filter(|(_, e)| !self.expired(e, now))
            .map(|(k, _)| KeyDigest::of(k))
            .collect();
        (held, rx)
    }

    /// Publish a change; called with the map's lock held so changes keep their order
    /// relative to [`SessionMap::watch`] snapshots. Nobody listening is fine.
    fn publish(&self, key: &str, held: bool) {
        let _ = self.changes.send(KeyChange {
            digest: KeyDigest::of(key),
            held,
        });
    }

    /// Take the session stored under `key`, if any and not expired.
    pub fn claim(&self, key: &str) -> Option<String> {
        self.claim_at(key, Instant::now())
    }

    fn claim_at(&self, key: &str, now: Instant) -> Option<String> {
        let entry = {
            let mut entries = self.entries.lock();
            let entry = entries.pop(key);
            if entry.is_some() {
                // Running (or dead): no longer something a follow-up can continue.
                self.publish(key, false);
            }
            entry
        };
        match entry {
            Some(e) if !self.expired(&e, now) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.session_id)
            }
            Some(_) => {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Store `session_id` under `key` (after a successful turn).
    pub fn store(&self, key: String, session_id: String) {
        self.store_at(key, session_id, Instant::now());
    }

    fn store_at(&self, key: String, session_id: String, now: Instant) {
        let evicted = {
            let mut entries = self.entries.lock();
            let evicted = entries.push(
                key.clone(),
                Entry {
                    session_id,
                    stored_at: now,
                },
            );
            if let Some((old, _)) = &evicted
                && *old != key
            {
                self.publish(old, false);
            }
            self.publish(&key, true);
            evicted
        };
        // `push` returns the replaced entry for the same key too: only a different key
        // is an eviction.
        if matches!(evicted, Some((k, _)) if k != key) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drop expired entries (called now and then so the map does not hold dead sessions).
    pub fn purge_expired(&self) -> usize {
        self.purge_expired_at(Instant::now())
    }

    fn purge_expired_at(&self, now: Instant) -> usize {
        if self.ttl.is_zero() {
            return 0;
        }
        let mut entries = self.entries.lock();
        let dead: Vec<String> = entries
            .iter()
            .filter(|(_, e)| self.expired(e, now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            entries.pop(k);
            self.publish(k, false);
        }
        drop(entries);
        self.evictions
            .fetch_add(dead.len() as u64, Ordering::Relaxed);
        dead.len()
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        !self.ttl.is_zero() && now.saturating_duration_since(e.stored_at) >= self.ttl
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            entries: self.entries.lock().len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_takes_the_entry_once() {
        let map = SessionMap::new(4, Duration::from_secs(60));
        map.store("k".into(), "s1".into());
        assert_eq!(map.claim("k").as_deref(), Some("s1"));
        assert_eq!(map.claim("k"), None);
        let s = map.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 1, 0));
    }

    #[test]
    fn ttl_expires_entries() {
        let map = SessionMap::new(4, Duration::from_secs(10));
        let t0 = Instant::now();
        map.store_at("old".into(), "s-old".into(), t0);
        map.store_at("new".into(), "s-new".into(), t0 + Duration::from_secs(8));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(map.claim_at("old", later), None);
        assert_eq!(map.claim_at("new", later).as_deref(), Some("s-new"));
        let s = map.stats();
        assert_eq!((s.hits, s.misses, s.evictions), (1, 1, 1));
    }

    #[test]
    fn purge_drops_only_expired_entries() {
        let map = SessionMap::new(8, Duration::from_secs(10));
        let t0 = Instant::now();
        map.store_at("a".into(), "1".into(), t0);
        map.store_at("b".into(), "2".into(), t0 + Duration::from_secs(5));
        assert_eq!(map.purge_expired_at(t0 + Duration::from_secs(12)), 1);
        assert_eq!(map.stats().entries, 1);
        assert_eq!(
            map.claim_at("b", t0 + Duration::from_secs(12)).as_deref(),
            Some("2")
        );
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let map = SessionMap::new(2, Duration::ZERO);
        map.store("a".into(), "1".into());
        map.store("b".into(), "2".into());
        map.store("a".into(), "1b".into()); // same key: a refresh, not an eviction
        assert_eq!(map.stats().evictions, 0);
        map.store("c".into(), "3".into()); // evicts b, the least recently used
        assert_eq!(map.stats().evictions, 1);
        assert_eq!(map.claim("b"), None);
        assert_eq!(map.claim("a").as_deref(), Some("1b"));
        assert_eq!(map.claim("c").as_deref(), Some("3"));
    }

    #[test]
    fn every_change_of_the_key_set_is_published_after_the_snapshot() {
        let map = SessionMap::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let key = |c: char| c.to_string().repeat(32);
        map.store_at(key('a'), "1".into(), t0);
        let (held, mut rx) = map.watch();
        assert_eq!(held, vec![KeyDigest::of(&key('a'))]);
        map.store_at(key('b'), "2".into(), t0);
        map.store_at(key('c'), "3".into(), t0); // evicts a
        assert_eq!(map.claim_at(&key('b'), t0).as_deref(), Some("2"));
        assert_eq!(map.claim_at(&key('b'), t0), None, "nothing to drop twice");
        assert_eq!(map.purge_expired_at(t0 + Duration::from_secs(11)), 1); // c expires
        let mut seen = Vec::new();
        while let Ok(c) = rx.try_recv() {
            seen.push((c.digest, c.held));
        }
        let d = |c| KeyDigest::of(&key(c));
        assert_eq!(
            seen,
            vec![
                (d('b'), true),
                (d('a'), false),
                (d('c'), true),
                (d('b'), false),
                (d('c'), false),
            ]
        );
    }

    #[test]
    fn scopes_do_not_share_sessions() {
        use mux_protocol::{ChatMessage, Role, continuation_key, conversation_key};
        let m = |role, c: &str| ChatMessage {
            role,
            content: c.into(),
        };
        let map = SessionMap::new(8, Duration::from_secs(60));
        let turn1 = vec![m(Role::User, "hello")];
        map.store(
            continuation_key("scope-a", &turn1).expect("key"),
            "sa".into(),
        );
        let turn2 = vec![
            m(Role::User, "hello"),
            m(Role::Assistant, "hi"),
            m(Role::User, "more"),
        ];
        let other = conversation_key("scope-b", &turn2).expect("key");
        assert_eq!(map.claim(&other), None);
        let same = conversation_key("scope-a", &turn2).expect("key");
        assert_eq!(map.claim(&same).as_deref(), Some("sa"));
    }
}
