//! A bounded LRU whose entries also expire after a TTL: the shape of both the conversation
//! pins and the stored responses. The lock is held only for one map operation, never across
//! an await.

use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

pub struct TtlCache<K: Hash + Eq, V: Clone> {
    entries: Mutex<LruCache<K, (V, Instant)>>,
    ttl: Duration,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// `capacity` 0 is taken as 1.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(cap)),
            ttl,
        }
    }

    /// The live value under `key`; an expired one is dropped and not returned.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.entries.lock();
        match map.get(key) {
            Some((value, at)) if at.elapsed() <= self.ttl => Some(value.clone()),
            Some(_) => {
                map.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V) {
        self.entries.lock().put(key, (value, Instant::now()));
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.lock().pop(key);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
