//! What one user at low load feels (issue 17): ONE connection, requests back to back
//! (non-streaming and streaming) and paced at a few per second, against a zero-delay
//! simulator. The figure is the client-side latency through the gateway minus the same
//! over the sidecar's mux protocol directly (p50/p99/max), so a 40 ms stall (Nagle's
//! algorithm meeting delayed ACKs) shows even though the gateway's own overhead is micro-
//! seconds. Then the streaming cadence: with a 30 ms chunk delay at the simulator, the gaps
//! between the deltas the client sees.

use super::Ctx;
use bench::mux_client::{MuxClient, simple_request};
use bench::openai::{self, chat_body};
use bench::report::Goal;
use bench::stack::{GatewayOptions, SidecarOptions, SimOptions, SingleStack};
use std::time::Duration;
use test_support::http1::KeepAliveConnection;
use tokio::time::Instant;

const ADDED_P99_GOAL_MS: f64 = 2.0;
/// No request may take longer than this through the gateway (zero-delay simulator).
const SLOW_MS: f64 = 10.0;
const CADENCE_CHUNK_DELAY_MS: u64 = 30;
const CADENCE_CHUNKS: u32 = 20;
const CADENCE_STREAMS: usize = 10;
const CADENCE_TOLERANCE_MS: f64 = 3.0;
const WARM_UP: usize = 10;

/// The three stack processes and a client of each path, one connection per path.
struct Paths {
    _stack: SingleStack,
    mux: MuxClient,
    conn: KeepAliveConnection,
    /// One keep-alive connection too (requests are sequential), for SSE.
    http: reqwest::Client,
    url: String,
}

#[derive(Clone, Copy)]
enum Kind {
    NonStreaming,
    Streaming,
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let mut paths = Paths::start(ctx, SimOptions::default()).await?;
    let n = ctx.settings.low_load_requests;
    let rate = ctx.settings.low_load_rate;
    for kind in [Kind::NonStreaming, Kind::Streaming] {
        paths.series(kind, WARM_UP, None).await?;
    }
    let series = [
        ("back to back, non-streaming", Kind::NonStreaming, n, None),
        ("back to back, streaming", Kind::Streaming, n, None),
        (
            "paced, non-streaming",
            Kind::NonStreaming,
            (rate * 5.0).ceil() as usize,
            Some(Duration::from_secs_f64(1.0 / rate.max(0.1))),
        ),
    ];
    for (name, kind, count, pace) in series {
        let scenario = format!("low load: {name}");
        let (direct, via) = paths.series(kind, count, pace).await?;
        report_added(ctx, &scenario, direct, via);
    }
    drop(paths);
    cadence(ctx).await
}

impl Paths {
    async fn start(ctx: &Ctx, sim: SimOptions) -> anyhow::Result<Self> {
        let stack = SingleStack::start(
            &ctx.bins,
            sim,
            SidecarOptions {
                max_concurrent_chats: 4,
                ..SidecarOptions::default()
            },
            GatewayOptions::default(),
        )
        .await?;
        let (sidecar, gateway) = (&stack.sidecar, &stack.gateway);
        let mux = MuxClient::connect(&sidecar.ws_url(), &sidecar.options.token).await?;
        let conn = KeepAliveConnection::connect(gateway.port).await?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()?;
        let url = gateway.chat_url();
        Ok(Self {
            _stack: stack,
            mux,
            conn,
            http,
            url,
        })
    }

    /// `count` requests on the direct path, then on the gateway path, each sent when the
    /// previous one ended (or at the next tick of `pace`); their latencies.
    async fn series(
        &mut self,
        kind: Kind,
        count: usize,
        pace: Option<Duration>,
    ) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        let mut direct = Vec::with_capacity(count);
        let mut via = Vec::with_capacity(count);
        for gateway in [false, true] {
            let start = Instant::now();
            for i in 0..count {
                if let Some(p) = pace {
                    tokio::time::sleep_until(start + p * i as u32).await;
                }
                let text = format!("low-load question {i}: what does this do?");
                let t = Instant::now();
                if gateway {
                    self.via_gateway(kind, &text).await?;
                    via.push(t.elapsed());
                } else {
                    self.mux
                        .chat_to_end(simple_request(&format!("low-load-{i}"), &text))
                        .await?;
                    direct.push(t.elapsed());
                }
            }
        }
        Ok((direct, via))
    }

    async fn via_gateway(&mut self, kind: Kind, text: &str) -> anyhow::Result<()> {
        match kind {
            Kind::NonStreaming => {
                let body = serde_json::to_vec(&chat_body(&[("user", text)], false, None))?;
                let resp = self
                    .conn
                    .post_json("/v1/chat/completions", None, &body)
                    .await?;
                anyhow::ensure!(resp.status == 200, "gateway answered {}", resp.status);
            }
            Kind::Streaming => {
                let body = chat_body(&[("user", text)], true, None);
                let out = openai::post_stream(
                    &self.http,
                    &self.url,
                    None,
                    &body,
                    std::time::Instant::now(),
                )
                .await?;
                anyhow::ensure!(
                    out.status == 200 && out.done,
                    "stream failed: {:?}",
                    out.error
                );
            }
        }
        Ok(())
    }
}

/// Nearest-rank percentile in milliseconds of sorted durations.
fn pct_ms(sorted: &[Duration], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let i = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
    Some(sorted[i.min(last)].as_secs_f64() * 1e3)
}

fn report_added(ctx: &mut Ctx, scenario: &str, mut direct: Vec<Duration>, mut via: Vec<Duration>) {
    direct.sort();
    via.sort();
    let r = &mut ctx.report;
    r.info(scenario, "requests per path", Some(via.len() as f64), "req");
    for (label, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let (d, v) = (pct_ms(&direct, q), pct_ms(&via, q));
        r.info(scenario, &format!("direct latency {label}"), d, "ms");
        r.info(scenario, &format!("gateway latency {label}"), v, "ms");
        let goal = (label == "p99").then_some(Goal::AtMost(ADDED_P99_GOAL_MS));
        let added = d.zip(v).map(|(d, v)| v - d);
        r.add(
            scenario,
            &format!("added latency {label}"),
            added,
            "ms",
            goal,
            "gateway - direct, client side",
        );
    }
    let over = |latencies: &[Duration]| {
        let n = latencies.iter().filter(|d| d.as_secs_f64() * 1e3 > SLOW_MS);
        Some(n.count() as f64)
    };
    r.info(
        scenario,
        &format!("direct requests over {SLOW_MS} ms"),
        over(&direct),
        "req",
    );
    r.add(
        scenario,
        &format!("gateway requests over {SLOW_MS} ms"),
        over(&via),
        "req",
        Some(Goal::AtMost(0.0)),
        "zero-delay simulator",
    );
}

/// Gaps between deltas with a 30 ms chunk delay at the simulator, seen over the mux
/// protocol directly and through the gateway (SSE).
async fn cadence(ctx: &mut Ctx) -> anyhow::Result<()> {
    let sim = SimOptions {
        chunks: CADENCE_CHUNKS,
        chunk_delay_ms: CADENCE_CHUNK_DELAY_MS,
        ..SimOptions::default()
    };
    let paths = Paths::start(ctx, sim).await?;
    let mut direct = Vec::new();
    let mut via = Vec::new();
    for i in 0..CADENCE_STREAMS {
        let text = format!("cadence {i}");
        let request = simple_request(&format!("cadence-{i}"), &text);
        direct.extend(paths.mux.chat_delta_times(request).await?.gaps);
        let body = chat_body(&[("user", &text)], true, None);
        let out = openai::post_stream(
            &paths.http,
            &paths.url,
            None,
            &body,
            std::time::Instant::now(),
        )
        .await?;
        anyhow::ensure!(out.done, "stream failed: {:?}", out.error);
        via.extend(out.chunk_gaps);
    }
    let scenario = format!("streaming cadence ({CADENCE_CHUNK_DELAY_MS} ms chunk delay)");
    let r = &mut ctx.report;
    for (path, gaps) in [("direct", &mut direct), ("gateway", &mut via)] {
        gaps.sort();
        for (label, q) in [("p1", 0.01), ("p50", 0.5), ("p99", 0.99)] {
            r.info(
                &scenario,
                &format!("{path} gap {label}"),
                pct_ms(gaps, q),
                "ms",
            );
        }
    }
    let target = Duration::from_millis(CADENCE_CHUNK_DELAY_MS);
    let mut off: Vec<Duration> = via.iter().map(|g| g.abs_diff(target)).collect();
    off.sort();
    r.add(
        &scenario,
        "gateway gap |gap - 30 ms| p99",
        pct_ms(&off, 0.99),
        "ms",
        Some(Goal::AtMost(CADENCE_TOLERANCE_MS)),
        format!("{} gaps", off.len()),
    );
    Ok(())
}
