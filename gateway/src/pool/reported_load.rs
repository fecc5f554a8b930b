//! What a sidecar says of its load over all gateways, as this gateway last heard it: the
//! count itself, since when it has been idle (for vacancy), and a short hold after the
//! sidecar refused a chat for want of a slot this gateway thought it had.
//!
//! Times are milliseconds on the owning sidecar's `epoch` (`now_ms`); 0 means "none".

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// How long a refusal for want of a slot counts as "full" when no newer `load` arrives:
/// the sidecar only sends a `load` when its count differs from the last one it sent, so a
/// slot taken and freed between two messages is never reported. As long as the
/// scheduler's periodic re-check (250 ms), so a wrong hold costs at most one re-check.
pub const FULL_HOLD: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct ReportedLoad {
    /// In flight + queued over all gateways (0 while disconnected).
    load: AtomicU32,
    /// When the reported load last became 0 (0 = not idle).
    idle_since_ms: AtomicU64,
    /// Until when a refusal for want of a slot holds the sidecar as full.
    full_until_ms: AtomicU64,
}

impl ReportedLoad {
    /// A `load` or `status` from the sidecar. Returns the previous load. It is newer than
    /// any refusal before it on the same connection, so it ends a hold.
    pub fn set(&self, now_ms: u64, load: u32) -> u32 {
        let before = self.load.swap(load, Ordering::Relaxed);
        self.full_until_ms.store(0, Ordering::Relaxed);
        if load > 0 {
            self.idle_since_ms.store(0, Ordering::Relaxed);
        } else if before > 0 || self.idle_since_ms.load(Ordering::Relaxed) == 0 {
            self.idle_since_ms.store(now_ms.max(1), Ordering::Relaxed);
        }
        before
    }

    /// The connection is gone: nothing known.
    pub fn clear(&self) {
        self.load.store(0, Ordering::Relaxed);
        self.idle_since_ms.store(0, Ordering::Relaxed);
        self.full_until_ms.store(0, Ordering::Relaxed);
    }

    pub fn load(&self) -> u32 {
        self.load.load(Ordering::Relaxed)
    }

    /// The sidecar refused a chat that could not wait for a slot: another replica's chat
    /// took the last one. Until its next `load` (or [`FULL_HOLD`]), it is full here too.
    pub fn saw_full(&self, now_ms: u64) {
        let until = now_ms.saturating_add(FULL_HOLD.as_millis() as u64).max(1);
        self.full_until_ms.store(until, Ordering::Relaxed);
    }

    pub fn held_full(&self, now_ms: u64) -> bool {
        now_ms < self.full_until_ms.load(Ordering::Relaxed)
    }

    /// How long it has reported nothing running or queued (`None`: it has load, or no
    /// report yet).
    pub fn idle_for(&self, now_ms: u64) -> Option<Duration> {
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        (since != 0 && self.load() == 0 && !self.held_full(now_ms))
            .then(|| Duration::from_millis(now_ms.saturating_sub(since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_counts_from_when_the_load_last_dropped_to_zero() {
        let r = ReportedLoad::default();
        assert_eq!(r.idle_for(10), None, "no report yet");
        r.set(100, 0);
        assert_eq!(r.idle_for(350), Some(Duration::from_millis(250)));
        // A repeated 0 (e.g. a status) does not restart the idle time.
        r.set(300, 0);
        assert_eq!(r.idle_for(350), Some(Duration::from_millis(250)));
        assert_eq!(r.set(400, 1), 0);
        assert_eq!(r.idle_for(450), None, "busy");
        r.set(500, 0);
        assert_eq!(
            r.idle_for(520),
            Some(Duration::from_millis(20)),
            "a turn's gap is a short idle, not a long one"
        );
        r.clear();
        assert_eq!((r.load(), r.idle_for(600)), (0, None));
    }

    #[test]
    fn a_refusal_holds_it_full_until_the_next_report_or_the_hold() {
        let r = ReportedLoad::default();
        r.set(0, 0);
        r.saw_full(1000);
        assert!(r.held_full(1000));
        assert_eq!(r.idle_for(1000), None, "not vacant while held");
        assert!(r.held_full(1000 + FULL_HOLD.as_millis() as u64 - 1));
        assert!(!r.held_full(1000 + FULL_HOLD.as_millis() as u64));
        r.saw_full(2000);
        r.set(2001, 1);
        assert!(!r.held_full(2002), "the next report is newer truth");
        assert_eq!(r.load(), 1);
    }
}
