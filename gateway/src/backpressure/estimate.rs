//! The wait estimate behind `Retry-After`: observed service time per sidecar (EWMA of
//! admission to release) and a queue position. With `c_i` slots on sidecar `i` and mean
//! service time `S_i`, the pool completes `R = sum(c_i / S_i)` chats per second, so the
//! request at position `p` waits about `p / R`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Weight of the newest observation.
const ALPHA: f64 = 0.2;
/// Service time assumed before any chat has finished (a short chat with Lingma).
const PRIOR_SECS: f64 = 5.0;

#[derive(Default)]
pub struct Estimator {
    ewma: HashMap<Arc<str>, f64>,
}

/// A usable sidecar as the estimate sees it.
pub struct Server<'a> {
    pub name: &'a str,
    /// Advertised slots (0 = unlimited).
    pub capacity: u32,
}

impl Estimator {
    /// A chat on `sidecar` held its slot for `held`.
    pub fn record(&mut self, sidecar: &Arc<str>, held: Duration) {
        let x = held.as_secs_f64();
        self.ewma
            .entry(sidecar.clone())
            .and_modify(|m| *m += ALPHA * (x - *m))
            .or_insert(x);
    }

    pub fn forget(&mut self, sidecar: &str) {
        self.ewma.remove(sidecar);
    }

    /// Mean service time of `name`: its own EWMA, else the mean of the others, else the prior.
    pub fn service_secs(&self, name: &str) -> f64 {
        if let Some(m) = self.ewma.get(name) {
            return m.max(0.001);
        }
        if self.ewma.is_empty() {
            return PRIOR_SECS;
        }
        let n = self.ewma.len() as f64;
        (self.ewma.values().sum::<f64>() / n).max(0.001)
    }

    /// Chats per second the `servers` complete, capped by a global limit of `limit`
    /// chats at once.
    pub fn rate(&self, servers: &[Server<'_>], limit: Option<usize>) -> f64 {
        let mut slots = 0.0;
        let mut rate = 0.0;
        for s in servers {
            let c = f64::from(s.capacity.max(1));
            slots += c;
            rate += c / self.service_secs(s.name);
        }
        match limit {
            Some(l) if slots > 0.0 && (l as f64) < slots => rate * (l as f64) / slots,
            _ => rate,
        }
    }

    /// Expected wait of the request at `position` (1 = next).
    pub fn wait(&self, servers: &[Server<'_>], limit: Option<usize>, position: usize) -> Duration {
        let rate = self.rate(servers, limit);
        if rate <= 0.0 {
            return Duration::from_secs_f64(PRIOR_SECS);
        }
        Duration::from_secs_f64((position as f64 / rate).min(3600.0))
    }
}

/// `Retry-After` seconds for an estimated wait: rounded, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, capacity: u32) -> Server<'_> {
        Server { name, capacity }
    }

    #[test]
    fn ewma_follows_observations() {
        let mut e = Estimator::default();
        let a: Arc<str> = Arc::from("a");
        assert_eq!(e.service_secs("a"), PRIOR_SECS);
        e.record(&a, Duration::from_secs(2));
        assert!(
            (e.service_secs("a") - 2.0).abs() < 1e-9,
            "first sample is the mean"
        );
        e.record(&a, Duration::from_secs(4));
        assert!((e.service_secs("a") - 2.4).abs() < 1e-9);
        // An unseen sidecar is assumed like the others.
        assert!((e.service_secs("b") - 2.4).abs() < 1e-9);
    }

    #[test]
    fn wait_grows_with_position_and_shrinks_with_capacity() {
        let mut e = Estimator::default();
        for name in ["a", "b"] {
            e.record(&Arc::from(name), Duration::from_secs(2));
        }
        let two = [s("a", 1), s("b", 1)];
        // Two slots of 2 s: one chat per second.
        assert_eq!(e.wait(&two, None, 3), Duration::from_secs(3));
        assert_eq!(e.wait(&two, None, 6), Duration::from_secs(6));
        let wide = [s("a", 4), s("b", 4)];
        assert_eq!(e.wait(&wide, None, 8), Duration::from_secs(2));
        // A global limit of 2 chats caps the eight slots to two.
        assert_eq!(e.wait(&wide, Some(2), 8), Duration::from_secs(8));
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2600)), 3);
    }
}
