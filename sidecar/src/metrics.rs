//! Prometheus metrics of the sidecar. Label values are fixed sets (states, outcomes, error
//! kinds), so the series count stays bounded.

use mux_protocol::{ConnectionState, LoginState, PauseReason};
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Serialises the copy of externally kept counts (session map) into counters.
    sync: parking_lot::Mutex<()>,
    pub connection_state: IntGaugeVec,
    pub reconnects: IntCounter,
    pub lingma_starts: IntCounter,
    pub login_state: IntGaugeVec,
    pub login_attempts: IntCounterVec,
    pub open_streams: IntGauge,
    pub mux_connections: IntGauge,
    pub chats: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub session_hits: IntCounter,
    pub session_misses: IntCounter,
    pub session_evictions: IntCounter,
    pub session_entries: IntGauge,
    pub session_invalidations: IntCounter,
    pub in_flight: IntGauge,
    pub queued: IntGauge,
    pub capacity: IntGauge,
    pub draining: IntGauge,
    pub ready: IntGauge,
    /// 1 for the reason the account is paused now (all 0 when it is not).
    pub account_paused: IntGaugeVec,
    pub account_pauses: IntCounterVec,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn gauge_vec(name: &str, help: &str, label: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::new(),
            sync: parking_lot::Mutex::new(()),
            connection_state: gauge_vec(
                "sidecar_connection_state",
                "1 for the current state of the connection to Lingma",
                "state",
            ),
            reconnects: counter(
                "sidecar_reconnects_total",
                "Connections to Lingma lost and re-established",
            ),
            lingma_starts: counter(
                "sidecar_lingma_starts_total",
                "Lingma processes started by the sidecar",
            ),
            login_state: gauge_vec(
                "sidecar_login_state",
                "1 for the current login state",
                "state",
            ),
            login_attempts: counter_vec(
                "sidecar_login_attempts_total",
                "Login attempts by result",
                "result",
            ),
            open_streams: gauge("sidecar_open_streams", "Chat streams with live bookkeeping"),
            mux_connections: gauge("sidecar_mux_connections", "Gateway WebSocket connections"),
            chats: counter_vec("sidecar_chats_total", "Chats by outcome", "outcome"),
            upstream_errors: counter_vec(
                "sidecar_upstream_errors_total",
                "Upstream errors by kind",
                "kind",
            ),
            session_hits: counter("sidecar_session_cache_hits_total", "Session map hits"),
            session_misses: counter("sidecar_session_cache_misses_total", "Session map misses"),
            session_evictions: counter(
                "sidecar_session_cache_evictions_total",
                "Session map entries evicted (LRU or TTL)",
            ),
            session_entries: gauge("sidecar_session_cache_entries", "Session map entries"),
            session_invalidations: counter(
                "sidecar_session_invalidations_total",
                "Reused sessions dropped after an error (retried fresh)",
            ),
            in_flight: gauge("sidecar_in_flight", "Chats running upstream"),
            queued: gauge("sidecar_queued", "Chats waiting for an upstream slot"),
            capacity: gauge("sidecar_capacity", "Chats Lingma runs at once"),
            draining: gauge("sidecar_draining", "1 while draining"),
            ready: gauge(
                "sidecar_ready",
                "1 when connected, logged in, not draining and not paused (takes chats)",
            ),
            account_paused: gauge_vec(
                "sidecar_account_paused",
                "1 while the account is paused for this reason (rate limited, out of quota)",
                "reason",
            ),
            account_pauses: counter_vec(
                "sidecar_account_pauses_total",
                "Pauses of the account by reason",
                "reason",
            ),
        };
        m.register_all();
        m.set_paused(None);
        for reason in PauseReason::ALL {
            m.account_pauses.with_label_values(&[reason.as_str()]);
        }
        m.set_connection_state(ConnectionState::Stopped);
        m.set_login_state(&LoginState::Unknown);
        m
    }

    fn register_all(&self) {
        let m = self;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.connection_state.clone()),
            Box::new(m.reconnects.clone()),
            Box::new(m.lingma_starts.clone()),
            Box::new(m.login_state.clone()),
            Box::new(m.login_attempts.clone()),
            Box::new(m.open_streams.clone()),
            Box::new(m.mux_connections.clone()),
            Box::new(m.chats.clone()),
            Box::new(m.upstream_errors.clone()),
            Box::new(m.session_hits.clone()),
            Box::new(m.session_misses.clone()),
            Box::new(m.session_evictions.clone()),
            Box::new(m.session_entries.clone()),
            Box::new(m.session_invalidations.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.queued.clone()),
            Box::new(m.capacity.clone()),
            Box::new(m.draining.clone()),
            Box::new(m.ready.clone()),
            Box::new(m.account_paused.clone()),
            Box::new(m.account_pauses.clone()),
        ];
        for c in collectors {
            // Names are static and distinct; a failure here is a programming error.
            if let Err(e) = m.registry.register(c) {
                unreachable!("metric registration: {e}");
            }
        }
    }

    pub fn set_connection_state(&self, state: ConnectionState) {
        for s in ConnectionState::ALL {
            let label = s.as_str();
            self.connection_state
                .with_label_values(&[label])
                .set(i64::from(s == state));
        }
    }

    pub fn set_login_state(&self, state: &LoginState) {
        let current = state.as_str();
        for label in LoginState::LABELS {
            self.login_state
                .with_label_values(&[label])
                .set(i64::from(label == current));
        }
    }

    /// The account's pause reason, one-hot (`None`: all 0).
    pub fn set_paused(&self, reason: Option<PauseReason>) {
        for r in PauseReason::ALL {
            self.account_paused
                .with_label_values(&[r.as_str()])
                .set(i64::from(Some(r) == reason));
        }
    }

    /// Copy the session map's own counts (kept as atomics on its hot path) into the
    /// Prometheus counters; called before rendering.
    pub fn sync_sessions(&self, stats: crate::sessions::SessionStats) {
        let _one_at_a_time = self.sync.lock();
        for (counter, value) in [
            (&self.session_hits, stats.hits),
            (&self.session_misses, stats.misses),
            (&self.session_evictions, stats.evictions),
        ] {
            let current = counter.get();
            if value > current {
                counter.inc_by(value - current);
            }
        }
        self.session_entries
            .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_one_hot_and_rendered() {
        let m = Metrics::new();
        m.set_connection_state(ConnectionState::Ready);
        m.set_login_state(&LoginState::LoggedIn);
        m.open_streams.set(3);
        let text = m.render();
        assert!(
            text.contains("sidecar_connection_state{state=\"ready\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sidecar_connection_state{state=\"stopped\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sidecar_login_state{state=\"logged_in\"} 1"),
            "{text}"
        );
        assert!(text.contains("sidecar_open_streams 3"), "{text}");
    }

    #[test]
    fn the_pause_reason_is_one_hot() {
        let m = Metrics::new();
        let text = m.render();
        assert!(
            text.contains("sidecar_account_paused{reason=\"quota_exhausted\"} 0"),
            "{text}"
        );
        m.set_paused(Some(PauseReason::RateLimited));
        let text = m.render();
        assert!(
            text.contains("sidecar_account_paused{reason=\"rate_limited\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sidecar_account_paused{reason=\"quota_exhausted\"} 0"),
            "{text}"
        );
    }
}
