//! More requests than slots: the ones admitted complete, the others wait at most the queue
//! timeout and get 429 with Retry-After and an OpenAI error body.

use fault_suite::{API_KEY, Stack, StackSpec, assert_result_or_error, user};
use std::time::{Duration, Instant};
use test_support::stack::{GatewayOptions, SimOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_under_overload() {
    let stack = Stack::start(StackSpec {
        sim: SimOptions {
            first_token_delay_ms: 2500,
            max_concurrent_chats: 0,
            ..SimOptions::default()
        },
        gateway: GatewayOptions {
            max_in_flight: 2,
            queue_timeout_sec: 1.0,
            api_keys: API_KEY.to_owned(),
            log_level: "debug".to_owned(),
            ..GatewayOptions::default()
        },
        ..StackSpec::default()
    })
    .await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (http, url) = (stack.http.clone(), stack.gateway.chat_url());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let out = test_support::openai::post_chat(
                &http,
                &url,
                Some(API_KEY),
                &user(&format!("overload {i}")),
            )
            .await
            .expect("HTTP answer");
            (out, t.elapsed())
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (out, took) = t.await.expect("join");
        assert_result_or_error(&out, "a request under overload");
        match out.status {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert!(out.retry_after.is_some(), "429 carries Retry-After");
                assert!(
                    took >= Duration::from_millis(900),
                    "refused before the queue timeout: {took:?}"
                );
                assert!(
                    took < Duration::from_millis(2400),
                    "waited well past the 1 s queue timeout: {took:?}"
                );
            }
            other => panic!("unexpected status {other}: {}", out.body),
        }
    }
    assert_eq!(ok, 2, "exactly the admitted requests complete");
    assert_eq!(refused, 8);
    assert!(started.elapsed() < Duration::from_secs(10));
    let rejected = stack
        .gateway
        .metrics()
        .await
        .expect("metrics")
        .sum("gateway_rejected_total")
        .unwrap_or(0.0);
    assert!(rejected >= 8.0, "rejections are counted: {rejected}");
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
