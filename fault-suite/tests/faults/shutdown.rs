//! Graceful shutdown with a deadline: on SIGTERM the gateway reports not ready at once,
//! lets open streams go on for GATEWAY_SHUTDOWN_GRACE_SEC, then ends them with an SSE
//! error event (not a cut socket) and exits.

use fault_suite::{API_KEY, Stack, StackSpec, assert_stream_result_or_error, user_stream};
use std::time::{Duration, Instant};
use test_support::stack::SimOptions;

const GRACE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_get_the_grace_period_then_an_error_event() {
    let base = StackSpec::default();
    let mut stack = Stack::start(StackSpec {
        // About 20 s of answer: far longer than the grace period.
        sim: SimOptions {
            chunks: 200,
            chunk_delay_ms: 100,
            ..SimOptions::default()
        },
        gateway: test_support::stack::GatewayOptions {
            extra_env: vec![("GATEWAY_SHUTDOWN_GRACE_SEC".into(), "2".into())],
            ..base.gateway.clone()
        },
        ..base
    })
    .await;
    let (http, url) = (stack.http.clone(), stack.gateway.chat_url());
    let stream = tokio::spawn(async move {
        let body = user_stream("a long answer, please");
        let out =
            test_support::openai::post_stream(&http, &url, Some(API_KEY), &body, Instant::now())
                .await
                .expect("HTTP answer");
        (out, Instant::now())
    });
    test_support::wait_until(Duration::from_secs(10), || async {
        stack.sims[0]
            .control()
            .stats()
            .await
            .ok()
            .and_then(|s| s["chats_in_flight"].as_u64())
            .is_some_and(|n| n >= 1)
    })
    .await
    .expect("the stream runs upstream");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = stack.gateway.pid().expect("gateway pid");
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());

    // Readiness flips first: /readyz stops saying 200 at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = reqwest::Client::new()
        .get(format!("{}/readyz", stack.gateway.base_url()))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(
        !matches!(ready, Ok(200)),
        "not ready once shutdown began: {ready:?}"
    );

    let (out, ended) = stream.await.expect("join");
    let after = ended.duration_since(signalled);
    eprintln!(
        "stream ended {after:?} after SIGTERM (grace {GRACE:?}); error: {:?}",
        out.error
    );
    assert_stream_result_or_error(&out, "a stream open at shutdown");
    assert!(
        out.error.is_some() && !out.done,
        "the stream ends with an error event, not a cut socket or a full answer"
    );
    assert!(
        after >= GRACE - Duration::from_millis(300),
        "the stream had its grace period: {after:?}"
    );
    assert!(
        after < GRACE + Duration::from_secs(6),
        "ended within the deadline: {after:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.gateway.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!stack.gateway.is_running(), "the gateway exits");
    stack.assert_no_secrets();
}
