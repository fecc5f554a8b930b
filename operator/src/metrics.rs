//! Prometheus metrics under controller-runtime's names, so its usual dashboards work.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub const CONTROLLER: &str = "lingmainstance";

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconcile_total: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_time: HistogramVec,
}

#[derive(Debug, thiserror::Error)]
#[error("registering metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let reconcile_total = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_total",
                "Total number of reconciliations per controller",
            ),
            &["controller", "result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "controller_runtime_reconcile_errors_total",
                "Total number of reconciliation errors per controller",
            ),
            &["controller"],
        )?;
        let reconcile_time = HistogramVec::new(
            HistogramOpts::new(
                "controller_runtime_reconcile_time_seconds",
                "Length of time per reconciliation per controller",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["controller"],
        )?;
        registry.register(Box::new(reconcile_total.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_time.clone()))?;
        Ok(Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
        })
    }

    /// Starts timing one reconcile; the returned guard observes the duration when dropped.
    pub fn start_reconcile(&self) -> ReconcileTimer {
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_time.with_label_values(&[CONTROLLER]),
        }
    }

    /// `result` is controller-runtime's: success | requeue_after | error.
    pub fn reconciled(&self, result: &str) {
        self.reconcile_total
            .with_label_values(&[CONTROLLER, result])
            .inc();
    }

    pub fn failed(&self) {
        self.reconcile_total
            .with_label_values(&[CONTROLLER, "error"])
            .inc();
        self.reconcile_errors.with_label_values(&[CONTROLLER]).inc();
    }

    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

pub struct ReconcileTimer {
    start: Instant,
    histogram: prometheus::Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_controller_runtime_names() {
        let m = Metrics::new().expect("metrics");
        {
            let _t = m.start_reconcile();
            m.reconciled("requeue_after");
        }
        m.failed();
        let text = m.render();
        assert!(text.contains(
            r#"controller_runtime_reconcile_total{controller="lingmainstance",result="requeue_after"} 1"#
        ));
        assert!(text.contains(
            r#"controller_runtime_reconcile_total{controller="lingmainstance",result="error"} 1"#
        ));
        assert!(text.contains(
            r#"controller_runtime_reconcile_errors_total{controller="lingmainstance"} 1"#
        ));
        assert!(text.contains(
            r#"controller_runtime_reconcile_time_seconds_count{controller="lingmainstance"} 1"#
        ));
    }
}
