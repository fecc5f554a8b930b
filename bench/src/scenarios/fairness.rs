//! Fair queueing across virtual keys and honest `Retry-After`, over N = 4 sidecars whose
//! simulators take one chat at a time.
//!
//! (a) Two keys with equal weight, one offering ten times the other's load (closed loops of
//!     40 and 4 clients) into the saturated pool: the light key's share of the slots against
//!     its fair share (half: it always has a request waiting), Jain's index over the two
//!     keys' throughput normalised by their fair shares, and the light key's p99 queue wait
//!     (`x-lingma-queue-wait-ms`), bounded by three service times.
//! (b) One key floods a pool with a bounded queue; every refused client sleeps its
//!     `Retry-After` and retries. For each refusal, the wait it was told is compared with
//!     the wait it would actually have had at its queue position: the time until as many
//!     admissions happened as requests were ahead of it (the queue was full, one key, so
//!     FIFO), read off the admission times of all requests.

use super::{Ctx, pct};
use bench::openai::chat_body;
use bench::report::Goal;
use bench::stack::{Gateway, GatewayOptions, Sidecar, Sim, SimOptions};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SIDECARS: usize = 4;
const HEAVY_CLIENTS: usize = 40;
const LIGHT_CLIENTS: usize = 4;
const RUN: Duration = Duration::from_secs(12);
/// (b): queue bound and clients (slots + queue + a few refused at any time).
const QUEUE: usize = 20;
const RETRY_CLIENTS: usize = 32;
const RETRY_RUN: Duration = Duration::from_secs(25);
const HEAVY_KEY: &str = "sk-bench-heavy";
const LIGHT_KEY: &str = "sk-bench-light";

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (_sims, sidecars) = start_pool(ctx, 10).await?;
    let refs: Vec<&Sidecar> = sidecars.iter().collect();
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys.json");
    std::fs::write(
        &keys,
        format!(
            r#"{{"keys":[{{"name":"heavy","key":"{HEAVY_KEY}"}},{{"name":"light","key":"{LIGHT_KEY}"}}]}}"#
        ),
    )?;
    let keys_env = ("API_KEYS_FILE".to_owned(), keys.display().to_string());
    shares(ctx, &refs, &keys_env).await?;
    drop((_sims, sidecars));
    // (b) wants waits of seconds, so the integer Retry-After is not mostly rounding.
    let (_sims, sidecars) = start_pool(ctx, 40).await?;
    let refs: Vec<&Sidecar> = sidecars.iter().collect();
    retry_after(ctx, &refs, &keys_env).await
}

/// N one-chat simulators answering 20 chunks `chunk_ms` apart, and their sidecars.
async fn start_pool(ctx: &Ctx, chunk_ms: u64) -> anyhow::Result<(Vec<Sim>, Vec<Sidecar>)> {
    let sim = SimOptions {
        chunks: 20,
        first_token_delay_ms: 100,
        chunk_delay_ms: chunk_ms,
        ..SimOptions::default()
    };
    super::one_chat_pool(ctx, SIDECARS, "fair", sim).await
}

/// One answered request: when it was sent, its queue wait, and its status.
#[derive(Clone, Copy)]
struct Outcome {
    sent: Instant,
    status: u16,
    queue_wait: Duration,
    retry_after: Option<u64>,
    done: Instant,
}

async fn send(http: &reqwest::Client, url: &str, key: &str, text: &str) -> Outcome {
    let sent = Instant::now();
    let body = chat_body(&[("user", text)], false, None);
    let resp = http.post(url).bearer_auth(key).json(&body).send().await;
    let Ok(resp) = resp else {
        return Outcome {
            sent,
            status: 0,
            queue_wait: Duration::ZERO,
            retry_after: None,
            done: Instant::now(),
        };
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let queue_wait = Duration::from_millis(header("x-lingma-queue-wait-ms").unwrap_or(0));
    let retry_after = header("retry-after");
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    Outcome {
        sent,
        status,
        queue_wait,
        retry_after,
        done: Instant::now(),
    }
}

async fn shares(
    ctx: &mut Ctx,
    refs: &[&Sidecar],
    keys_env: &(String, String),
) -> anyhow::Result<()> {
    let gateway = Gateway::start(
        &ctx.bins.gateway,
        GatewayOptions {
            max_in_flight: 0,
            queue_timeout_sec: 60.0,
            api_keys: String::new(),
            extra_env: vec![keys_env.clone()],
            ..GatewayOptions::for_sidecars(refs)
        },
    )
    .await?;
    let url = gateway.chat_url();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + RUN;
    let log: Arc<Mutex<Vec<(&'static str, Outcome)>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (name, key, clients) in [
        ("heavy", HEAVY_KEY, HEAVY_CLIENTS),
        ("light", LIGHT_KEY, LIGHT_CLIENTS),
    ] {
        for c in 0..clients {
            let (http, url, log) = (http.clone(), url.clone(), log.clone());
            tasks.spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    i += 1;
                    let out = send(&http, &url, key, &format!("{name} {c} {i}")).await;
                    if let Ok(mut l) = log.lock() {
                        l.push((name, out));
                    }
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    // Count slots taken in the window where both keys competed (skip the first second).
    let from = deadline - RUN + Duration::from_secs(1);
    let admitted = |name: &str| {
        log.iter()
            .filter(|(n, o)| *n == name && o.status == 200 && o.sent + o.queue_wait >= from)
            .filter(|(_, o)| o.sent + o.queue_wait < deadline)
            .count() as f64
    };
    let (heavy, light) = (admitted("heavy"), admitted("light"));
    let scenario = format!("fairness N={SIDECARS}, heavy 10x light");
    let total = heavy + light;
    let light_share = (total > 0.0).then(|| light / total);
    let r = &mut ctx.report;
    r.info(&scenario, "heavy admitted", Some(heavy), "req");
    r.info(&scenario, "light admitted", Some(light), "req");
    r.add(
        &scenario,
        "light share / fair share",
        light_share.map(|s| s / 0.5),
        "",
        None,
        "fair share 0.5 (equal weights, both always waiting)",
    );
    r.add(
        &scenario,
        "light share deviation from fair",
        light_share.map(|s| (s - 0.5).abs() / 0.5),
        "",
        Some(Goal::AtMost(0.10)),
        "|share - fair| / fair",
    );
    let jain = {
        let (x1, x2) = (heavy / 0.5, light / 0.5);
        let sq = x1 * x1 + x2 * x2;
        (sq > 0.0).then(|| (x1 + x2).powi(2) / (2.0 * sq))
    };
    r.add(
        &scenario,
        "Jain's index",
        jain,
        "",
        Some(Goal::AtLeast(0.95)),
        "throughput / fair share",
    );
    let mut waits = bench::load::histogram();
    for (_, o) in log.iter().filter(|(n, o)| *n == "light" && o.status == 200) {
        let _ = waits.record(o.queue_wait.as_micros() as u64);
    }
    let service_ms = mean_service_ms(&log);
    let bound_ms = 3.0 * service_ms.unwrap_or(0.0);
    r.info(&scenario, "mean service time", service_ms, "ms");
    r.add(
        &scenario,
        "light queue wait p99",
        pct(&waits, 0.99).map(|us| us / 1000.0),
        "ms",
        Some(Goal::AtMost(bound_ms)),
        "bound: 3 mean service times",
    );
    r.info(
        &scenario,
        "light queue wait p50",
        pct(&waits, 0.5).map(|us| us / 1000.0),
        "ms",
    );
    let failed = log.iter().filter(|(_, o)| o.status != 200).count();
    r.add(
        &scenario,
        "failed",
        Some(failed as f64),
        "req",
        Some(Goal::AtMost(0.0)),
        "",
    );
    Ok(())
}

/// Mean time a request held its slot: round trip minus queue wait.
fn mean_service_ms(log: &[(&str, Outcome)]) -> Option<f64> {
    let held: Vec<f64> = log
        .iter()
        .filter(|(_, o)| o.status == 200)
        .map(|(_, o)| (o.done - o.sent).saturating_sub(o.queue_wait).as_secs_f64() * 1000.0)
        .collect();
    (!held.is_empty()).then(|| held.iter().sum::<f64>() / held.len() as f64)
}

async fn retry_after(
    ctx: &mut Ctx,
    refs: &[&Sidecar],
    keys_env: &(String, String),
) -> anyhow::Result<()> {
    let gateway = Gateway::start(
        &ctx.bins.gateway,
        GatewayOptions {
            max_in_flight: 0,
            queue_timeout_sec: 120.0,
            api_keys: String::new(),
            extra_env: vec![
                keys_env.clone(),
                ("GATEWAY_MAX_QUEUED".to_owned(), QUEUE.to_string()),
            ],
            ..GatewayOptions::for_sidecars(refs)
        },
    )
    .await?;
    let url = gateway.chat_url();
    let http = reqwest::Client::new();
    // Warm-up: a few chats per sidecar, so the estimator has service times (before any,
    // it assumes 5 s, and a client told to wait that long would sit out the run).
    let texts: Vec<String> = (0..2 * SIDECARS).map(|i| format!("warm {i}")).collect();
    let warm_up: Vec<_> = texts
        .iter()
        .map(|t| send(&http, &url, LIGHT_KEY, t))
        .collect();
    futures_util::future::join_all(warm_up).await;
    let started = Instant::now();
    let deadline = started + RETRY_RUN;
    let admissions: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let refusals: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let others = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..RETRY_CLIENTS {
        let (http, url, admissions, refusals, others) = (
            http.clone(),
            url.clone(),
            admissions.clone(),
            refusals.clone(),
            others.clone(),
        );
        tasks.spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                i += 1;
                let out = send(&http, &url, HEAVY_KEY, &format!("retry {c} {i}")).await;
                match (out.status, out.retry_after) {
                    (200, _) => {
                        if let Ok(mut a) = admissions.lock() {
                            a.push(out.sent + out.queue_wait);
                        }
                    }
                    (429, Some(secs)) => {
                        if let Ok(mut r) = refusals.lock() {
                            r.push((Instant::now(), secs));
                        }
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                    }
                    _ => {
                        others.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut admissions = admissions.lock().map(|a| a.clone()).unwrap_or_default();
    admissions.sort();
    let refusals = refusals.lock().map(|r| r.clone()).unwrap_or_default();
    // Warm-up: the estimator needs some finished chats first.
    let warm = started + Duration::from_secs(1);
    let mut errors = Vec::new();
    let mut told = Vec::new();
    for (at, secs) in refusals.iter().filter(|(at, _)| *at >= warm) {
        let after: Vec<&Instant> = admissions.iter().filter(|t| *t > at).collect();
        // Position QUEUE + 1: the queue was full when it was refused.
        if let Some(t) = after.get(QUEUE) {
            let actual = t.duration_since(*at).as_secs_f64();
            if actual > 0.0 {
                errors.push((*secs as f64 - actual).abs() / actual);
                told.push(*secs as f64);
            }
        }
    }
    errors.sort_by(f64::total_cmp);
    told.sort_by(f64::total_cmp);
    let median = |v: &[f64]| (!v.is_empty()).then(|| v[v.len() / 2]);
    let scenario = format!("retry-after N={SIDECARS}, queue {QUEUE}");
    let r = &mut ctx.report;
    r.info(&scenario, "admitted", Some(admissions.len() as f64), "req");
    r.info(&scenario, "refused", Some(refusals.len() as f64), "req");
    let others = others.load(std::sync::atomic::Ordering::Relaxed) as f64;
    r.info(&scenario, "other answers", Some(others), "req");
    r.info(
        &scenario,
        "refusals compared",
        Some(errors.len() as f64),
        "",
    );
    r.info(&scenario, "Retry-After median", median(&told), "s");
    r.add(
        &scenario,
        "Retry-After median abs error",
        median(&errors),
        "",
        Some(Goal::AtMost(0.30)),
        "vs the wait at its queue position",
    );
    Ok(())
}
