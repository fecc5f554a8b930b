//! The pool-wide owner index: which sidecar holds the upstream session of a conversation
//! key, as the sidecars themselves announce it (`sessions` messages: a snapshot on every
//! connection, then held/dropped changes). It is the source of truth every gateway replica
//! shares without talking to the others; the gateway's own pins are only a fallback.
//!
//! Entries belong to one mux connection (a [`ConnId`]): when the connection drops, or its
//! sidecar leaves the pool, its entries go, and a reconnect starts again from the
//! sidecar's snapshot. The same key may be held by more than one sidecar (two
//! conversations that began alike, on two instances); every holder is kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mux_protocol::{KeyDigest, SessionKeys};
use parking_lot::RwLock;

/// One mux connection's identity in the index (never reused within a process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

impl ConnId {
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Default)]
pub struct OwnerIndex {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Key digest -> the connections whose sidecar holds it (almost always one).
    holders: HashMap<KeyDigest, Vec<ConnId>>,
    /// Per connection: its sidecar's name and the digests it announced.
    conns: HashMap<ConnId, Conn>,
}

struct Conn {
    sidecar: Arc<str>,
    keys: HashSet<KeyDigest>,
}

impl OwnerIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one `sessions` message received on `conn` (of sidecar `sidecar`).
    pub fn apply(&self, conn: ConnId, sidecar: &Arc<str>, msg: &SessionKeys) {
        let mut inner = self.inner.write();
        if msg.snapshot {
            inner.clear(conn);
        }
        let inner = &mut *inner;
        let entry = inner.conns.entry(conn).or_insert_with(|| Conn {
            sidecar: sidecar.clone(),
            keys: HashSet::new(),
        });
        for d in &msg.dropped {
            if entry.keys.remove(d) {
                remove_holder(&mut inner.holders, *d, conn);
            }
        }
        for d in &msg.held {
            if entry.keys.insert(*d) {
                inner.holders.entry(*d).or_default().push(conn);
            }
        }
    }

    /// Forget what `conn` announced (its connection ended).
    pub fn clear(&self, conn: ConnId) {
        self.inner.write().clear(conn);
    }

    /// Forget every connection of `sidecar` (it left the pool).
    pub fn clear_sidecar(&self, sidecar: &str) {
        let mut inner = self.inner.write();
        let conns: Vec<ConnId> = inner
            .conns
            .iter()
            .filter(|(_, c)| &*c.sidecar == sidecar)
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            inner.clear(conn);
        }
    }

    /// The sidecars that hold `digest` (usually none or one).
    pub fn holders(&self, digest: KeyDigest) -> Vec<Arc<str>> {
        let inner = self.inner.read();
        inner
            .holders
            .get(&digest)
            .map(|conns| {
                conns
                    .iter()
                    .filter_map(|c| inner.conns.get(c).map(|c| c.sidecar.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keys known over the whole pool (for /internal/stats).
    pub fn len(&self) -> usize {
        self.inner.read().holders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn clear(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            for d in c.keys {
                remove_holder(&mut self.holders, d, conn);
            }
        }
    }
}

fn remove_holder(holders: &mut HashMap<KeyDigest, Vec<ConnId>>, d: KeyDigest, conn: ConnId) {
    if let Some(list) = holders.get_mut(&d) {
        list.retain(|c| *c != conn);
        if list.is_empty() {
            holders.remove(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(snapshot: bool, held: &[u64], dropped: &[u64]) -> SessionKeys {
        SessionKeys {
            snapshot,
            held: held.iter().copied().map(KeyDigest).collect(),
            dropped: dropped.iter().copied().map(KeyDigest).collect(),
        }
    }

    #[test]
    fn snapshot_then_changes() {
        let index = OwnerIndex::new();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let (ca, cb) = (ConnId::next(), ConnId::next());
        index.apply(ca, &a, &keys(true, &[1, 2], &[]));
        index.apply(cb, &b, &keys(true, &[3], &[]));
        assert_eq!(index.holders(KeyDigest(1)), vec![a.clone()]);
        assert_eq!(index.holders(KeyDigest(3)), vec![b.clone()]);
        assert!(index.holders(KeyDigest(9)).is_empty());

        // A claimed key leaves; the turn's continuation key arrives.
        index.apply(ca, &a, &keys(false, &[4], &[1]));
        assert!(index.holders(KeyDigest(1)).is_empty());
        assert_eq!(index.holders(KeyDigest(4)), vec![a.clone()]);
        assert_eq!(index.len(), 3);

        // A new snapshot replaces what the connection said before.
        index.apply(ca, &a, &keys(true, &[5], &[]));
        assert!(index.holders(KeyDigest(2)).is_empty());
        assert!(index.holders(KeyDigest(4)).is_empty());
        assert_eq!(index.holders(KeyDigest(5)), vec![a.clone()]);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn a_key_held_twice_survives_one_drop() {
        let index = OwnerIndex::new();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let (ca, cb) = (ConnId::next(), ConnId::next());
        index.apply(ca, &a, &keys(true, &[7], &[]));
        index.apply(cb, &b, &keys(true, &[7], &[]));
        let mut both = index.holders(KeyDigest(7));
        both.sort();
        assert_eq!(both, vec![a.clone(), b.clone()]);
        index.apply(ca, &a, &keys(false, &[], &[7]));
        assert_eq!(index.holders(KeyDigest(7)), vec![b.clone()]);
        // A repeated `held` does not count twice; dropping an unknown key is a no-op.
        index.apply(cb, &b, &keys(false, &[7, 7], &[8]));
        index.apply(cb, &b, &keys(false, &[], &[7]));
        assert!(index.is_empty());
    }

    #[test]
    fn a_dropped_connection_or_a_departed_sidecar_is_forgotten() {
        let index = OwnerIndex::new();
        let a: Arc<str> = Arc::from("a");
        let (old, new) = (ConnId::next(), ConnId::next());
        index.apply(old, &a, &keys(true, &[1], &[]));
        index.clear(old);
        assert!(index.is_empty());
        // Clearing an old connection leaves its successor alone.
        index.apply(new, &a, &keys(true, &[2], &[]));
        index.clear(old);
        assert_eq!(index.holders(KeyDigest(2)), vec![a.clone()]);
        index.clear_sidecar("a");
        assert!(index.is_empty());
    }
}
