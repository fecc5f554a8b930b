//! What session reuse saves in time to first token. The simulators charge a prefill cost
//! (`--prefill-us-per-kib`): the first token waits in proportion to the question's bytes,
//! as real Lingma re-reads the whole flattened history on a new session while a continued
//! one is sent only the new turn. N one-chat sidecars, two gateway replicas, M = 2N
//! multi-turn conversations whose history grows every turn (turns alternate between the
//! replicas); time to first token of the follow-up turns, sticky versus least-in-flight.
//! M = 2N because at M = N least-in-flight keeps most sessions too (every instance has
//! one conversation), so both would show the same prefill.

use super::{Ctx, add_percentiles_ms, pct_ms};
use bench::openai::{self, chat_body};
use bench::stack::{Gateway, GatewayOptions, Sidecar, Sim, SimOptions};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prefill cost per KiB of question: 20 ms, so a 10 KiB history costs 200 ms before the
/// first token (the order of magnitude of a cloud model re-reading a long chat).
const PREFILL_US_PER_KIB: u64 = 20_000;
const FIRST_TOKEN_DELAY_MS: u64 = 50;
const TURNS_PER_CONVERSATION: usize = 8;
const CONVERSATIONS_PER_WORKER: usize = 3;
/// Each user turn carries about 1 KiB (a pasted snippet), so the history grows by ~1 KiB
/// plus the answer per turn.
const USER_TURN_BYTES: usize = 1024;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let n = ctx.settings.pool_sidecars;
    let sim = SimOptions {
        chunks: 10,
        first_token_delay_ms: FIRST_TOKEN_DELAY_MS,
        chunk_delay_ms: 5,
        prefill_us_per_kib: PREFILL_US_PER_KIB,
        ..SimOptions::default()
    };
    let (sims, sidecars) = super::one_chat_pool(ctx, n, "prefill", sim).await?;
    let refs: Vec<&Sidecar> = sidecars.iter().collect();
    let m = 2 * n;
    let scenario = format!("prefill N={n} M={m} ({PREFILL_US_PER_KIB} us/KiB)");
    let mut p50s = Vec::new();
    for routing in ["sticky", "least-in-flight"] {
        let mut gateways = Vec::new();
        for _ in 0..2 {
            gateways.push(
                Gateway::start(
                    &ctx.bins.gateway,
                    GatewayOptions {
                        routing: routing.to_owned(),
                        max_in_flight: 0,
                        queue_timeout_sec: 30.0,
                        ..GatewayOptions::for_sidecars(&refs)
                    },
                )
                .await?,
            );
        }
        let before = prefill_totals(&sims).await;
        let run = drive(&gateways, m, routing).await;
        let after = prefill_totals(&sims).await;
        let r = &mut ctx.report;
        p50s.push(pct_ms(&run.follow_up_ttft_us, 0.5));
        add_percentiles_ms(
            r,
            &scenario,
            &format!("{routing}: follow-up TTFT"),
            &run.follow_up_ttft_us,
        );
        r.info(
            &scenario,
            &format!("{routing}: first-turn TTFT p50"),
            pct_ms(&run.first_ttft_us, 0.5),
            "ms",
        );
        let reuse = (run.follow_ups > 0).then(|| run.reused as f64 / run.follow_ups as f64);
        r.info(
            &scenario,
            &format!("{routing}: session reuse"),
            reuse,
            "of follow-up turns",
        );
        let chats = after.1.saturating_sub(before.1);
        let prefill_ms =
            (chats > 0).then(|| after.0.saturating_sub(before.0) as f64 / chats as f64 / 1000.0);
        r.info(
            &scenario,
            &format!("{routing}: prefill per chat at the simulators (mean)"),
            prefill_ms,
            "ms",
        );
        r.add(
            &scenario,
            &format!("{routing}: turns failed"),
            Some(run.failed as f64),
            "",
            Some(bench::report::Goal::AtMost(0.0)),
            run.failures.clone(),
        );
        drop(gateways);
    }
    if let &[Some(sticky), Some(lif)] = p50s.as_slice() {
        ctx.report.info(
            &scenario,
            "follow-up TTFT p50: least-in-flight / sticky",
            (sticky > 0.0).then(|| lif / sticky),
            "x",
        );
    }
    drop(sidecars);
    drop(sims);
    Ok(())
}

/// Sum over the simulators of (prefill microseconds applied, chats answered).
async fn prefill_totals(sims: &[Sim]) -> (u64, u64) {
    let mut total = (0, 0);
    for sim in sims {
        if let Ok(s) = sim.control().stats().await {
            total.0 += s["prefill_us_total"].as_u64().unwrap_or(0);
            total.1 += s["chats_total"].as_u64().unwrap_or(0);
        }
    }
    total
}

struct RunResult {
    first_ttft_us: hdrhistogram::Histogram<u64>,
    follow_up_ttft_us: hdrhistogram::Histogram<u64>,
    follow_ups: u64,
    reused: u64,
    failed: u64,
    failures: String,
}

#[derive(Default)]
struct Tally {
    follow_ups: u64,
    reused: u64,
    failed: u64,
    failures: Vec<String>,
}

/// `m` workers, each running [`CONVERSATIONS_PER_WORKER`] conversations of
/// [`TURNS_PER_CONVERSATION`] streamed turns, turn k on replica (worker + k) mod 2.
async fn drive(gateways: &[Gateway], m: usize, tag: &str) -> RunResult {
    let urls: Arc<Vec<String>> = Arc::new(gateways.iter().map(Gateway::chat_url).collect());
    let http = reqwest::Client::new();
    let first = Arc::new(Mutex::new(bench::load::histogram()));
    let follow = Arc::new(Mutex::new(bench::load::histogram()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..m {
        let (urls, http, first, follow, tally) = (
            urls.clone(),
            http.clone(),
            first.clone(),
            follow.clone(),
            tally.clone(),
        );
        let tag = tag.to_owned();
        tasks.spawn(async move {
            for k in 0..CONVERSATIONS_PER_WORKER {
                let mut history: Vec<(String, String)> = vec![(
                    "system".into(),
                    format!("prefill conversation {tag}/{w}/{k}"),
                )];
                for turn in 1..=TURNS_PER_CONVERSATION {
                    history.push(("user".into(), user_turn(w, k, turn)));
                    let msgs: Vec<(&str, &str)> = history
                        .iter()
                        .map(|(r, t)| (r.as_str(), t.as_str()))
                        .collect();
                    let url = &urls[(w + turn) % urls.len()];
                    let body = chat_body(&msgs, true, None);
                    let out = openai::post_stream(&http, url, None, &body, Instant::now()).await;
                    let mut t = lock(&tally);
                    match out {
                        Ok(o) if o.status == 200 && o.done && o.error.is_none() => {
                            let us = o.ttft.unwrap_or(Duration::ZERO).as_micros() as u64;
                            let hist = if turn == 1 { &first } else { &follow };
                            let _ = lock(hist).record(us.max(1));
                            if turn > 1 {
                                t.follow_ups += 1;
                                t.reused += u64::from(o.session.as_deref() == Some("reused"));
                            }
                            history.push(("assistant".into(), o.content));
                        }
                        other => {
                            t.failed += 1;
                            t.failures.push(match other {
                                Ok(o) => format!("HTTP {} error={:?}", o.status, o.error),
                                Err(e) => format!("transport: {e}"),
                            });
                            break;
                        }
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let t = lock(&tally);
    RunResult {
        first_ttft_us: lock(&first).clone(),
        follow_up_ttft_us: lock(&follow).clone(),
        follow_ups: t.follow_ups,
        reused: t.reused,
        failed: t.failed,
        failures: t
            .failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// About [`USER_TURN_BYTES`] of question: a line of text and a pasted snippet.
fn user_turn(w: usize, k: usize, turn: usize) -> String {
    let mut text = format!("question {turn} of conversation {w}/{k}: what does this do?\n");
    let line = "    let total: u64 = items.iter().map(|i| i.size).sum(); // sum the sizes\n";
    while text.len() + line.len() <= USER_TURN_BYTES {
        text.push_str(line);
    }
    text
}
