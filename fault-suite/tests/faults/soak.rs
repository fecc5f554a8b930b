//! Mixed traffic with faults for SOAK_SECS seconds (20 here by default; `scripts/soak.sh`
//! runs 30 minutes, CI 2): streaming and not, multi-turn, abandoned streams, with upstream
//! faults switched on and off. Every request gets a result or an OpenAI error, and the
//! gateway's and sidecars' RSS, threads and open files stay flat.

use fault_suite::{
    API_KEY, Footprint, Stack, StackSpec, assert_no_growth, assert_result_or_error,
    assert_stream_result_or_error,
};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::stack::{GatewayOptions, SimOptions};

const FAULTS: &[&str] = &[
    "error",
    "slow",
    "rate_limited",
    "drop",
    "internal",
    "hang",
    "late_frames",
];
const WORKERS: usize = 16;

fn soak_duration() -> Duration {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20);
    Duration::from_secs(secs.max(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_traffic_with_faults_stays_flat() {
    let duration = soak_duration();
    let stack = Arc::new(
        Stack::start(StackSpec {
            sidecars: 2,
            // Faults come every 500 ms; with the default 10 s ejection cooldown both sidecars
            // would be ejected most of the time and the soak would exercise only 503s.
            gateway: GatewayOptions {
                max_in_flight: 0,
                api_keys: API_KEY.to_owned(),
                log_level: "debug".to_owned(),
                extra_env: vec![("GATEWAY_EJECT_COOLDOWN_SEC".into(), "1".into())],
                ..GatewayOptions::default()
            },
            sim: SimOptions {
                chunks: 8,
                chunk_delay_ms: 5,
                max_concurrent_chats: 0,
                extra_args: vec![
                    "--slow-first-token-ms".into(),
                    "500".into(),
                    "--slow-chunk-delay-ms".into(),
                    "50".into(),
                ],
                ..SimOptions::default()
            },
            ..StackSpec::default()
        })
        .await,
    );
    let deadline = Instant::now() + duration;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let stack = stack.clone();
        workers.spawn(async move { worker(&stack, w, deadline).await });
    }
    // Faults on and off; footprints sampled as we go.
    let mut samples: Vec<Vec<(String, Option<Footprint>)>> = Vec::new();
    let mut tick = 0u64;
    while Instant::now() < deadline {
        let fault = FAULTS[(tick as usize) % FAULTS.len()];
        let sim = &stack.sims[(tick as usize) % stack.sims.len()];
        let _ = sim.control().set_fault(fault, Some(2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        tick += 1;
        if tick.is_multiple_of(4) {
            samples.push(stack.footprints());
        }
    }
    let mut requests = Tally::default();
    while let Some(r) = workers.join_next().await {
        requests.add(r.expect("a worker panicked"));
    }
    // Faults hit a few chats at a time: most requests must still be answered, or the soak
    // would only exercise error paths.
    assert!(
        requests.answered * 2 > requests.total(),
        "too few answers: {requests:?}"
    );
    for sim in &stack.sims {
        sim.control()
            .set_fault("none", None)
            .await
            .expect("clear fault");
    }
    stack.assert_quiescent().await;
    samples.push(stack.footprints());
    // Flat: the last sample against one taken after the first quarter (warm-up).
    if samples.len() >= 4 {
        let (early, last) = (&samples[samples.len() / 4], &samples[samples.len() - 1]);
        for ((name, a), (_, b)) in early.iter().zip(last) {
            let (Some(a), Some(b)) = (a, b) else { continue };
            assert_no_growth(name, *a, *b, 16 * 1024 * 1024, 16);
        }
    }
    eprintln!(
        "soak: {requests:?} in {duration:?}; footprints {:?}",
        samples.last()
    );
    stack.assert_no_secrets();
}

/// What the workers' requests ended with.
#[derive(Debug, Default)]
struct Tally {
    answered: u64,
    /// By HTTP status (an SSE error event after a 200 counts as 200).
    errors: BTreeMap<u16, u64>,
    abandoned: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.answered += other.answered;
        self.abandoned += other.abandoned;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    fn total(&self) -> u64 {
        self.answered + self.abandoned + self.errors.values().sum::<u64>()
    }
}

/// Requests back to back until the deadline.
async fn worker(stack: &Stack, w: usize, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0;
    let mut history: Vec<(String, String)> = Vec::new();
    while Instant::now() < deadline {
        n += 1;
        let (kind, cut) = {
            let mut rng = rand::rng();
            (rng.random_range(0..10u8), rng.random_range(1..60u64))
        };
        if history.len() > 8 || kind == 0 {
            history.clear();
        }
        history.push(("user".into(), format!("worker {w} turn {n}")));
        let msgs: Vec<(&str, &str)> = history
            .iter()
            .map(|(r, c)| (r.as_str(), c.as_str()))
            .collect();
        match kind {
            0..=3 => {
                let out = stack
                    .chat(&test_support::openai::chat_body(&msgs, false, None))
                    .await;
                assert_result_or_error(&out, "soak chat");
                if out.status == 200 {
                    tally.answered += 1;
                } else {
                    *tally.errors.entry(out.status).or_default() += 1;
                    // A client backs off after an error instead of spinning on it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let answer = out.content().unwrap_or_default().to_owned();
                history.push(("assistant".into(), answer));
            }
            4..=7 => {
                let out = stack
                    .stream(&test_support::openai::chat_body(&msgs, true, None))
                    .await;
                assert_stream_result_or_error(&out, "soak stream");
                if out.error.is_none() {
                    tally.answered += 1;
                } else {
                    *tally.errors.entry(out.status).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                history.push(("assistant".into(), out.content));
            }
            _ => {
                // Abandoned mid-way.
                let body = test_support::openai::chat_body(&msgs, true, None);
                let req = stack
                    .http
                    .post(stack.gateway.chat_url())
                    .bearer_auth(API_KEY)
                    .json(&body);
                let _ = tokio::time::timeout(Duration::from_millis(cut), async {
                    if let Ok(resp) = req.send().await {
                        let _ = resp.bytes().await;
                    }
                })
                .await;
                history.clear();
                tally.abandoned += 1;
            }
        }
    }
    tally
}
