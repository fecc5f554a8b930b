//! Prometheus metrics (names of design.md). Handles are created once and shared; the hot
//! path only touches atomics.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub in_flight: IntGauge,
    pub queued: IntGauge,
    pub accepted: IntCounter,
    pub rejected: IntCounterVec,
    pub max_in_flight: IntGauge,
    pub pool_in_flight: IntGaugeVec,
    pub pool_ready: IntGaugeVec,
    pub pool_connected: IntGaugeVec,
    pub pool_ejections: IntCounterVec,
    pub request_duration: HistogramVec,
    /// `request_duration{stream="true"|"false"}`, resolved once.
    pub duration_stream: Histogram,
    pub duration_plain: Histogram,
    pub time_to_first_token: Histogram,
    pub overhead: Histogram,
    pub queue_wait: Histogram,
    pub sessions: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub retries: IntCounter,
    pub slot_races: IntCounter,
    pub response_store_errors: IntCounterVec,
    pub tool_calls: IntCounter,
    pub tool_parse_failures: IntCounterVec,
    pub tool_reasks: IntCounter,
    /// Per virtual key (label = the key's name, never the key).
    pub key_requests: IntCounterVec,
    pub key_in_flight: IntGaugeVec,
    pub key_queue_wait: HistogramVec,
    pub key_rate_limited: IntCounterVec,
    /// 1 while a sidecar's account is paused for `reason` (rate limited, out of quota).
    pub pool_paused: IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
// Gateway overhead is microseconds; the benchmark goal is p50 <= 30us, p99 <= 500us.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_02, 0.000_03, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
    0.005, 0.01, 0.05,
];

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Chat request duration, arrival to last byte",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["stream"],
        )?;
        let m = Self {
            duration_stream: request_duration.with_label_values(&["true"]),
            duration_plain: request_duration.with_label_values(&["false"]),
            request_duration,
            in_flight: IntGauge::new("gateway_in_flight", "Chats in flight through this gateway")?,
            queued: IntGauge::new("gateway_queued", "Requests waiting for a slot")?,
            accepted: IntCounter::new("gateway_accepted_total", "Chat requests admitted")?,
            rejected: IntCounterVec::new(
                Opts::new("gateway_rejected_total", "Chat requests refused, by reason"),
                &["reason"],
            )?,
            max_in_flight: IntGauge::new(
                "gateway_max_in_flight",
                "Configured global in-flight limit (0 = unlimited)",
            )?,
            pool_in_flight: IntGaugeVec::new(
                Opts::new("gateway_pool_instance_in_flight", "Chats this gateway has in flight on a sidecar"),
                &["name"],
            )?,
            pool_ready: IntGaugeVec::new(
                Opts::new("gateway_pool_instance_ready", "1 when a sidecar takes chats (connected, ready, logged in, not ejected)"),
                &["name"],
            )?,
            pool_connected: IntGaugeVec::new(
                Opts::new("gateway_pool_instance_connected", "1 while the mux connection to a sidecar is up"),
                &["name"],
            )?,
            pool_ejections: IntCounterVec::new(
                Opts::new("gateway_pool_ejections_total", "Passive ejections of a sidecar after consecutive failures"),
                &["name"],
            )?,
            time_to_first_token: Histogram::with_opts(
                HistogramOpts::new("gateway_time_to_first_token_seconds", "Arrival to the first answer delta")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            overhead: Histogram::with_opts(
                HistogramOpts::new(
                    "gateway_overhead_seconds",
                    "Time spent in the gateway itself: total minus waiting on the sidecar and in the queue",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
            )?,
            queue_wait: Histogram::with_opts(
                HistogramOpts::new("gateway_queue_wait_seconds", "Time admitted requests waited for a slot")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            sessions: IntCounterVec::new(
                Opts::new("gateway_session_total", "Upstream session outcome of follow-up turns (reused = hit, new = miss, migrated = pin not usable)"),
                &["outcome"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new("gateway_upstream_errors_total", "Errors reported by sidecars or the mux connection, by kind"),
                &["kind"],
            )?,
            retries: IntCounter::new("gateway_retries_total", "Requests retried on another sidecar after a failure before output")?,
            response_store_errors: IntCounterVec::new(
                Opts::new("gateway_response_store_errors_total", "Responses API store operations that failed (op: get = 503 to the client, insert = a response that cannot be continued by id)"),
                &["op"],
            )?,
            slot_races: IntCounter::new("gateway_slot_races_total", "Chats a sidecar refused, before anything ran, because another gateway replica's chat took its last free slot first; they queued again here")?,
            tool_calls: IntCounter::new("gateway_tool_calls_total", "Emulated tool calls emitted to clients")?,
            tool_parse_failures: IntCounterVec::new(
                Opts::new("gateway_tool_parse_failures_total", "Answers that broke the tool contract, by failure kind"),
                &["kind"],
            )?,
            tool_reasks: IntCounter::new("gateway_tool_reasks_total", "Corrective re-asks after an answer broke the tool contract")?,
            key_requests: IntCounterVec::new(
                Opts::new("gateway_key_requests_total", "Chat requests by key name and outcome (admitted, rate_limited, forbidden, queue_full, queue_timeout, unavailable)"),
                &["key", "outcome"],
            )?,
            key_in_flight: IntGaugeVec::new(
                Opts::new("gateway_key_in_flight", "Chats of a key holding a slot on this gateway"),
                &["key"],
            )?,
            key_queue_wait: HistogramVec::new(
                HistogramOpts::new("gateway_key_queue_wait_seconds", "Time a key's admitted requests waited for a slot")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["key"],
            )?,
            key_rate_limited: IntCounterVec::new(
                Opts::new("gateway_key_rate_limited_total", "429 answers by key name and reason (rpm, concurrency, queue_full, queue_timeout)"),
                &["key", "reason"],
            )?,
            pool_paused: IntGaugeVec::new(
                Opts::new("gateway_pool_instance_paused", "1 while a sidecar's account is paused (out of rotation), by reason"),
                &["name", "reason"],
            )?,
            registry,
        };
        m.register_all()?;
        Ok(m)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.in_flight.clone()))?;
        r.register(Box::new(self.queued.clone()))?;
        r.register(Box::new(self.accepted.clone()))?;
        r.register(Box::new(self.rejected.clone()))?;
        r.register(Box::new(self.max_in_flight.clone()))?;
        r.register(Box::new(self.pool_in_flight.clone()))?;
        r.register(Box::new(self.pool_ready.clone()))?;
        r.register(Box::new(self.pool_connected.clone()))?;
        r.register(Box::new(self.pool_ejections.clone()))?;
        r.register(Box::new(self.request_duration.clone()))?;
        r.register(Box::new(self.time_to_first_token.clone()))?;
        r.register(Box::new(self.overhead.clone()))?;
        r.register(Box::new(self.queue_wait.clone()))?;
        r.register(Box::new(self.sessions.clone()))?;
        r.register(Box::new(self.upstream_errors.clone()))?;
        r.register(Box::new(self.retries.clone()))?;
        r.register(Box::new(self.slot_races.clone()))?;
        r.register(Box::new(self.response_store_errors.clone()))?;
        r.register(Box::new(self.tool_calls.clone()))?;
        r.register(Box::new(self.tool_parse_failures.clone()))?;
        r.register(Box::new(self.tool_reasks.clone()))?;
        r.register(Box::new(self.key_requests.clone()))?;
        r.register(Box::new(self.key_in_flight.clone()))?;
        r.register(Box::new(self.key_queue_wait.clone()))?;
        r.register(Box::new(self.key_rate_limited.clone()))?;
        r.register(Box::new(self.pool_paused.clone()))?;
        Ok(())
    }

    /// Text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            out.clear();
        }
        out
    }

    /// Count one request of key `key` ending in `outcome`.
    pub fn key_outcome(&self, key: &str, outcome: &str) {
        self.key_requests.with_label_values(&[key, outcome]).inc();
    }

    /// Count one 429 of key `key` for `reason` (the queue's own refusals keep their
    /// name as the outcome; the key's limits are `rate_limited`).
    pub fn key_limited(&self, key: &str, reason: &str) {
        let outcome = match reason {
            "queue_full" | "queue_timeout" => reason,
            _ => "rate_limited",
        };
        self.key_outcome(key, outcome);
        self.key_rate_limited
            .with_label_values(&[key, reason])
            .inc();
    }

    /// Forget the label values of a sidecar that left the pool.
    pub fn remove_sidecar(&self, name: &str) {
        let _ = self.pool_in_flight.remove_label_values(&[name]);
        let _ = self.pool_ready.remove_label_values(&[name]);
        let _ = self.pool_connected.remove_label_values(&[name]);
        let _ = self.pool_ejections.remove_label_values(&[name]);
        for reason in mux_protocol::PauseReason::ALL {
            let _ = self
                .pool_paused
                .remove_label_values(&[name, reason.as_str()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_design_names() {
        let m = Metrics::new().expect("metrics");
        m.pool_in_flight.with_label_values(&["a"]).set(1);
        m.rejected.with_label_values(&["queue_timeout"]).inc();
        let text = String::from_utf8(m.render()).expect("utf8");
        for name in [
            "gateway_in_flight",
            "gateway_queued",
            "gateway_accepted_total",
            "gateway_rejected_total{reason=\"queue_timeout\"}",
            "gateway_max_in_flight",
            "gateway_pool_instance_in_flight{name=\"a\"}",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        m.remove_sidecar("a");
        assert!(
            !String::from_utf8(m.render())
                .expect("utf8")
                .contains("name=\"a\"")
        );
    }
}
