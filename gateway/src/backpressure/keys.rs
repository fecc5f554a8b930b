//! A virtual key's own limits at the door of the scheduler: a refusal becomes the
//! surface's error with an honest `Retry-After`, and is counted per key name.

use std::time::Duration;

use super::InFlightLimiter;
use super::estimate::retry_after_secs;
use crate::errors::GatewayError;
use crate::keys::{KeyPass, KeyRefusal, VirtualKey};
use crate::pool::Pool;

impl InFlightLimiter {
    /// Check `key`'s limits for a request to `model` (the client's name for it). The pass
    /// counts the request in the key's `max_concurrent` until it drops.
    pub fn admit_key(
        &self,
        key: &std::sync::Arc<VirtualKey>,
        model: &str,
        pool: &Pool,
    ) -> Result<KeyPass, GatewayError> {
        let refusal = match key.admit(model) {
            Ok(pass) => return Ok(pass),
            Err(r) => r,
        };
        let metrics = &self.shared.metrics;
        match refusal {
            KeyRefusal::ModelNotAllowed => {
                metrics.key_outcome(&key.name, "forbidden");
                Err(GatewayError::ModelNotAllowed {
                    model: model.to_owned(),
                })
            }
            KeyRefusal::Rpm(wait) => {
                metrics.key_limited(&key.name, refusal.reason());
                // A retry before the limiter's next cell would be refused again: round up.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(GatewayError::RateLimited {
                    message: "This API key's requests per minute are used up; retry later.",
                    code: "key_rate_limit",
                    retry_after_secs: secs.max(1),
                })
            }
            KeyRefusal::Concurrency => {
                metrics.key_limited(&key.name, refusal.reason());
                Err(GatewayError::RateLimited {
                    message: "This API key has as many requests in flight as it may; retry later.",
                    code: "key_concurrency_limit",
                    retry_after_secs: retry_after_secs(self.concurrency_wait(key, pool)),
                })
            }
        }
    }

    /// When one of `key`'s chats is expected to end: behind its queued ones when it has
    /// some, else the first of its running chats to finish (mean service time divided by
    /// how many it runs).
    fn concurrency_wait(&self, key: &VirtualKey, pool: &Pool) -> Duration {
        let queued = self.shared.state.lock().waiters.queued_of(&key.name);
        if queued > 0 {
            return self.estimated_wait_for(pool, key);
        }
        let running = key.max_concurrent().unwrap_or(1).max(1);
        self.mean_service(pool) / running
    }
}
