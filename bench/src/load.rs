//! Load generators. Open loop sends at a fixed rate whatever the answers do and measures
//! latency from each request's *intended* send time, so a slow system cannot hide its
//! queueing by slowing the generator down (coordinated omission). Closed loop runs N
//! connections back to back for maximum throughput.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What one request ended with.
#[derive(Debug, Clone)]
pub enum Outcome {
    Ok {
        /// The gateway's own overhead, when it reported one.
        overhead_us: Option<u64>,
    },
    Failed(String),
}

/// Everything measured over one run.
#[derive(Debug, Clone)]
pub struct LoadStats {
    /// Intended send time -> completion (open loop); send -> completion (closed loop).
    pub latency_us: Histogram<u64>,
    /// Actual send -> completion.
    pub service_us: Histogram<u64>,
    /// The gateway's reported overhead.
    pub overhead_us: Histogram<u64>,
    pub ok: u64,
    pub failures: BTreeMap<String, u64>,
    /// Requests still unanswered at the end of the drain wait (counted as failures too).
    pub elapsed: Duration,
    /// How late, at worst, the generator sent a request (its own scheduling lag).
    pub max_send_lag_us: u64,
}

pub fn histogram() -> Histogram<u64> {
    // 1 us .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

impl Default for LoadStats {
    fn default() -> Self {
        Self {
            latency_us: histogram(),
            service_us: histogram(),
            overhead_us: histogram(),
            ok: 0,
            failures: BTreeMap::new(),
            elapsed: Duration::ZERO,
            max_send_lag_us: 0,
        }
    }
}

impl LoadStats {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    fn record(&mut self, latency: Duration, service: Duration, outcome: Outcome) {
        match outcome {
            Outcome::Ok { overhead_us } => {
                self.ok += 1;
                let _ = self.latency_us.record(micros(latency));
                let _ = self.service_us.record(micros(service));
                if let Some(o) = overhead_us {
                    let _ = self.overhead_us.record(o.max(1));
                }
            }
            Outcome::Failed(reason) => *self.failures.entry(reason).or_default() += 1,
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Send `rate` requests per second for `duration`; each gets at most `timeout`.
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    timeout: Duration,
    make: F,
) -> LoadStats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let stats = Arc::new(Mutex::new(LoadStats::default()));
    let make = Arc::new(make);
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut max_lag = Duration::ZERO;
    for i in 0..total {
        let intended = start + period.mul_f64(i as f64);
        let now = Instant::now();
        if now < intended {
            tokio::time::sleep_until(intended).await;
        }
        let sent = Instant::now();
        max_lag = max_lag.max(sent - intended);
        let stats = stats.clone();
        let make = make.clone();
        tasks.spawn(async move {
            let outcome = match tokio::time::timeout(timeout, make(i)).await {
                Ok(o) => o,
                Err(_) => Outcome::Failed("timeout".to_owned()),
            };
            let done = Instant::now();
            stats.lock().unwrap_or_else(|e| e.into_inner()).record(
                done - intended,
                done - sent,
                outcome,
            );
        });
        // Reap finished tasks so the set does not grow with the whole run.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut out = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    out.elapsed = start.elapsed();
    out.max_send_lag_us = micros(max_lag);
    out
}

/// `connections` loops sending back to back for `duration`.
pub async fn closed_loop<F, Fut>(
    connections: usize,
    duration: Duration,
    timeout: Duration,
    make: F,
) -> LoadStats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let stats = Arc::new(Mutex::new(LoadStats::default()));
    let make = Arc::new(make);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let stats = stats.clone();
        let make = make.clone();
        tasks.spawn(async move {
            let mut i = c as u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let outcome = match tokio::time::timeout(timeout, make(i)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::Failed("timeout".to_owned()),
                };
                let took = sent.elapsed();
                stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(took, took, outcome);
                i += connections as u64;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut out = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    out.elapsed = start.elapsed();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that can do 50 requests/s, offered 100/s for 1 s: the generator must not slow
    /// down (all 100 are sent on time), and the queueing must show in the latency.
    #[tokio::test]
    async fn open_loop_does_not_hide_queueing() {
        let server = Arc::new(tokio::sync::Mutex::new(()));
        let stats = open_loop(
            100.0,
            Duration::from_secs(1),
            Duration::from_secs(10),
            move |_| {
                let server = server.clone();
                async move {
                    let _busy = server.lock().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Outcome::Ok { overhead_us: None }
                }
            },
        )
        .await;
        assert_eq!(stats.ok, 100);
        assert!(
            stats.max_send_lag_us < 100_000,
            "generator fell behind: {} us",
            stats.max_send_lag_us
        );
        let p99 = stats.latency_us.value_at_quantile(0.99);
        assert!(p99 >= 900_000, "queueing hidden: p99 {p99} us");
        assert!(
            stats.elapsed >= Duration::from_secs(2),
            "100 x 20 ms served one at a time"
        );
    }

    #[tokio::test]
    async fn failures_and_timeouts_are_counted() {
        let stats = closed_loop(
            2,
            Duration::from_millis(200),
            Duration::from_millis(50),
            |i| async move {
                if i % 2 == 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Outcome::Failed("boom".to_owned())
            },
        )
        .await;
        assert!(stats.failures.get("timeout").copied().unwrap_or(0) > 0);
        assert!(stats.failures.get("boom").copied().unwrap_or(0) > 0);
        assert_eq!(stats.ok, 0);
    }
}
