//! The pool as users feel it: N sidecars whose simulators take one chat at a time and answer
//! with a realistic delay, M multi-turn conversations (M = N, 2N, 4N) whose turns are spread
//! over two and then three gateway replicas, sticky routing next to least-in-flight (whose
//! wait p99 is sticky's bound at M = 2N). Busy time is sampled off the sidecars' own gauges
//! (in_flight over capacity).

use super::{Ctx, pct, pct_ms};
use bench::load;
use bench::openai::{self, chat_body};
use bench::prom::{Metrics, bucket_delta, histogram_quantile};
use bench::report::Goal;
use bench::stack::{Gateway, GatewayOptions, Sidecar, Sim, SimOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TURNS_PER_CONVERSATION: usize = 8;
const FIRST_TOKEN_DELAY_MS: u64 = 200;
const UTILIZATION_GOAL: f64 = 0.95;
/// Session reuse goals of sticky routing (issue 16): at M = N and at M = 2N.
const REUSE_GOAL_M_EQ_N: f64 = 0.95;
const REUSE_GOAL_M_2N: f64 = 0.90;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let n = ctx.settings.pool_sidecars;
    let (sims, sidecars) = start_sidecars(ctx, n).await?;
    for replicas in REPLICAS {
        // Least-in-flight first: its wait p99 is the bound sticky routing is held to.
        let mut lif_p99: Vec<(usize, Option<f64>)> = Vec::new();
        for routing in ["least-in-flight", "sticky"] {
            let gateways = start_gateways(ctx, &sidecars, routing, replicas).await?;
            for m in [n, 2 * n, 4 * n] {
                let p99 = measure(
                    ctx,
                    &sidecars,
                    &gateways,
                    Run {
                        n,
                        m,
                        replicas,
                        routing,
                    },
                    lif_p99
                        .iter()
                        .find(|(lm, _)| *lm == m)
                        .and_then(|(_, v)| *v),
                )
                .await;
                if routing == "least-in-flight" {
                    lif_p99.push((m, p99));
                }
                // Let every chat end before the next run so runs do not overlap.
                settle(&sidecars).await;
            }
        }
    }
    drop(sims);
    Ok(())
}

/// Gateway replicas in front of the same sidecars, one pool run each.
const REPLICAS: [usize; 2] = [2, 3];

/// One (replicas, routing, M) run.
#[derive(Clone, Copy)]
struct Run<'a> {
    n: usize,
    m: usize,
    replicas: usize,
    routing: &'a str,
}

async fn start_sidecars(ctx: &Ctx, n: usize) -> anyhow::Result<(Vec<Sim>, Vec<Sidecar>)> {
    let sim = SimOptions {
        chunks: 20,
        first_token_delay_ms: FIRST_TOKEN_DELAY_MS,
        chunk_delay_ms: 10,
        ..SimOptions::default()
    };
    super::one_chat_pool(ctx, n, "pool", sim).await
}

async fn start_gateways(
    ctx: &Ctx,
    sidecars: &[Sidecar],
    routing: &str,
    replicas: usize,
) -> anyhow::Result<Vec<Gateway>> {
    let refs: Vec<&Sidecar> = sidecars.iter().collect();
    let mut gateways = Vec::new();
    for _ in 0..replicas {
        gateways.push(
            Gateway::start(
                &ctx.bins.gateway,
                GatewayOptions {
                    routing: routing.to_owned(),
                    max_in_flight: 0,
                    queue_timeout_sec: ctx.settings.pool_queue_timeout.as_secs_f64(),
                    ..GatewayOptions::for_sidecars(&refs)
                },
            )
            .await?,
        );
    }
    Ok(gateways)
}

/// Drive one run and report it; returns its wait p99 (ms). `lif_p99`: least-in-flight's
/// wait p99 at the same M and replicas, the bound of sticky routing at M = 2N.
async fn measure(
    ctx: &mut Ctx,
    sidecars: &[Sidecar],
    gateways: &[Gateway],
    run_of: Run<'_>,
    lif_p99: Option<f64>,
) -> Option<f64> {
    let Run {
        n,
        m,
        replicas,
        routing,
    } = run_of;
    let queue_timeout = ctx.settings.pool_queue_timeout;
    let scenario = format!("pool N={n} M={m} replicas={replicas}");
    let before = scrape_queue_wait(gateways).await;
    let races_before = scrape_sum(gateways, "gateway_slot_races_total").await;
    let busy = BusyMeter::start(sidecars);
    let secs = ctx.settings.pool_secs;
    let tag = format!("{routing}-{m}-{replicas}");
    let run = drive(gateways, m, secs, &tag);
    tokio::pin!(run);
    // Busy time is measured over the load window only, not the drain after it.
    let early = tokio::select! {
        r = &mut run => Some(r),
        _ = tokio::time::sleep(secs) => None,
    };
    let utilization = busy.stop().await;
    let run = match early {
        Some(r) => r,
        None => run.await,
    };
    let after = scrape_queue_wait(gateways).await;
    let races = scrape_sum(gateways, "gateway_slot_races_total").await - races_before;
    let wait = bucket_delta(&after, &before);
    let sticky = routing == "sticky";
    let (util_goal, reuse_goal) = match (sticky, m == n, m == 2 * n) {
        (true, true, _) => (
            Some(Goal::AtLeast(UTILIZATION_GOAL)),
            Some(Goal::AtLeast(REUSE_GOAL_M_EQ_N)),
        ),
        (true, _, true) => (None, Some(Goal::AtLeast(REUSE_GOAL_M_2N))),
        _ => (None, None),
    };
    let r = &mut ctx.report;
    r.add(
        &scenario,
        &format!("{routing}: utilization"),
        utilization,
        "",
        util_goal,
        "busy/capacity",
    );
    let reuse = (run.follow_ups > 0).then(|| run.reused as f64 / run.follow_ups as f64);
    r.add(
        &scenario,
        &format!("{routing}: session reuse"),
        reuse,
        "",
        reuse_goal,
        "of follow-up turns",
    );
    r.info(
        &scenario,
        &format!("{routing}: turns completed"),
        Some(run.completed as f64),
        "",
    );
    r.info(
        &scenario,
        &format!("{routing}: TTFT p50"),
        pct_ms(&run.ttft_us, 0.5),
        "ms",
    );
    r.info(
        &scenario,
        &format!("{routing}: TTFT p99"),
        pct_ms(&run.ttft_us, 0.99),
        "ms",
    );
    // Wait as users feel it: time to first token beyond the simulator's own delay
    // (gateway queue + sidecar queue + transport).
    let felt = |q: f64| {
        pct(&run.ttft_us, q).map(|us| (us / 1000.0 - FIRST_TOKEN_DELAY_MS as f64).max(0.0))
    };
    let p99 = felt(0.99);
    let wait_goal = if m == 4 * n {
        Some(Goal::AtMost(queue_timeout.as_secs_f64() * 1000.0))
    } else if sticky && m == 2 * n {
        lif_p99.map(Goal::AtMost)
    } else {
        None
    };
    r.info(
        &scenario,
        &format!("{routing}: wait p50 (TTFT - {FIRST_TOKEN_DELAY_MS} ms)"),
        felt(0.5),
        "ms",
    );
    r.add(
        &scenario,
        &format!("{routing}: wait p99 (TTFT - {FIRST_TOKEN_DELAY_MS} ms)"),
        p99,
        "ms",
        wait_goal,
        if sticky && m == 2 * n {
            "goal: least-in-flight's p99"
        } else {
            ""
        },
    );
    if wait.last().is_some_and(|(_, n)| *n > 0.0) {
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
            r.info(
                &scenario,
                &format!("{routing}: gateway_queue_wait_seconds {label}"),
                histogram_quantile(&wait, q).map(|s| s * 1000.0),
                "ms",
            );
        }
    }
    r.info(
        &scenario,
        &format!("{routing}: slot races lost (chats re-queued by their replica)"),
        Some(races),
        "",
    );
    r.info(
        &scenario,
        &format!("{routing}: 429 responses"),
        Some(run.rejected as f64),
        "",
    );
    r.add(
        &scenario,
        &format!("{routing}: requests lost"),
        Some(run.lost as f64),
        "",
        Some(Goal::AtMost(0.0)),
        run.lost_reasons.clone(),
    );
    p99
}

async fn scrape_queue_wait(gateways: &[Gateway]) -> Vec<(f64, f64)> {
    let mut total: Vec<(f64, f64)> = Vec::new();
    for g in gateways {
        if let Ok(m) = g.metrics().await {
            for (le, v) in m.buckets("gateway_queue_wait_seconds") {
                match total.iter_mut().find(|(b, _)| *b == le) {
                    Some(e) => e.1 += v,
                    None => total.push((le, v)),
                }
            }
        }
    }
    total.sort_by(|a, b| a.0.total_cmp(&b.0));
    total
}

/// A counter summed over the gateway replicas.
async fn scrape_sum(gateways: &[Gateway], name: &str) -> f64 {
    let mut total = 0.0;
    for g in gateways {
        if let Ok(m) = g.metrics().await {
            total += m.sum(name).unwrap_or(0.0);
        }
    }
    total
}

async fn settle(sidecars: &[Sidecar]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let mut busy = false;
        for s in sidecars {
            if let Ok(m) = s.metrics().await {
                busy |= m.sum("sidecar_in_flight").unwrap_or(0.0) > 0.0
                    || m.sum("sidecar_queued").unwrap_or(0.0) > 0.0;
            }
        }
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Time-weighted busy fraction of the sidecars, from their Status pushes.
/// Busy fraction of the sidecars: `sidecar_in_flight / sidecar_capacity` sampled off each
/// sidecar's /metrics every 20 ms (its Status pushes on load come only every 500 ms, too
/// coarse for 400 ms chats).
struct BusyMeter {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(f64, u64)>>,
}

impl BusyMeter {
    fn start(sidecars: &[Sidecar]) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = sidecars
            .iter()
            .map(|s| {
                let url = format!("{}/metrics", s.http_url());
                let token = s.options.token.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let (mut busy, mut samples) = (0.0, 0u64);
                    let mut tick = tokio::time::interval(Duration::from_millis(20));
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        if let Ok(m) = Metrics::scrape(&url, Some(&token)).await {
                            let cap = m.sum("sidecar_capacity").unwrap_or(1.0).max(1.0);
                            let in_flight = m.sum("sidecar_in_flight").unwrap_or(0.0);
                            busy += in_flight.min(cap) / cap;
                            samples += 1;
                        }
                    }
                    (busy, samples)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let (mut busy, mut samples) = (0.0, 0u64);
        for t in self.tasks {
            if let Ok((b, n)) = t.await {
                busy += b;
                samples += n;
            }
        }
        (samples > 0).then(|| busy / samples as f64)
    }
}

struct RunResult {
    completed: u64,
    follow_ups: u64,
    reused: u64,
    rejected: u64,
    lost: u64,
    lost_reasons: String,
    ttft_us: hdrhistogram::Histogram<u64>,
}

/// `m` conversations, each a loop of turns alternating between the gateways, for `secs`.
async fn drive(gateways: &[Gateway], m: usize, secs: Duration, tag: &str) -> RunResult {
    let urls: Arc<Vec<String>> = Arc::new(gateways.iter().map(Gateway::chat_url).collect());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + secs;
    let counters = Arc::new([(); 5].map(|_| AtomicU64::new(0)));
    let ttft = Arc::new(Mutex::new(load::histogram()));
    let reasons = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..m {
        let (urls, http, counters, ttft, reasons) = (
            urls.clone(),
            http.clone(),
            counters.clone(),
            ttft.clone(),
            reasons.clone(),
        );
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let mut k = 0;
            'conversations: while Instant::now() < deadline {
                k += 1;
                let mut history: Vec<(String, String)> =
                    vec![("system".into(), format!("pool conversation {tag}/{c}/{k}"))];
                let mut turn = 1;
                while turn <= TURNS_PER_CONVERSATION {
                    if Instant::now() >= deadline {
                        break 'conversations;
                    }
                    history.push((
                        "user".into(),
                        format!("question {turn} of conversation {c}/{k}"),
                    ));
                    let msgs: Vec<(&str, &str)> = history
                        .iter()
                        .map(|(r, t)| (r.as_str(), t.as_str()))
                        .collect();
                    let url = &urls[(c + turn) % urls.len()];
                    let out = openai::post_stream(
                        &http,
                        url,
                        None,
                        &chat_body(&msgs, true, None),
                        Instant::now(),
                    )
                    .await;
                    match out {
                        Ok(o) if o.status == 200 && o.done && o.error.is_none() => {
                            counters[0].fetch_add(1, Ordering::Relaxed);
                            if turn > 1 {
                                counters[1].fetch_add(1, Ordering::Relaxed);
                                if o.session.as_deref() == Some("reused") {
                                    counters[2].fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if let Some(t) = o.ttft {
                                let _ = ttft
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .record(t.as_micros() as u64);
                            }
                            history.push(("assistant".into(), o.content));
                            turn += 1;
                        }
                        Ok(o) if o.status == 429 => {
                            counters[3].fetch_add(1, Ordering::Relaxed);
                            history.pop();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => {
                            counters[4].fetch_add(1, Ordering::Relaxed);
                            let why = match other {
                                Ok(o) => {
                                    format!("HTTP {} done={} error={:?}", o.status, o.done, o.error)
                                }
                                Err(e) => format!("transport: {e}"),
                            };
                            reasons.lock().unwrap_or_else(|e| e.into_inner()).push(why);
                            continue 'conversations;
                        }
                    }
                }
            }
        });
    }
    // Chats started before the deadline finish after it: give them time.
    let _ = tokio::time::timeout(secs + Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let reasons = reasons.lock().unwrap_or_else(|e| e.into_inner());
    RunResult {
        completed: counters[0].load(Ordering::Relaxed),
        follow_ups: counters[1].load(Ordering::Relaxed),
        reused: counters[2].load(Ordering::Relaxed),
        rejected: counters[3].load(Ordering::Relaxed),
        lost: counters[4].load(Ordering::Relaxed),
        lost_reasons: reasons
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
        ttft_us: ttft.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}
