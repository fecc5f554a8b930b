//! Added latency of the gateway (the same non-streaming chat sent directly over the sidecar's
//! mux protocol vs. through the gateway), the gateway's self-reported overhead, streaming
//! time to first token and inter-chunk gaps, and idle memory. One zero-delay simulator, one
//! sidecar, one gateway.

use super::{Ctx, add_counts, add_percentiles, pct};
use bench::load::{self, LoadStats, Outcome};
use bench::mux_client::{MuxClient, simple_request};
use bench::openai::{self, chat_body};
use bench::prom::{bucket_delta, histogram_quantile};
use bench::report::Goal;
use bench::stack::{
    Gateway, GatewayOptions, Sidecar, SidecarOptions, SimOptions, SingleStack, proc_status,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);
const OVERHEAD_P50_GOAL_US: f64 = 30.0;
const OVERHEAD_P99_GOAL_US: f64 = 500.0;
const IDLE_RSS_GOAL_MIB: f64 = 20.0;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let SingleStack {
        sim: _sim,
        sidecar,
        gateway,
    } = SingleStack::start(
        &ctx.bins,
        SimOptions::default(),
        SidecarOptions {
            max_concurrent_chats: 100_000,
            ..SidecarOptions::default()
        },
        GatewayOptions {
            max_in_flight: 0,
            ..GatewayOptions::default()
        },
    )
    .await?;
    idle_memory(ctx, &sidecar, &gateway);

    let mux = Arc::new(MuxClient::connect(&sidecar.ws_url(), &sidecar.options.token).await?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let url = Arc::new(gateway.chat_url());

    // Warm both paths (connections, allocator, caches) before measuring.
    let _ = direct_open(&mux, 500.0, Duration::from_millis(600)).await;
    let _ = gateway_open(&http, &url, 500.0, Duration::from_millis(600)).await;

    let secs = ctx.settings.secs_per_rate;
    for rate in ctx.settings.rates.clone() {
        let scenario = format!("latency @{rate} rps");
        let direct = direct_open(&mux, rate, secs).await;
        let before = gateway.metrics().await.ok();
        let via = gateway_open(&http, &url, rate, secs).await;
        let after = gateway.metrics().await.ok();
        let at_goal_rate = (rate - 5000.0).abs() < 1.0;
        report_pair(ctx, &scenario, &direct, &via, at_goal_rate);
        if let (Some(b), Some(a)) = (before, after) {
            let delta = bucket_delta(
                &a.buckets("gateway_overhead_seconds"),
                &b.buckets("gateway_overhead_seconds"),
            );
            for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
                ctx.report.info(
                    &scenario,
                    &format!("overhead (Prometheus histogram) {label}"),
                    histogram_quantile(&delta, q).map(|s| s * 1e6),
                    "us",
                );
            }
        }
    }

    let conns = ctx.settings.closed_connections;
    let scenario = format!("max throughput ({conns} conns, closed loop)");
    let direct = {
        let mux = mux.clone();
        load::closed_loop(conns, secs, TIMEOUT, move |i| direct_once(mux.clone(), i)).await
    };
    let via = {
        let (http, url) = (http.clone(), url.clone());
        load::closed_loop(conns, secs, TIMEOUT, move |i| {
            gateway_once(http.clone(), url.clone(), i)
        })
        .await
    };
    report_pair(ctx, &scenario, &direct, &via, false);

    streaming(ctx, &mux, &http, &url).await;

    for (name, pid) in [("gateway", gateway.pid()), ("sidecar", sidecar.pid())] {
        let rss = pid
            .and_then(proc_status)
            .map(|s| s.rss_bytes as f64 / 1048576.0);
        ctx.report.info(
            "memory",
            &format!("{name} RSS after the load runs"),
            rss,
            "MiB",
        );
    }
    Ok(())
}

fn idle_memory(ctx: &mut Ctx, sidecar: &Sidecar, gateway: &Gateway) {
    for (name, pid) in [("gateway", gateway.pid()), ("sidecar", sidecar.pid())] {
        let rss = pid
            .and_then(proc_status)
            .map(|s| s.rss_bytes as f64 / 1048576.0);
        ctx.report.add(
            "memory",
            &format!("{name} idle RSS"),
            rss,
            "MiB",
            Some(Goal::AtMost(IDLE_RSS_GOAL_MIB)),
            "",
        );
    }
}

fn report_pair(ctx: &mut Ctx, scenario: &str, direct: &LoadStats, via: &LoadStats, goals: bool) {
    let r = &mut ctx.report;
    add_counts(r, scenario, "direct", direct);
    add_counts(r, scenario, "gateway", via);
    add_percentiles(r, scenario, "direct latency", &direct.latency_us, [None; 3]);
    add_percentiles(r, scenario, "gateway latency", &via.latency_us, [None; 3]);
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let added = match (pct(&via.service_us, q), pct(&direct.service_us, q)) {
            (Some(v), Some(d)) => Some(v - d),
            _ => None,
        };
        r.add(
            scenario,
            &format!("added latency {label}"),
            added,
            "us",
            None,
            "gateway - direct, service time",
        );
    }
    let goals = if goals {
        [
            Some(Goal::AtMost(OVERHEAD_P50_GOAL_US)),
            None,
            Some(Goal::AtMost(OVERHEAD_P99_GOAL_US)),
        ]
    } else {
        [None; 3]
    };
    add_percentiles(
        r,
        scenario,
        "gateway overhead (x-lingma-overhead-us)",
        &via.overhead_us,
        goals,
    );
    if via.overhead_us.is_empty() {
        r.skip(scenario, "the gateway sent no x-lingma-overhead-us header");
    }
    r.info(
        scenario,
        "generator max send lag",
        Some(via.max_send_lag_us as f64),
        "us",
    );
}

async fn direct_open(mux: &Arc<MuxClient>, rate: f64, secs: Duration) -> LoadStats {
    let mux = mux.clone();
    load::open_loop(rate, secs, TIMEOUT, move |i| direct_once(mux.clone(), i)).await
}

async fn gateway_open(
    http: &reqwest::Client,
    url: &Arc<String>,
    rate: f64,
    secs: Duration,
) -> LoadStats {
    let (http, url) = (http.clone(), url.clone());
    load::open_loop(rate, secs, TIMEOUT, move |i| {
        gateway_once(http.clone(), url.clone(), i)
    })
    .await
}

fn question(i: u64) -> String {
    format!("bench question {i}: what does this function do?")
}

async fn direct_once(mux: Arc<MuxClient>, i: u64) -> Outcome {
    match mux
        .chat_to_end(simple_request(&format!("bench-{i}"), &question(i)))
        .await
    {
        Ok(_) => Outcome::Ok { overhead_us: None },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn gateway_once(http: reqwest::Client, url: Arc<String>, i: u64) -> Outcome {
    let q = question(i);
    let body = chat_body(&[("user", &q)], false, None);
    match openai::post_chat(&http, &url, None, &body).await {
        Ok(out) if out.status == 200 => Outcome::Ok {
            overhead_us: out.overhead_us,
        },
        Ok(out) => Outcome::Failed(format!("HTTP {}", out.status)),
        Err(e) => Outcome::Failed(format!("transport: {}", short(&e.to_string()))),
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Time to first token and gaps between chunks, direct vs. through the gateway, at a
/// moderate fixed rate.
async fn streaming(ctx: &mut Ctx, mux: &Arc<MuxClient>, http: &reqwest::Client, url: &Arc<String>) {
    let rate = ctx.settings.streaming_rate;
    let secs = ctx.settings.secs_per_rate;
    let scenario = format!("streaming @{rate} rps");
    let ttft_direct = Arc::new(Mutex::new(load::histogram()));
    let gaps_direct = Arc::new(Mutex::new(load::histogram()));
    let ttft_gw = Arc::new(Mutex::new(load::histogram()));
    let gaps_gw = Arc::new(Mutex::new(load::histogram()));

    let direct = {
        let (mux, ttft, gaps) = (mux.clone(), ttft_direct.clone(), gaps_direct.clone());
        load::open_loop(rate, secs, TIMEOUT, move |i| {
            let (mux, ttft, gaps) = (mux.clone(), ttft.clone(), gaps.clone());
            async move { direct_stream(&mux, i, &ttft, &gaps).await }
        })
        .await
    };
    let via = {
        let (http, url, ttft, gaps) = (http.clone(), url.clone(), ttft_gw.clone(), gaps_gw.clone());
        load::open_loop(rate, secs, TIMEOUT, move |i| {
            let (http, url, ttft, gaps) = (http.clone(), url.clone(), ttft.clone(), gaps.clone());
            async move {
                let q = question(i);
                let body = chat_body(&[("user", &q)], true, None);
                match openai::post_stream(&http, &url, None, &body, Instant::now()).await {
                    Ok(out) if out.status == 200 && out.done && out.error.is_none() => {
                        record(&ttft, out.ttft);
                        for g in out.chunk_gaps {
                            record(&gaps, Some(g));
                        }
                        Outcome::Ok {
                            overhead_us: out.overhead_us,
                        }
                    }
                    Ok(out) => Outcome::Failed(format!("HTTP {} done={}", out.status, out.done)),
                    Err(e) => Outcome::Failed(format!("transport: {}", short(&e.to_string()))),
                }
            }
        })
        .await
    };
    let r = &mut ctx.report;
    add_counts(r, &scenario, "direct", &direct);
    add_counts(r, &scenario, "gateway", &via);
    let lock = |m: &Arc<Mutex<hdrhistogram::Histogram<u64>>>| {
        m.lock().unwrap_or_else(|e| e.into_inner()).clone()
    };
    let (td, tg, gd, gg) = (
        lock(&ttft_direct),
        lock(&ttft_gw),
        lock(&gaps_direct),
        lock(&gaps_gw),
    );
    add_percentiles(r, &scenario, "TTFT direct", &td, [None; 3]);
    add_percentiles(r, &scenario, "TTFT gateway", &tg, [None; 3]);
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let added = match (pct(&tg, q), pct(&td, q)) {
            (Some(g), Some(d)) => Some(g - d),
            _ => None,
        };
        r.info(
            &scenario,
            &format!("TTFT added by the gateway {label}"),
            added,
            "us",
        );
    }
    add_percentiles(r, &scenario, "inter-chunk gap direct", &gd, [None; 3]);
    add_percentiles(r, &scenario, "inter-chunk gap gateway", &gg, [None; 3]);
}

fn record(h: &Mutex<hdrhistogram::Histogram<u64>>, d: Option<Duration>) {
    if let Some(d) = d {
        let _ = h
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record((d.as_micros() as u64).max(1));
    }
}

async fn direct_stream(
    mux: &MuxClient,
    i: u64,
    ttft: &Mutex<hdrhistogram::Histogram<u64>>,
    gaps: &Mutex<hdrhistogram::Histogram<u64>>,
) -> Outcome {
    let request = simple_request(&format!("bench-s-{i}"), &question(i));
    match mux.chat_delta_times(request).await {
        Ok(times) => {
            record(ttft, times.first);
            for gap in times.gaps {
                record(gaps, Some(gap));
            }
            Outcome::Ok { overhead_us: None }
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
