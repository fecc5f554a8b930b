//! Mixed traffic with faults for SOAK_SECS seconds (20 here by default; `scripts/soak.sh`
//! runs 30 minutes, CI 2): streaming and not, multi-turn, abandoned streams, with upstream
//! faults on every instance, each armed for a few chats every half second (staggered, so
//! two instances never get the same fault at once). Every request gets a result or an
//! OpenAI error; fewer than 1% of requests get a 503 that no injected fault explains (a
//! 503 is explained when a fault that takes an instance's Lingma connection down was armed
//! while the request was under way); the gauges return to 0; the gateway's and sidecars'
//! RSS, threads and open files stay flat. The figures are printed to stderr (shown in CI
//! logs without `--nocapture`).

use fault_suite::{
    API_KEY, Footprint, Stack, StackSpec, assert_no_growth, assert_result_or_error,
    assert_stream_result_or_error,
};
use rand::Rng;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
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
/// The OpenAI `error.code`s each injected fault produces (docs/gateway.md, Failure
/// containment). A 503 (`unavailable`: the sidecar's Lingma is down; or
/// `no_upstream_available`: no sidecar usable) is explained only by a fault that takes an
/// instance's Lingma connection down: the sidecar reconnects and is unavailable meanwhile.
const PRODUCES: &[(&str, &[&str])] = &[
    // JSON-RPC error on `chat/ask`: Lingma refused the request (400, no code).
    ("error", &["-"]),
    ("rate_limited", &["upstream_rate_limited"]),
    (
        "drop",
        &["connection_lost", "unavailable", "no_upstream_available"],
    ),
    // `chat/finish` 500.
    ("internal", &["upstream_error"]),
    // Accepted, then silence: the sidecar's chat idle timeout.
    ("hang", &["upstream_timeout"]),
];
/// How long before a request a fault still explains its error: a fault fires at the
/// instance's next chat, and the sidecar's reconnect to Lingma follows with backoff.
const FAULT_WINDOW: Duration = Duration::from_secs(3);
/// Unexplained 503s allowed, in percent of all requests.
const MAX_UNEXPLAINED_503_PERCENT: f64 = 1.0;

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
            // Default ejection settings (3 failures, 10 s cooldown, at most 50% ejected):
            // only the instance's own faults count, and the floor keeps one sidecar in
            // rotation, so faults every 500 ms on every instance must not turn into 503s.
            gateway: GatewayOptions {
                max_in_flight: 0,
                api_keys: API_KEY.to_owned(),
                log_level: "debug".to_owned(),
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
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (stack, failures) = (stack.clone(), failures.clone());
        workers.spawn(async move { worker(&stack, w, deadline, &failures).await });
    }
    // Faults on every instance, staggered; footprints sampled as we go.
    let mut samples: Vec<Vec<(String, Option<Footprint>)>> = Vec::new();
    let mut injected: Vec<Injection> = Vec::new();
    let mut tick = 0u64;
    while Instant::now() < deadline {
        for (i, sim) in stack.sims.iter().enumerate() {
            let fault = FAULTS[(tick as usize + 3 * i) % FAULTS.len()];
            injected.push((Instant::now(), i, fault));
            let _ = sim.control().set_fault(fault, Some(2)).await;
        }
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
    let failures = std::mem::take(&mut *failures.lock().expect("failures"));
    let classes = classify(&failures, &injected, stack.sims.len());
    let total = requests.total().max(1);
    let unexplained_percent = classes.unexplained_503 as f64 * 100.0 / total as f64;
    report(&format!(
        "soak figures: {} requests in {duration:?} with faults on all {} instances ({} injections): \
         {} answered, {} abandoned, errors {:?}; 503s {} explained by an injected outage, {} unexplained ({unexplained_percent:.2}%, limit {MAX_UNEXPLAINED_503_PERCENT}%); \
         other errors no injected fault explains: {}; errors by code {:?}; gauges back to 0",
        requests.total(),
        stack.sims.len(),
        injected.len(),
        requests.answered,
        requests.abandoned,
        requests.errors,
        classes.explained_503,
        classes.unexplained_503,
        classes.unexplained_other,
        classes.by_code,
    ));
    assert!(
        unexplained_percent < MAX_UNEXPLAINED_503_PERCENT,
        "{} of {total} requests got a 503 no injected fault explains: {:?}",
        classes.unexplained_503,
        classes.unexplained_examples
    );
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

/// Not captured by the test harness: CI logs show the figures.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One error answer: when its request ran, its status and its OpenAI `error.code`
/// (an SSE error event after a 200 keeps status 200).
struct Failure {
    started: Instant,
    ended: Instant,
    status: u16,
    code: String,
}

impl Failure {
    fn of(started: Instant, status: u16, body: Option<&serde_json::Value>) -> Self {
        let code = body
            .and_then(|b| b["error"]["code"].as_str())
            .unwrap_or("-")
            .to_owned();
        Self {
            started,
            ended: Instant::now(),
            status,
            code,
        }
    }

    /// A 503, as a status or as the code of an SSE error event.
    fn is_503(&self) -> bool {
        self.status == 503 || matches!(self.code.as_str(), "unavailable" | "no_upstream_available")
    }
}

#[derive(Default)]
struct Classes {
    explained_503: u64,
    unexplained_503: u64,
    /// Errors of any status that no fault armed around their request produces.
    unexplained_other: u64,
    unexplained_examples: Vec<String>,
    by_code: BTreeMap<String, u64>,
}

/// When a fault was armed, on which instance.
type Injection = (Instant, usize, &'static str);

/// Sort the errors: explained when a fault that produces the error's code was armed from
/// `FAULT_WINDOW` before the request until it ended, on some instance; for
/// `no_upstream_available` (no sidecar usable at all) on every instance.
fn classify(failures: &[Failure], injected: &[Injection], instances: usize) -> Classes {
    let mut classes = Classes::default();
    for f in failures {
        *classes
            .by_code
            .entry(format!("{} {}", f.status, f.code))
            .or_default() += 1;
        let from = f.started.checked_sub(FAULT_WINDOW).unwrap_or(f.started);
        let hit = |instance: usize| {
            injected.iter().any(|(at, i, fault)| {
                *i == instance
                    && *at >= from
                    && *at <= f.ended
                    && PRODUCES
                        .iter()
                        .any(|(name, codes)| name == fault && codes.contains(&f.code.as_str()))
            })
        };
        let explained = if f.code == "no_upstream_available" {
            (0..instances).all(hit)
        } else {
            (0..instances).any(hit)
        };
        if explained {
            classes.explained_503 += u64::from(f.is_503());
        } else if !f.is_503() {
            classes.unexplained_other += 1;
        } else {
            classes.unexplained_503 += 1;
            if classes.unexplained_examples.len() < 10 {
                classes.unexplained_examples.push(format!(
                    "{} {} after {:?}",
                    f.status,
                    f.code,
                    f.ended - f.started
                ));
            }
        }
    }
    classes
}

/// Requests back to back until the deadline.
async fn worker(
    stack: &Stack,
    w: usize,
    deadline: Instant,
    failures: &Mutex<Vec<Failure>>,
) -> Tally {
    let record = |f: Failure| failures.lock().expect("failures").push(f);
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
                let started = Instant::now();
                let out = stack
                    .chat(&test_support::openai::chat_body(&msgs, false, None))
                    .await;
                assert_result_or_error(&out, "soak chat");
                if out.status == 200 {
                    tally.answered += 1;
                } else {
                    *tally.errors.entry(out.status).or_default() += 1;
                    record(Failure::of(started, out.status, Some(&out.body)));
                    // A client backs off after an error instead of spinning on it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let answer = out.content().unwrap_or_default().to_owned();
                history.push(("assistant".into(), answer));
            }
            4..=7 => {
                let started = Instant::now();
                let out = stack
                    .stream(&test_support::openai::chat_body(&msgs, true, None))
                    .await;
                assert_stream_result_or_error(&out, "soak stream");
                if out.error.is_none() {
                    tally.answered += 1;
                } else {
                    *tally.errors.entry(out.status).or_default() += 1;
                    record(Failure::of(started, out.status, out.error.as_ref()));
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
