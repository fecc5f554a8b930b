//! Prometheus metrics under controller-runtime's names, so its usual dashboards work.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub const CONTROLLER: &str = "lingmainstance";

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconcile_total: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_time: HistogramVec,
    workqueue: Workqueue,
}

/// controller-runtime's workqueue metrics, as far as kube-runtime lets them be seen: its queue
/// deduplicates triggers internally, so `adds` counts the items handed to the reconciler and
/// there is no queue-duration or depth series (none is faked).
#[derive(Clone)]
struct Workqueue {
    adds: IntCounterVec,
    retries: IntCounterVec,
    work_duration: HistogramVec,
    active_workers: IntGaugeVec,
}

impl Workqueue {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let name = &["name"];
        let adds = IntCounterVec::new(
            Opts::new(
                "workqueue_adds_total",
                "Total number of adds handled by workqueue",
            ),
            name,
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "workqueue_retries_total",
                "Total number of retries handled by workqueue",
            ),
            name,
        )?;
        let work_duration = HistogramVec::new(
            HistogramOpts::new(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes.",
            )
            .buckets(prometheus::exponential_buckets(1e-3, 4.0, 9)?),
            name,
        )?;
        let active_workers = IntGaugeVec::new(
            Opts::new(
                "controller_runtime_active_workers",
                "Number of currently used workers per controller",
            ),
            &["controller"],
        )?;
        registry.register(Box::new(adds.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(work_duration.clone()))?;
        registry.register(Box::new(active_workers.clone()))?;
        Ok(Self {
            adds,
            retries,
            work_duration,
            active_workers,
        })
    }
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
        let workqueue = Workqueue::new(&registry)?;
        Ok(Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            workqueue,
        })
    }

    /// Starts timing one reconcile; the returned guard observes the duration when dropped.
    pub fn start_reconcile(&self) -> ReconcileTimer {
        self.workqueue.adds.with_label_values(&[CONTROLLER]).inc();
        let active = self
            .workqueue
            .active_workers
            .with_label_values(&[CONTROLLER]);
        active.inc();
        ReconcileTimer {
            start: Instant::now(),
            histograms: [
                self.reconcile_time.with_label_values(&[CONTROLLER]),
                self.workqueue
                    .work_duration
                    .with_label_values(&[CONTROLLER]),
            ],
            active,
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
        // A failed item is requeued with backoff: a workqueue retry.
        self.workqueue
            .retries
            .with_label_values(&[CONTROLLER])
            .inc();
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
    histograms: [prometheus::Histogram; 2],
    active: prometheus::IntGauge,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed().as_secs_f64();
        for histogram in &self.histograms {
            histogram.observe(elapsed);
        }
        self.active.dec();
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

    #[test]
    fn exposes_workqueue_metrics_and_active_workers() {
        let m = Metrics::new().expect("metrics");
        let timer = m.start_reconcile();
        assert!(
            m.render()
                .contains(r#"controller_runtime_active_workers{controller="lingmainstance"} 1"#)
        );
        drop(timer);
        m.failed();
        let text = m.render();
        for line in [
            r#"workqueue_adds_total{name="lingmainstance"} 1"#,
            r#"workqueue_retries_total{name="lingmainstance"} 1"#,
            r#"workqueue_work_duration_seconds_count{name="lingmainstance"} 1"#,
            r#"controller_runtime_active_workers{controller="lingmainstance"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
