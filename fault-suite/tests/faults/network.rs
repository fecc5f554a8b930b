//! Real network faults: the gateway and each sidecar (with its simulator) in their own
//! network namespace, the sidecars' links delayed, lossy, then cut mid-stream and healed
//! (`test_support::stack::netns`). The gateway must ride out 200 ms delay and 5% loss,
//! notice the partitioned sidecar within its keepalive bound, end that sidecar's open
//! streams with an error event, send new chats to the other sidecar, take the partitioned
//! one back once the link heals, and leave no request unanswered.
//!
//! Needs root (namespaces) and iproute2; elsewhere it prints `SKIPPED: ...` and returns
//! (and fails when `CI` is set: CI runs as root, so there a skip would hide a regression).
//! The figures go straight to stderr so they show in CI logs without `--nocapture`.

mod load;

use fault_suite::{API_KEY, Stack, assert_stream_result_or_error, user, user_stream};
use load::Load;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::Binaries;
use test_support::openai::{self, StreamOutcome};
use test_support::stack::netns::{self, NetLab};
use test_support::stack::{Gateway, GatewayOptions, Sidecar, SidecarOptions, Sim, SimOptions};

/// GATEWAY_MUX_KEEPALIVE_SEC in this test: a silent sidecar is closed after 3 periods of
/// silence, checked once a period, so it is noticed within 4 periods.
const KEEPALIVE_SEC: u64 = 1;
const DETECTION_BOUND: Duration = Duration::from_secs(4 * KEEPALIVE_SEC);
/// GATEWAY_IDLE_TIMEOUT_SEC: an open stream whose sidecar goes silent ends by then.
const IDLE_SEC: u64 = 3;
/// Slack for polling metrics every 100 ms and for scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);
/// After the heal: one connect attempt that was already under way (CONNECT_TIMEOUT, 5 s)
/// plus the longest reconnect backoff (5 s).
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
const PARTITIONED: &str = "sidecar-0";
const HEALTHY: &str = "sidecar-1";

/// Not captured by the test harness: CI logs show the figures and a skip.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_sidecar_is_noticed_failed_over_and_taken_back() {
    if let Some(why) = netns::unavailable() {
        // CI runs as root and must run it (as the promtool tests fail there when skipped).
        assert!(
            std::env::var_os("CI").is_none(),
            "the network-fault test cannot run in CI: {why}"
        );
        report(&format!(
            "SKIPPED: network-fault test (network namespaces): {why}"
        ));
        return;
    }
    let lab = NetLab::new(2).expect("namespaces and links");
    let stack = Arc::new(start_stack(&lab).await);
    report("network-fault test: gateway and 2 sidecars in their own network namespaces");
    let load = Load::start(&stack, 2);
    let link = lab.link(0);

    // 1. 200 ms each way and 5% loss each way: slow, but nothing fails or disconnects.
    link.impair(Duration::from_millis(200), 5.0);
    let degraded = degraded_phase(&stack).await;
    let (passed, dropped) = link.counts();
    report(&format!(
        "network: 200 ms + 5% loss on {PARTITIONED}'s link: {degraded}; frames passed {passed}, dropped {dropped}"
    ));
    assert!(
        dropped > 0,
        "the lossy link dropped nothing ({passed} passed)"
    );

    // 2. Partition mid-stream.
    let cut = partition_phase(&stack, &lab).await;
    report(&format!("network: partition: {cut}"));

    // 3. New chats go to the other sidecar.
    let before = chats_total(&stack.sidecars[1]).await;
    for i in 0..6 {
        let out = stack
            .chat(&user(&format!("during the partition {i}")))
            .await;
        assert_eq!(
            out.status, 200,
            "chat {i} during the partition: {}",
            out.body
        );
    }
    let served = chats_total(&stack.sidecars[1]).await - before;
    assert!(served >= 6.0, "{HEALTHY} served {served} of the 6 chats");

    // 4. Heal: the sidecar is taken back and serves again.
    lab.link(0).heal();
    let healed = Instant::now();
    let recovery = wait_gauge(
        &stack,
        "gateway_pool_instance_ready",
        PARTITIONED,
        1.0,
        RECOVERY_BOUND + SLACK,
    )
    .await
    .unwrap_or_else(|| panic!("{PARTITIONED} not back within {RECOVERY_BOUND:?} of the heal"));
    let taken_back = served_again(&stack).await;
    report(&format!(
        "network: heal: {PARTITIONED} ready again after {recovery:?} (bound {RECOVERY_BOUND:?}), served a chat {taken_back:?} after the heal"
    ));
    assert!(healed.elapsed() < Duration::from_secs(30));

    // 5. No request unanswered, failures only around the partition.
    let tally = load.stop().await;
    report(&format!("network: background load: {tally}"));
    tally.assert_answered(
        cut.started,
        cut.started + cut.detected + Duration::from_secs(IDLE_SEC) + SLACK,
    );

    lab.link(0).clear();
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
    report(&format!(
        "network figures: detection {:?} (bound {DETECTION_BOUND:?}), failover {:?}, open streams failed {} in at most {:?}, recovery {recovery:?}, requests answered {} failed {} unanswered 0",
        cut.detected,
        cut.stopped_routing,
        cut.failed_streams,
        cut.slowest_failure,
        tally.answered,
        tally.failed.len()
    ));
    drop(stack);
    drop(lab);
}

async fn start_stack(lab: &NetLab) -> Stack {
    let bins = Binaries::debug();
    let token = SidecarOptions::default().token;
    let (mut sims, mut sidecars) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let ns = Some(lab.sidecar_ns(i).to_owned());
        let sim = Sim::start(
            &bins.sim,
            SimOptions {
                // 40 pieces 50 ms apart: a stream lasts 2 s, long enough to be cut.
                chunks: 40,
                chunk_delay_ms: 50,
                netns: ns.clone(),
                ..SimOptions::default()
            },
        )
        .await
        .expect("simulator starts in its namespace");
        let sidecar = Sidecar::start(
            &bins.sidecar,
            &sim,
            SidecarOptions {
                name: format!("sidecar-{i}"),
                token: token.clone(),
                max_concurrent_chats: 16,
                log_level: "debug".into(),
                extra_env: vec![
                    ("SIDECAR_KEEPALIVE_SEC".into(), KEEPALIVE_SEC.to_string()),
                    ("LINGMA_CHAT_IDLE_TIMEOUT_SEC".into(), "5".into()),
                    ("LINGMA_RPC_TIMEOUT".into(), "5".into()),
                ],
                netns: ns,
                host: Some(lab.sidecar_addr(i)),
                ..SidecarOptions::default()
            },
        )
        .await
        .expect("sidecar ready in its namespace");
        sims.push(sim);
        sidecars.push(sidecar);
    }
    let refs: Vec<&Sidecar> = sidecars.iter().collect();
    let options = GatewayOptions {
        routing: "round-robin".into(),
        api_keys: API_KEY.into(),
        queue_timeout_sec: 2.0,
        log_level: "debug".into(),
        extra_env: vec![
            (
                "GATEWAY_MUX_KEEPALIVE_SEC".into(),
                KEEPALIVE_SEC.to_string(),
            ),
            ("GATEWAY_IDLE_TIMEOUT_SEC".into(), IDLE_SEC.to_string()),
            ("GATEWAY_START_TIMEOUT_SEC".into(), "3".into()),
            ("GATEWAY_SIDECAR_WRITE_TIMEOUT_SEC".into(), "2".into()),
            ("GATEWAY_EJECT_COOLDOWN_SEC".into(), "2".into()),
        ],
        netns: Some(lab.gateway_ns().to_owned()),
        host: Some(lab.gateway_addr()),
        ..GatewayOptions::default()
    }
    .in_front_of(&refs);
    let gateway = Gateway::start(&bins.gateway, options)
        .await
        .expect("gateway ready in its namespace");
    let stack = Stack {
        sims,
        sidecars,
        gateway,
        // No proxy from the environment: the namespaces' 10.x addresses are local.
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
    };
    let both = wait_until_sum(
        &stack,
        "gateway_pool_instance_ready",
        2.0,
        Duration::from_secs(15),
    )
    .await;
    assert!(both, "both sidecars in rotation");
    stack
}

/// Eight 2-second streams, four at a time, over the impaired link and the healthy one:
/// all complete, and the impaired sidecar's connection never drops.
async fn degraded_phase(stack: &Stack) -> String {
    let served_before = chats_total(&stack.sidecars[0]).await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for round in 0..2 {
        let handles: Vec<_> = (0..4)
            .map(|i| stack.spawn_stream(user_stream(&format!("degraded {round}.{i}"))))
            .collect();
        for h in handles {
            let out = h
                .await
                .expect("task")
                .expect("the gateway answers over HTTP");
            assert_stream_result_or_error(&out, "degraded link");
            assert!(
                out.error.is_none() && out.done,
                "a chat failed on a slow, lossy link: {:?}",
                out.error
            );
            slowest = slowest.max(out.total);
        }
    }
    let served = chats_total(&stack.sidecars[0]).await - served_before;
    assert!(
        served >= 2.0,
        "{PARTITIONED} served {served} chats on its degraded link"
    );
    let m = stack.gateway.metrics().await.expect("metrics");
    assert_eq!(
        m.sum_where("gateway_pool_ejections_total", "name", PARTITIONED),
        0.0,
        "delay and loss are not a failure"
    );
    assert_eq!(
        m.sum_where("gateway_pool_instance_connected", "name", PARTITIONED),
        1.0,
        "delay and loss are not a partition"
    );
    format!(
        "8 streams all complete in {:?}, slowest {slowest:?}, {served} on {PARTITIONED}, no ejection or disconnect",
        started.elapsed()
    )
}

/// What the partition did.
struct Cut {
    started: Instant,
    /// Partition to the mux connection closed (`gateway_pool_instance_connected` 0).
    detected: Duration,
    /// Partition to the sidecar out of rotation (`gateway_pool_instance_ready` 0).
    stopped_routing: Duration,
    failed_streams: usize,
    completed_streams: usize,
    slowest_failure: Duration,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "out of rotation after {:?}, connection closed after {:?} (bound {DETECTION_BOUND:?}); open streams: {} failed with an error event within {:?} of the cut, {} completed",
            self.stopped_routing,
            self.detected,
            self.failed_streams,
            self.slowest_failure,
            self.completed_streams
        )
    }
}

/// Eight streams open on both sidecars; 1 s in, the first sidecar's link drops every
/// frame. Its streams end with an error event, the others complete, and the gateway
/// closes its connection within the keepalive bound.
async fn partition_phase(stack: &Stack, lab: &NetLab) -> Cut {
    let handles: Vec<_> = (0..8)
        .map(|i| timed_stream(stack, user_stream(&format!("cut mid-stream {i}"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let started = Instant::now();
    lab.link(0).partition();
    let stopped_routing = wait_gauge(
        stack,
        "gateway_pool_instance_ready",
        PARTITIONED,
        0.0,
        DETECTION_BOUND + SLACK,
    );
    let detected = wait_gauge(
        stack,
        "gateway_pool_instance_connected",
        PARTITIONED,
        0.0,
        DETECTION_BOUND + SLACK,
    );
    let (stopped_routing, detected) = tokio::join!(stopped_routing, detected);
    let detected = detected.unwrap_or_else(|| {
        panic!(
            "the partition was not noticed within {DETECTION_BOUND:?}; gateway log:\n{}",
            stack.gateway.output()
        )
    });
    let stopped_routing = stopped_routing.unwrap_or(detected);
    let (mut failed, mut completed, mut slowest_failure) = (0, 0, Duration::ZERO);
    for h in handles {
        let (out, ended) = h.await.expect("task");
        let out = out.expect("the gateway answers over HTTP");
        assert_stream_result_or_error(&out, "stream across the partition");
        if out.error.is_some() {
            failed += 1;
            let after = ended.saturating_duration_since(started);
            slowest_failure = slowest_failure.max(after);
            assert!(
                after <= Duration::from_secs(IDLE_SEC).max(DETECTION_BOUND) + SLACK,
                "a cut stream took {after:?} to fail: {:?}",
                out.error
            );
        } else {
            completed += 1;
        }
    }
    assert!(failed >= 1, "no open stream was on the partitioned sidecar");
    assert!(
        completed >= 1,
        "the healthy sidecar's streams were hurt too"
    );
    Cut {
        started,
        detected,
        stopped_routing,
        failed_streams: failed,
        completed_streams: completed,
        slowest_failure,
    }
}

/// A stream on its own task, with the instant it ended.
fn timed_stream(
    stack: &Stack,
    body: serde_json::Value,
) -> tokio::task::JoinHandle<(anyhow::Result<StreamOutcome>, Instant)> {
    let (http, url) = (stack.http.clone(), stack.gateway.chat_url());
    tokio::spawn(async move {
        let out = openai::post_stream(&http, &url, Some(API_KEY), &body, Instant::now()).await;
        (out, Instant::now())
    })
}

/// Chats until the healed sidecar serves one; how long after the first try that took.
async fn served_again(stack: &Stack) -> Duration {
    let started = Instant::now();
    let before = chats_total(&stack.sidecars[0]).await;
    for i in 0..10 {
        let out = stack.chat(&user(&format!("after the heal {i}"))).await;
        assert_eq!(out.status, 200, "chat {i} after the heal: {}", out.body);
        if chats_total(&stack.sidecars[0]).await > before {
            return started.elapsed();
        }
    }
    panic!("{PARTITIONED} served none of 10 chats after it was back");
}

/// The sidecar's chat count, read across its link, which may be the lossy one: a scrape
/// whose SYN or last segment is lost twice in a row outlasts its 5 s timeout (seen in CI),
/// so a failed scrape is retried.
async fn chats_total(sidecar: &Sidecar) -> f64 {
    let mut last_error = None;
    for _ in 0..4 {
        match sidecar.metrics().await {
            Ok(m) => return m.sum("sidecar_chats_total").unwrap_or(0.0),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("sidecar metrics, 4 tries: {last_error:?}");
}

/// Poll the gateway's `metric{name=...}` until it is `value`; how long that took.
async fn wait_gauge(
    stack: &Stack,
    metric: &str,
    name: &str,
    value: f64,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(m) = stack.gateway.metrics().await
            && m.sum_where(metric, "name", name) == value
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn wait_until_sum(stack: &Stack, metric: &str, at_least: f64, within: Duration) -> bool {
    test_support::wait_until(within, || async {
        stack
            .gateway
            .metrics()
            .await
            .ok()
            .and_then(|m| m.sum(metric))
            .is_some_and(|n| n >= at_least)
    })
    .await
    .is_ok()
}
