//! One module per group of figures. Each starts the stack it needs, measures, adds figures
//! to the report and stops its processes (dropping them kills them).

pub mod fairness;
pub mod idle_streams;
pub mod latency;
pub mod low_load;
pub mod pool;
pub mod prefill;
pub mod session_reuse;

use crate::Settings;
use bench::load::LoadStats;
use bench::report::{Goal, Report};
use test_support::Binaries;

pub struct Ctx {
    pub bins: Binaries,
    pub settings: Settings,
    pub report: Report,
}

/// Percentile of a histogram in microseconds, as f64.
pub fn pct(h: &hdrhistogram::Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64)
}

/// Percentile of a histogram in microseconds, in milliseconds.
pub fn pct_ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> Option<f64> {
    pct(h, q).map(|us| us / 1000.0)
}

/// Add `{name} p50`, `p90` and `p99` of `h` (microseconds) in milliseconds, no goals.
pub fn add_percentiles_ms(
    report: &mut Report,
    scenario: &str,
    name: &str,
    h: &hdrhistogram::Histogram<u64>,
) {
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        report.info(scenario, &format!("{name} {label}"), pct_ms(h, q), "ms");
    }
}

/// Add p50/p90/p99 of `h` (microseconds) as figures; goals per percentile when given.
pub fn add_percentiles(
    report: &mut Report,
    scenario: &str,
    name: &str,
    h: &hdrhistogram::Histogram<u64>,
    goals: [Option<Goal>; 3],
) {
    for ((label, q), goal) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)]
        .into_iter()
        .zip(goals)
    {
        report.add(
            scenario,
            &format!("{name} {label}"),
            pct(h, q),
            "us",
            goal,
            "",
        );
    }
}

/// Throughput, counts and failures of one run.
pub fn add_counts(report: &mut Report, scenario: &str, name: &str, s: &LoadStats) {
    report.info(
        scenario,
        &format!("{name} ok/s"),
        Some(s.throughput()),
        "req/s",
    );
    let failures = if s.failures.is_empty() {
        String::new()
    } else {
        format!("{:?}", s.failures)
    };
    report.add(
        scenario,
        &format!("{name} failed"),
        Some(s.failed() as f64),
        "req",
        Some(Goal::AtMost(0.0)),
        failures,
    );
}

/// `n` one-chat simulators started with `sim`, each behind its own one-chat sidecar named
/// `{prefix}-{i}`, all sidecars sharing one token: the pool the pool-level scenarios run on.
pub async fn one_chat_pool(
    ctx: &Ctx,
    n: usize,
    prefix: &str,
    sim: bench::stack::SimOptions,
) -> anyhow::Result<(Vec<bench::stack::Sim>, Vec<bench::stack::Sidecar>)> {
    use bench::stack::{Sidecar, SidecarOptions, Sim, SimOptions};
    let mut sims = Vec::new();
    let mut sidecars: Vec<Sidecar> = Vec::new();
    for i in 0..n {
        let started = Sim::start(
            &ctx.bins.sim,
            SimOptions {
                max_concurrent_chats: 1,
                ..sim.clone()
            },
        )
        .await?;
        let token = sidecars
            .first()
            .map(|s| s.options.token.clone())
            .unwrap_or_else(|| SidecarOptions::default().token);
        let sidecar = Sidecar::start(
            &ctx.bins.sidecar,
            &started,
            SidecarOptions {
                name: format!("{prefix}-{i}"),
                token,
                max_concurrent_chats: 1,
                ..SidecarOptions::default()
            },
        )
        .await?;
        sims.push(started);
        sidecars.push(sidecar);
    }
    Ok((sims, sidecars))
}
