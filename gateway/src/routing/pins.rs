//! Conversation pins: continuation key -> the sidecar that holds the upstream session,
//! learned from successful finishes and checked on every hit.

use std::sync::Arc;

use crate::ttl_cache::TtlCache;

/// Where a follow-up turn should go, given its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinDecision {
    /// No pin (a first turn, or never seen by this gateway).
    Unpinned,
    /// The pinned sidecar is usable: try it first.
    Use(Arc<str>),
    /// The pinned sidecar is gone, not ready or logged out: route normally and tell the
    /// client the session migrated.
    Migrate,
}

/// The pure check, applied on every hit.
pub fn check_pin(pinned: Option<Arc<str>>, usable: impl Fn(&str) -> bool) -> PinDecision {
    match pinned {
        None => PinDecision::Unpinned,
        Some(name) if usable(&name) => PinDecision::Use(name),
        Some(_) => PinDecision::Migrate,
    }
}

/// Continuation key -> sidecar name, bounded, with a TTL.
pub type PinMap = TtlCache<String, Arc<str>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pin_check_uses_only_usable_sidecars() {
        let a: Arc<str> = Arc::from("a");
        assert_eq!(check_pin(None, |_| true), PinDecision::Unpinned);
        assert_eq!(
            check_pin(Some(a.clone()), |n| n == "a"),
            PinDecision::Use(a.clone())
        );
        assert_eq!(check_pin(Some(a), |n| n == "b"), PinDecision::Migrate);
    }

    #[test]
    fn map_is_bounded_and_expires() {
        let pins = PinMap::new(2, Duration::from_secs(60));
        pins.insert("k1".into(), Arc::from("a"));
        pins.insert("k2".into(), Arc::from("b"));
        pins.insert("k3".into(), Arc::from("c"));
        assert_eq!(pins.len(), 2);
        assert!(pins.get("k1").is_none());
        assert_eq!(pins.get("k3").as_deref(), Some("c"));

        let short = PinMap::new(4, Duration::ZERO);
        short.insert("k".into(), Arc::from("a"));
        std::thread::sleep(Duration::from_millis(2));
        assert!(short.get("k").is_none());
        assert!(short.is_empty());
    }
}
