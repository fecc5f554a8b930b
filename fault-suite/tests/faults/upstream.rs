//! Faults of the upstream (the simulator standing in for Lingma), switched through its
//! control API: crash mid-stream, hang, error frames, slow chunks, rate-limit refusals.

use fault_suite::{
    Stack, StackSpec, assert_result_or_error, assert_stream_result_or_error, user, user_stream,
};
use std::time::{Duration, Instant};
use test_support::stack::SimOptions;

/// A stack whose answers stream slowly enough to be interrupted mid-way.
fn streaming_spec() -> StackSpec {
    StackSpec {
        sim: SimOptions {
            chunks: 20,
            chunk_delay_ms: 50,
            ..SimOptions::default()
        },
        ..StackSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_crash_mid_stream_ends_open_streams_with_errors_and_recovers() {
    let mut stack = Stack::start(streaming_spec()).await;
    let mut streams = Vec::new();
    for i in 0..4 {
        let body = user_stream(&format!("long answer {i}"));
        streams.push(stack.spawn_stream(body));
    }
    // Let the streams start, then crash the simulator on the next chat.
    wait_for_sim_chats(&stack, 4).await;
    stack.sims[0]
        .control()
        .set_fault("crash", Some(1))
        .await
        .expect("set fault");
    let crash = stack.stream(&user_stream("this one crashes it")).await;
    assert_stream_result_or_error(&crash, "the crashing chat");
    for s in streams {
        let out = s.await.expect("join").expect("HTTP answer");
        assert_stream_result_or_error(&out, "a stream open during the crash");
        assert!(
            out.error.is_some(),
            "a stream open when the simulator died cannot complete"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.sims[0].is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !stack.sims[0].is_running(),
        "the crash fault should end the simulator process"
    );
    // While the simulator is down, requests fail cleanly.
    let down = stack.chat(&user("anyone there?")).await;
    assert_result_or_error(&down, "a request while the simulator is down");

    stack.sims[0].restart().await.expect("simulator restarts");
    stack.eventually_ok(Duration::from_secs(20)).await;
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

async fn wait_for_sim_chats(stack: &Stack, n: u64) {
    test_support::wait_until(Duration::from_secs(10), || async {
        stack.sims[0]
            .control()
            .stats()
            .await
            .ok()
            .and_then(|s| s["chats_in_flight"].as_u64())
            .is_some_and(|c| c >= n)
    })
    .await
    .expect("chats reach the simulator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_upstream_times_out_with_an_openai_error() {
    let stack = Stack::start(StackSpec::default()).await;
    // Until cleared: a chat that failed before any output may be retried, and the retry
    // must hang too.
    stack.sims[0]
        .control()
        .set_fault("hang", None)
        .await
        .expect("set fault");
    let started = Instant::now();
    let (plain_body, stream_body) = (user("hang please"), user_stream("hang please too"));
    let (plain, streamed) = tokio::join!(stack.chat(&plain_body), stack.stream(&stream_body));
    assert_result_or_error(&plain, "non-streaming chat on a hung upstream");
    assert_stream_result_or_error(&streamed, "streaming chat on a hung upstream");
    assert!(
        plain.status >= 500,
        "a hang cannot produce an answer: {}",
        plain.status
    );
    assert!(
        streamed.error.is_some(),
        "a hung stream must end with an error"
    );
    stack.sims[0]
        .control()
        .set_fault("none", None)
        .await
        .expect("clear fault");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the idle/RPC timeout (3 s here) must end a hung chat, took {:?}",
        started.elapsed()
    );
    stack.eventually_ok(Duration::from_secs(10)).await;
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

/// Every error-like fault of the simulator, one chat each: a result or an OpenAI error,
/// never a hang or a broken body, and the stack serves the next chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_frames_give_openai_errors_and_the_next_chat_works() {
    let stack = Stack::start(StackSpec::default()).await;
    let faults = [
        "error",
        "internal",
        "forbidden",
        "timeout",
        "filtered",
        "malformed_frame",
        "truncated_frame",
        "late_frames",
        "duplicate_request_id",
        "drop",
        "not_logged_in",
        "quota_exhausted",
        "unknown_model",
    ];
    for fault in faults {
        for streaming in [false, true] {
            // Twice: a non-streaming chat that failed before output may be retried once.
            stack.sims[0]
                .control()
                .set_fault(fault, Some(2))
                .await
                .expect("set fault");
            let what = format!("fault {fault} (stream: {streaming})");
            if streaming {
                let out = stack.stream(&user_stream(&what)).await;
                assert_stream_result_or_error(&out, &what);
            } else {
                let out = stack.chat(&user(&what)).await;
                assert_result_or_error(&out, &what);
            }
            stack.sims[0]
                .control()
                .set_fault("none", None)
                .await
                .expect("clear fault");
            if fault == "not_logged_in" || fault == "quota_exhausted" {
                // These may log the simulator out; log it back in for the next fault.
                let _ = stack.sims[0].control().post("/control/login").await;
            }
            stack.eventually_ok(Duration::from_secs(20)).await;
        }
    }
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_chunks_still_stream_completely() {
    let stack = Stack::start(StackSpec {
        sim: SimOptions {
            extra_args: vec![
                "--slow-first-token-ms".into(),
                "800".into(),
                "--slow-chunk-delay-ms".into(),
                "150".into(),
            ],
            ..SimOptions::default()
        },
        ..StackSpec::default()
    })
    .await;
    let fast = stack.chat(&user("reference answer")).await;
    assert_eq!(fast.status, 200);
    stack.sims[0]
        .control()
        .set_fault("slow", Some(1))
        .await
        .expect("set fault");
    let started = Instant::now();
    let slow = stack.stream(&user_stream("slow answer")).await;
    assert_stream_result_or_error(&slow, "slow stream");
    assert!(
        slow.error.is_none() && slow.done,
        "slow chunks are no error: {:?}",
        slow.error
    );
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the slow fault was not applied"
    );
    let ttft = slow.ttft.expect("a first token");
    assert!(
        ttft >= Duration::from_millis(700),
        "first token after the slow delay, got {ttft:?}"
    );
    assert!(
        slow.chunk_gaps
            .iter()
            .any(|g| *g >= Duration::from_millis(100)),
        "chunks are passed on as they come, not buffered: gaps {:?}",
        slow.chunk_gaps
    );
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refusals_become_429_openai_errors() {
    let stack = Stack::start(StackSpec::default()).await;
    stack.sims[0]
        .control()
        .set_fault("rate_limited", Some(4))
        .await
        .expect("set fault");
    let out = stack.chat(&user("rate limited")).await;
    assert_eq!(out.status, 429, "upstream 429 -> 429: {}", out.body);
    assert!(out.is_openai_error(), "{}", out.body);
    let streamed = stack.stream(&user_stream("rate limited stream")).await;
    assert_stream_result_or_error(&streamed, "rate-limited stream");
    assert!(streamed.error.is_some(), "a refused chat is no answer");
    stack.sims[0]
        .control()
        .set_fault("none", None)
        .await
        .expect("clear fault");
    stack.eventually_ok(Duration::from_secs(10)).await;
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
