//! Issue 17: requests sent back to back on one keep-alive connection must not meet Nagle's
//! algorithm and delayed ACKs (a ~40 ms stall on a few percent of them). The client is what
//! agents use: Python's `http.client` shape, head and body in two writes, `TCP_NODELAY` on.
//! Its own test binary: cargo runs test binaries one after another, so the fault tests'
//! load does not pass for stalls here, and this test's load does not disturb their counts.

use fault_suite::{API_KEY, Stack, StackSpec, user};
use std::time::{Duration, Instant};
use test_support::http1::KeepAliveConnection;
use test_support::stack::GatewayOptions;

const REQUESTS: usize = 400;
/// A request slower than this against a zero-delay simulator is a 40 ms-class stall (debug
/// builds answer in a few milliseconds).
const STALL: Duration = Duration::from_millis(20);
/// Stalls tolerated for scheduling noise on a busy 2-core machine. Nagle + delayed ACK
/// stalled 15 of 400 here (5 of 200 in another run; the issue measured 5-12%).
const MAX_STALLS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_requests_on_one_connection_do_not_stall() {
    let stack = Stack::start(StackSpec {
        sidecar_log_level: "warn".to_owned(),
        gateway: GatewayOptions {
            api_keys: API_KEY.to_owned(),
            log_level: "warn".to_owned(),
            ..GatewayOptions::default()
        },
        ..StackSpec::default()
    })
    .await;
    let mut conn = KeepAliveConnection::connect(stack.gateway.port)
        .await
        .expect("connects to the gateway");
    let post = async |conn: &mut KeepAliveConnection, i: usize| {
        let body = serde_json::to_vec(&user(&format!("back to back {i}"))).expect("json");
        let t = Instant::now();
        let resp = conn
            .post_json("/v1/chat/completions", Some(API_KEY), &body)
            .await
            .expect("an answer on the same connection");
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        t.elapsed()
    };
    // Warm-up (first connections to the sidecar, allocator, lazy statics): not counted.
    for i in 0..5 {
        post(&mut conn, i).await;
    }
    let mut took = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        took.push(post(&mut conn, i).await);
    }
    let stalls: Vec<(usize, Duration)> = took
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, d)| *d > STALL)
        .collect();
    let mut sorted = took.clone();
    sorted.sort();
    eprintln!(
        "{REQUESTS} back-to-back requests: p50 {:?}, p99 {:?}, max {:?}, {} over {STALL:?}",
        sorted[REQUESTS / 2],
        sorted[REQUESTS * 99 / 100],
        sorted[REQUESTS - 1],
        stalls.len()
    );
    assert!(
        stalls.len() <= MAX_STALLS,
        "{} of {REQUESTS} back-to-back requests took over {STALL:?} (Nagle's algorithm meeting \
         delayed ACKs?): {stalls:?}",
        stalls.len()
    );
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
