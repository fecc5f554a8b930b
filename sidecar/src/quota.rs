//! Quota-aware account: when Lingma says the account is rate limited (`chat/finish`
//! statusCode 429) or out of quota (a quota code, LINGMA_QUOTA_ERROR_CODES), the sidecar
//! pauses instead of failing every following chat on its own. While paused it reports
//! itself not ready with the reason (`SidecarStatus.paused`, `/readyz`, metrics), answers
//! new chats `unavailable` before Lingma sees them (the gateway retries them elsewhere),
//! and when the pause is over it rejoins: the next chat is the probe. Pauses in a row grow
//! exponentially (SIDECAR_QUOTA_PAUSE_SEC doubling up to SIDECAR_QUOTA_PAUSE_MAX_SEC); a
//! successful chat ends the streak.

use crate::state::SidecarState;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use lingma_protocol::wire::ChatFinish;
use lingma_protocol::wire::finish_codes;
use mux_protocol::{AccountPause, PauseReason};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How Lingma's limits are recognised and how long the account sits out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSettings {
    /// The first pause; zero = never pause (each limited chat fails on its own).
    pub pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
    /// `chat/finish` codes (statusCode or `extra.errorCode`) that mean "out of quota". Not
    /// documented by Alibaba: Qoder CN's "daily usage limit" is error 110
    /// (lingma-protocol.md, section 7), hence configurable.
    pub quota_codes: Vec<i64>,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            pause: Duration::from_secs(30),
            max_pause: Duration::from_secs(900),
            quota_codes: vec![110],
        }
    }
}

impl QuotaSettings {
    /// What a `chat/finish` says about the account: a quota code wins over a 429 (the
    /// longer-lasting condition names the pause).
    pub fn limit_of(&self, finish: &ChatFinish) -> Option<PauseReason> {
        if matches!(finish.status_code, finish_codes::OK | 0) {
            // An answered chat: whatever its extra says, the account works.
            return None;
        }
        let error_code = finish.extra.get("errorCode").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
        let is_quota = |c: i64| self.quota_codes.contains(&c);
        if error_code.is_some_and(is_quota) || is_quota(finish.status_code) {
            Some(PauseReason::QuotaExhausted)
        } else if finish.status_code == finish_codes::RATE_LIMITED {
            Some(PauseReason::RateLimited)
        } else {
            None
        }
    }

    fn backoff(&self) -> ExponentialBackoff {
        // No jitter: instances hit their limits at different times anyway, and a pause
        // the operator can predict from the settings is easier to reason about.
        ExponentialBuilder::default()
            .with_min_delay(self.pause)
            .with_max_delay(self.max_pause.max(self.pause))
            .with_factor(2.0)
            .without_max_times()
            .build()
    }
}

/// The pause in effect, as kept in the sidecar's health (pushed to gateways on change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    pub reason: PauseReason,
    pub until: Instant,
    /// Pauses in a row (1 = the first).
    pub pauses: u32,
}

impl Paused {
    /// The wire form, its remaining time counted from `now`.
    pub fn to_wire(self, now: Instant) -> AccountPause {
        let left = self.until.saturating_duration_since(now);
        AccountPause {
            reason: self.reason,
            retry_after_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            pauses: self.pauses,
        }
    }

    pub fn message(self) -> &'static str {
        match self.reason {
            PauseReason::RateLimited => "Lingma account is rate limited; paused",
            PauseReason::QuotaExhausted => "Lingma account is out of quota; paused",
        }
    }
}

/// The streak of pauses and the delays it draws from.
pub struct PauseStreak {
    settings: QuotaSettings,
    inner: Mutex<Streak>,
}

/// Pauses in a row and the delays of the next ones; held locked while a pause is decided,
/// so chats that meet the limit at once start one pause, not one each.
pub struct Streak {
    pauses: u32,
    delays: ExponentialBackoff,
}

impl Streak {
    /// The next pause of the streak: its length and its number (1 = the first); `None`
    /// when pausing is off.
    pub fn next(&mut self, settings: &QuotaSettings) -> Option<(Duration, u32)> {
        if settings.pause.is_zero() {
            return None;
        }
        self.pauses = self.pauses.saturating_add(1);
        let delay = self.delays.next().unwrap_or(settings.max_pause);
        Some((delay, self.pauses))
    }
}

impl PauseStreak {
    pub fn new(settings: QuotaSettings) -> Self {
        let delays = settings.backoff();
        Self {
            settings,
            inner: Mutex::new(Streak { pauses: 0, delays }),
        }
    }

    pub fn settings(&self) -> &QuotaSettings {
        &self.settings
    }

    /// The streak, locked (never across an `.await`).
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, Streak> {
        self.inner.lock()
    }

    /// A chat succeeded: the next limit starts again at the first pause.
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        if inner.pauses > 0 {
            inner.pauses = 0;
            inner.delays = self.settings.backoff();
        }
    }
}

/// Ends each pause when its time is up (the health change pushes a Status to every
/// gateway), until `stop`.
pub async fn run(state: Arc<SidecarState>, stop: CancellationToken) {
    let mut health = state.subscribe();
    loop {
        let until = health.borrow_and_update().paused.map(|p| p.until);
        let due = async {
            match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = due => state.end_pause_if_due(),
            changed = health.changed() => if changed.is_err() {
                return;
            },
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finish(status_code: i64, extra: serde_json::Value) -> ChatFinish {
        ChatFinish {
            status_code,
            extra,
            ..ChatFinish::default()
        }
    }

    #[test]
    fn limits_are_read_from_the_finish() {
        let s = QuotaSettings::default();
        assert_eq!(
            s.limit_of(&finish(429, json!({}))),
            Some(PauseReason::RateLimited)
        );
        assert_eq!(
            s.limit_of(&finish(403, json!({"errorCode": 110}))),
            Some(PauseReason::QuotaExhausted)
        );
        assert_eq!(
            s.limit_of(&finish(429, json!({"errorCode": "110"}))),
            Some(PauseReason::QuotaExhausted),
            "a quota code wins, also as a string"
        );
        assert_eq!(s.limit_of(&finish(403, json!({}))), None, "plain 403: auth");
        assert_eq!(s.limit_of(&finish(200, json!({}))), None);
        assert_eq!(s.limit_of(&finish(500, json!({"errorCode": 7}))), None);
        let custom = QuotaSettings {
            quota_codes: vec![40505],
            ..QuotaSettings::default()
        };
        assert_eq!(
            custom.limit_of(&finish(40505, serde_json::Value::Null)),
            Some(PauseReason::QuotaExhausted),
            "a configured status code"
        );
        assert_eq!(
            custom.limit_of(&finish(403, json!({"errorCode": 110}))),
            None
        );
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_a_success_resets_them() {
        let streak = PauseStreak::new(QuotaSettings {
            pause: Duration::from_secs(10),
            max_pause: Duration::from_secs(35),
            quota_codes: vec![],
        });
        let next = || {
            streak
                .lock()
                .next(streak.settings())
                .map(|(d, i)| (d.as_secs(), i))
        };
        assert_eq!(next(), Some((10, 1)));
        assert_eq!(next(), Some((20, 2)));
        assert_eq!(next(), Some((35, 3)), "capped");
        assert_eq!(next(), Some((35, 4)));
        streak.reset();
        assert_eq!(next(), Some((10, 1)), "a success starts over");
    }

    #[test]
    fn a_zero_pause_turns_pausing_off() {
        let streak = PauseStreak::new(QuotaSettings {
            pause: Duration::ZERO,
            ..QuotaSettings::default()
        });
        assert_eq!(streak.lock().next(streak.settings()), None);
    }

    #[test]
    fn the_wire_form_counts_down() {
        let now = Instant::now();
        let p = Paused {
            reason: PauseReason::QuotaExhausted,
            until: now + Duration::from_millis(1500),
            pauses: 2,
        };
        let w = p.to_wire(now);
        assert_eq!((w.retry_after_ms, w.pauses), (1500, 2));
        assert_eq!(p.to_wire(now + Duration::from_secs(5)).retry_after_ms, 0);
    }
}
