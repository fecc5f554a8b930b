//! Virtual keys: a client key's name, its limits (chats at once, requests per minute,
//! allowed models) and its weight in fair queueing. Identity and metric labels carry the
//! name, never the key. Limits are per gateway replica (see docs/gateway.md).

pub mod file;

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub use file::{KeySpec, KeysFileError};

/// The name of the identity used when no key is configured.
pub const ANONYMOUS: &str = "anonymous";

/// One named client key and its limits on this replica.
pub struct VirtualKey {
    pub name: Arc<str>,
    /// DRR quantum: slots per round when keys compete.
    pub weight: u32,
    max_concurrent: Option<u32>,
    models: Option<HashSet<String>>,
    rpm: Option<DefaultDirectRateLimiter>,
    /// Chats of this key queued or running now.
    active: AtomicU32,
}

impl std::fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VirtualKey({})", self.name)
    }
}

/// Why a key's own limits refuse a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    ModelNotAllowed,
    Concurrency,
    /// Requests per minute used up; the limiter's next allowed time is this far away.
    Rpm(Duration),
}

impl KeyRefusal {
    /// `reason` label of the rate-limit metric.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ModelNotAllowed => "model",
            Self::Concurrency => "concurrency",
            Self::Rpm(_) => "rpm",
        }
    }
}

/// Divide a per-key limit between `replicas` gateways (rounded up, at least 1): each
/// replica enforces its share on its own, with no shared store.
fn share(limit: u32, replicas: u32) -> u32 {
    limit.div_ceil(replicas.max(1)).max(1)
}

impl VirtualKey {
    /// A key without limits (API_KEYS entries, anonymous access).
    pub fn open(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            weight: 1,
            max_concurrent: None,
            models: None,
            rpm: None,
            active: AtomicU32::new(0),
        }
    }

    /// A key from its checked spec; limits divided by `replicas` (GATEWAY_REPLICAS).
    pub fn from_spec(spec: &KeySpec, replicas: u32) -> Self {
        Self {
            name: Arc::from(spec.name.as_str()),
            weight: spec.weight.max(1),
            max_concurrent: spec.max_concurrent.map(|n| share(n, replicas)),
            models: spec.models.as_ref().map(|m| m.iter().cloned().collect()),
            rpm: spec
                .requests_per_minute
                .and_then(|n| NonZeroU32::new(share(n, replicas)))
                .map(|n| RateLimiter::direct(Quota::per_minute(n))),
            active: AtomicU32::new(0),
        }
    }

    pub fn max_concurrent(&self) -> Option<u32> {
        self.max_concurrent
    }

    /// Chats of this key queued or running on this replica.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Check the key's limits for one request to `model` (the client's model name). On
    /// success the request counts against `max_concurrent` until the pass drops; a
    /// refusal changes nothing (no count, no rate cell) except a refusal by rate, which
    /// by then has released the count it took.
    pub fn admit(self: &Arc<Self>, model: &str) -> Result<KeyPass, KeyRefusal> {
        if self.models.as_ref().is_some_and(|m| !m.contains(model)) {
            return Err(KeyRefusal::ModelNotAllowed);
        }
        let pass = self.take_concurrency()?;
        if let Some(limiter) = &self.rpm
            && let Err(not_until) = limiter.check()
        {
            drop(pass);
            return Err(KeyRefusal::Rpm(
                not_until.wait_time_from(DefaultClock::default().now()),
            ));
        }
        Ok(pass)
    }

    fn take_concurrency(self: &Arc<Self>) -> Result<KeyPass, KeyRefusal> {
        let max = self.max_concurrent.unwrap_or(u32::MAX);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| KeyRefusal::Concurrency)?;
        Ok(KeyPass { key: self.clone() })
    }
}

/// A request's place within its key's `max_concurrent`; dropping it gives the place back.
pub struct KeyPass {
    key: Arc<VirtualKey>,
}

impl Drop for KeyPass {
    fn drop(&mut self) {
        self.key.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(json: &str, replicas: u32) -> Arc<VirtualKey> {
        let specs = file::parse(&format!(r#"{{"keys":[{json}]}}"#)).expect("spec");
        Arc::new(VirtualKey::from_spec(&specs[0], replicas))
    }

    #[test]
    fn concurrency_counts_until_the_pass_drops() {
        let k = key(r#"{"name":"a","key":"x","max_concurrent":2}"#, 1);
        let a = k.admit("m").expect("1");
        let _b = k.admit("m").expect("2");
        assert_eq!(k.admit("m").err(), Some(KeyRefusal::Concurrency));
        assert_eq!(k.active(), 2, "a refusal takes nothing");
        drop(a);
        assert!(k.admit("m").is_ok());
    }

    #[test]
    fn models_outside_the_list_are_refused_without_a_count() {
        let k = key(r#"{"name":"a","key":"x","models":["gpt-4o"]}"#, 1);
        assert_eq!(k.admit("o3").err(), Some(KeyRefusal::ModelNotAllowed));
        assert_eq!(k.active(), 0);
        assert!(k.admit("gpt-4o").is_ok());
    }

    #[test]
    fn rpm_refuses_with_the_next_allowed_time_and_releases_the_count() {
        let k = key(r#"{"name":"a","key":"x","requests_per_minute":2}"#, 1);
        let _p1 = k.admit("m").expect("1");
        let _p2 = k.admit("m").expect("2");
        match k.admit("m") {
            Err(KeyRefusal::Rpm(wait)) => {
                // One cell every 30 s.
                assert!(
                    wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
                    "{wait:?}"
                );
            }
            other => panic!("expected rpm refusal, got {:?}", other.err()),
        }
        assert_eq!(k.active(), 2);
    }

    #[test]
    fn limits_are_divided_between_replicas() {
        let k = key(
            r#"{"name":"a","key":"x","max_concurrent":5,"requests_per_minute":7}"#,
            2,
        );
        assert_eq!(k.max_concurrent(), Some(3));
        let passes: Vec<_> = (0..3).filter_map(|_| k.admit("m").ok()).collect();
        assert_eq!(passes.len(), 3);
        assert_eq!(share(1, 4), 1, "never below one");
    }
}
