//! Many concurrent idle SSE streams held open through gateway + sidecar: memory per stream,
//! and that every one completes when the simulator finally answers. The simulator holds each
//! chat for `hold` before the first token, so the streams are open and idle meanwhile.

use super::Ctx;
use bench::openai::{self, chat_body};
use bench::report::Goal;
use bench::stack::{GatewayOptions, SidecarOptions, SimOptions, SingleStack, proc_status};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PER_STREAM_GOAL_KIB: f64 = 16.0;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let n = ctx.settings.idle_streams;
    let hold = ctx.settings.idle_hold;
    let scenario = format!("{n} idle SSE streams");
    let SingleStack {
        sim,
        sidecar,
        gateway,
    } = SingleStack::start(
        &ctx.bins,
        SimOptions {
            chunks: 2,
            first_token_delay_ms: hold.as_millis() as u64,
            ..SimOptions::default()
        },
        SidecarOptions {
            max_concurrent_chats: (n as u32) * 2,
            ..SidecarOptions::default()
        },
        GatewayOptions {
            max_in_flight: 0,
            extra_env: vec![
                ("GATEWAY_MAX_QUEUED".into(), (n * 2).to_string()),
                // Every stream is its own connection: above the default cap of 1000.
                ("GATEWAY_MAX_CONNECTIONS".into(), (n + 100).to_string()),
            ],
            ..GatewayOptions::default()
        },
    )
    .await?;
    // Warm up (first allocations, the mux connection) with a few streams first.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let base_gw = gateway
        .pid()
        .and_then(proc_status)
        .map(|s| s.rss_bytes)
        .unwrap_or(0);
    let base_sc = sidecar
        .pid()
        .and_then(proc_status)
        .map(|s| s.rss_bytes)
        .unwrap_or(0);
    let base_threads = gateway
        .pid()
        .and_then(proc_status)
        .map(|s| s.threads)
        .unwrap_or(0);

    let url = Arc::new(gateway.chat_url());
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (http, url, completed, failed) =
            (http.clone(), url.clone(), completed.clone(), failed.clone());
        tasks.spawn(async move {
            let body = chat_body(&[("user", &format!("idle stream {i}"))], true, None);
            let ok = matches!(
                openai::post_stream(&http, &url, None, &body, Instant::now()).await,
                Ok(out) if out.status == 200 && out.done && out.error.is_none()
            );
            let counter = if ok { &completed } else { &failed };
            counter.fetch_add(1, Ordering::Relaxed);
        });
        // Ramp so the listen backlog never overflows (SYN retries would add seconds).
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Wait until every stream is open upstream (the simulator holds them all).
    let open_deadline = started + hold.saturating_sub(Duration::from_secs(2));
    let mut open = 0;
    while Instant::now() < open_deadline {
        open = sim
            .control()
            .stats()
            .await
            .ok()
            .and_then(|s| s["chats_in_flight"].as_u64())
            .unwrap_or(0) as usize;
        if open >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened_in = started.elapsed();
    let gw = gateway.pid().and_then(proc_status);
    let sc = sidecar.pid().and_then(proc_status);
    let r = &mut ctx.report;
    r.info(
        &scenario,
        "streams open upstream at measurement",
        Some(open as f64),
        "streams",
    );
    r.info(
        &scenario,
        "time to open them",
        Some(opened_in.as_secs_f64()),
        "s",
    );
    let per_stream = |now: Option<u64>, base: u64| {
        now.filter(|_| open > 0)
            .map(|v| (v.saturating_sub(base)) as f64 / open as f64 / 1024.0)
    };
    r.add(
        &scenario,
        "gateway RSS per stream",
        per_stream(gw.map(|s| s.rss_bytes), base_gw),
        "KiB",
        Some(Goal::AtMost(PER_STREAM_GOAL_KIB)),
        "",
    );
    r.add(
        &scenario,
        "sidecar RSS per stream",
        per_stream(sc.map(|s| s.rss_bytes), base_sc),
        "KiB",
        Some(Goal::AtMost(PER_STREAM_GOAL_KIB)),
        "",
    );
    r.info(
        &scenario,
        "gateway RSS with the streams open",
        gw.map(|s| s.rss_bytes as f64 / 1048576.0),
        "MiB",
    );
    r.info(
        &scenario,
        "sidecar RSS with the streams open",
        sc.map(|s| s.rss_bytes as f64 / 1048576.0),
        "MiB",
    );
    r.info(
        &scenario,
        "gateway OS threads before",
        Some(base_threads as f64),
        "",
    );
    r.info(
        &scenario,
        "gateway OS threads with the streams open",
        gw.map(|s| s.threads as f64),
        "",
    );

    // Release: the simulator answers when the hold ends; every stream must complete.
    let release_deadline = Instant::now() + hold + Duration::from_secs(30);
    while Instant::now() < release_deadline && !tasks.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(1), tasks.join_next()).await;
    }
    tasks.abort_all();
    let done = completed.load(Ordering::Relaxed);
    r.add(
        &scenario,
        "streams completed after release",
        Some(done as f64),
        "streams",
        Some(Goal::AtLeast(n as f64)),
        format!("{} failed", failed.load(Ordering::Relaxed)),
    );
    let in_flight = gateway
        .metrics()
        .await
        .ok()
        .and_then(|m| m.sum("gateway_in_flight"));
    r.add(
        &scenario,
        "gateway_in_flight after release",
        in_flight,
        "",
        Some(Goal::AtMost(0.0)),
        "",
    );
    Ok(())
}
