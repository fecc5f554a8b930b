//! Clients that go away at random points of 1,000 streams (before the headers, after some
//! chunks, right before the end), in rounds: every slot and stream is freed, and memory,
//! threads and open files do not grow from round to round.

use fault_suite::{Stack, StackSpec, assert_no_growth, assert_stream_result_or_error, user_stream};
use futures_util::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::stack::SimOptions;
use tokio::sync::Semaphore;

const ROUNDS: usize = 4;
const STREAMS_PER_ROUND: usize = 250;
const CONCURRENCY: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnects_at_random_points_of_1000_streams() {
    let stack = Stack::start(StackSpec {
        sim: SimOptions {
            chunks: 10,
            chunk_delay_ms: 3,
            max_concurrent_chats: 0,
            ..SimOptions::default()
        },
        sidecar_concurrency: 1000,
        ..StackSpec::default()
    })
    .await;
    let url = Arc::new(stack.gateway.chat_url());
    // No idle keep-alive connections: how many a pool keeps between rounds depends on
    // scheduling, and each is an open file of the gateway's, which would hide (or fake) a
    // leak in the comparison below.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let mut after_round = Vec::new();
    for round in 0..ROUNDS {
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STREAMS_PER_ROUND {
            let permit = limit.clone().acquire_owned().await.expect("semaphore open");
            let (http, url) = (http.clone(), url.clone());
            tasks.spawn(async move {
                let _permit = permit;
                one_stream(&http, &url, round * STREAMS_PER_ROUND + i).await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("a stream task panicked");
        }
        stack.assert_quiescent().await;
        let sim_open =
            stack.sims[0].control().stats().await.expect("stats")["chats_in_flight"].as_u64();
        assert_eq!(
            sim_open,
            Some(0),
            "upstream chats of gone clients are stopped"
        );
        after_round.push(stack.footprints());
    }
    // Round 1 warms allocators and pools; compare round 2 with the last.
    let (first, last) = (&after_round[1], &after_round[ROUNDS - 1]);
    for ((name, a), (_, b)) in first.iter().zip(last) {
        let (Some(a), Some(b)) = (a, b) else { continue };
        assert_no_growth(name, *a, *b, 8 * 1024 * 1024, 8);
    }
    // The stack still serves complete streams.
    let out = stack.stream(&user_stream("still fine?")).await;
    assert!(out.done && out.error.is_none(), "{:?}", out.error);
    stack.assert_no_secrets();
}

/// One stream that the client abandons at a random point (or, one time in five, reads to
/// the end and checks).
async fn one_stream(http: &reqwest::Client, url: &str, i: usize) {
    let (mode, cut) = {
        let mut rng = rand::rng();
        (rng.random_range(0..5u8), rng.random_range(0..40u64))
    };
    let body = user_stream(&format!("stream {i}"));
    let request = http.post(url).bearer_auth(fault_suite::API_KEY).json(&body);
    match mode {
        // Gone before the response headers.
        0 => {
            let _ = tokio::time::timeout(Duration::from_millis(cut / 4), request.send()).await;
        }
        // Gone after some milliseconds of the body.
        1 | 2 => {
            let Ok(resp) = request.send().await else {
                return;
            };
            let mut body = resp.bytes_stream();
            let deadline = Instant::now() + Duration::from_millis(cut);
            while Instant::now() < deadline {
                match tokio::time::timeout_at(deadline.into(), body.next()).await {
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
        }
        // Gone after a number of chunks.
        3 => {
            let Ok(resp) = request.send().await else {
                return;
            };
            let mut body = resp.bytes_stream();
            for _ in 0..(cut % 12) {
                if body.next().await.is_none() {
                    break;
                }
            }
        }
        // Reads to the end.
        _ => {
            let out = test_support::openai::post_stream(
                http,
                url,
                Some(fault_suite::API_KEY),
                &body,
                Instant::now(),
            )
            .await
            .expect("HTTP answer");
            assert_stream_result_or_error(&out, "a stream read to the end");
            assert!(out.done, "no fault is injected: the stream completes");
        }
    }
}
