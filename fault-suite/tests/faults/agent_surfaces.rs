//! The agent surfaces (`/v1/messages`, `/v1/responses`) under the same faults as chat
//! completions: clients that go away at random points of their streams free every slot and
//! stop the upstream chat; refused requests get the surface's own error shape and change
//! nothing; afterwards complete streams still end with the surface's closing event.

use fault_suite::{API_KEY, Stack, StackSpec};
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::stack::SimOptions;
use tokio::sync::Semaphore;

const STREAMS_PER_SURFACE: usize = 80;
const CONCURRENCY: usize = 16;

/// One agent surface: its path, a streaming body, and the event that closes a stream.
struct Surface {
    path: &'static str,
    body: fn(&str) -> Value,
    closing_event: &'static str,
}

const SURFACES: [Surface; 2] = [
    Surface {
        path: "/v1/messages",
        body: |text| {
            json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": true,
                   "messages": [{"role": "user", "content": text}]})
        },
        closing_event: "event: message_stop",
    },
    Surface {
        path: "/v1/responses",
        body: |text| json!({"model": "gpt-5-codex", "stream": true, "input": text}),
        closing_event: "event: response.completed",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_agent_streams_free_everything_and_stop_upstream() {
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
    for surface in &SURFACES {
        let url = Arc::new(format!("{}{}", stack.gateway.base_url(), surface.path));
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STREAMS_PER_SURFACE {
            let permit = limit.clone().acquire_owned().await.expect("semaphore open");
            let (http, url) = (stack.http.clone(), url.clone());
            let body = (surface.body)(&format!("abandoned {i}"));
            tasks.spawn(async move {
                let _permit = permit;
                abandon(&http, &url, &body).await;
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
            "{}: upstream chats of gone clients are stopped",
            surface.path
        );

        // Still serving: a complete stream ends with the surface's closing event.
        let text = post(&stack.http, &url, &(surface.body)("still fine?"))
            .await
            .text()
            .await
            .expect("stream body");
        assert!(
            text.contains(surface.closing_event),
            "{}: no closing event in\n{text}",
            surface.path
        );
    }
    stack.assert_no_secrets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_agent_requests_use_their_own_shape_and_change_nothing() {
    let stack = Stack::start(StackSpec::default()).await;
    let base = stack.gateway.base_url();
    let asks_before = asks(&stack).await;

    // Anthropic: an image block is refused with Anthropic's error body.
    let image = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
        ]}
    ]});
    let resp = post(&stack.http, &format!("{base}/v1/messages"), &image).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");

    // Responses: an unknown previous_response_id is an OpenAI-shaped 404, never a session.
    let unknown = json!({"model": "gpt-5-codex", "input": "hi",
                         "previous_response_id": "resp_does_not_exist"});
    let resp = post(&stack.http, &format!("{base}/v1/responses"), &unknown).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");

    // Neither reached Lingma, and nothing is left in flight.
    assert_eq!(
        asks(&stack).await,
        asks_before,
        "a refused request ran upstream"
    );
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    http.post(url)
        .bearer_auth(API_KEY)
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("HTTP answer")
}

/// Chats the simulator has accepted so far.
async fn asks(stack: &Stack) -> u64 {
    let stats = stack.sims[0].control().stats().await.expect("stats");
    stats["chats_total"].as_u64().unwrap_or(0)
}

/// A stream the client gives up on: before the headers, after some milliseconds of the
/// body, or after a few events.
async fn abandon(http: &reqwest::Client, url: &str, body: &Value) {
    let (mode, cut) = {
        let mut rng = rand::rng();
        (rng.random_range(0..3u8), rng.random_range(0..40u64))
    };
    let request = http.post(url).bearer_auth(API_KEY).json(body);
    match mode {
        0 => {
            let _ = tokio::time::timeout(Duration::from_millis(cut / 4), request.send()).await;
        }
        1 => {
            let Ok(resp) = request.send().await else {
                return;
            };
            let mut stream = resp.bytes_stream();
            let deadline = Instant::now() + Duration::from_millis(cut);
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout_at(deadline.into(), stream.next()).await
            {}
        }
        _ => {
            let Ok(resp) = request.send().await else {
                return;
            };
            let mut stream = resp.bytes_stream();
            for _ in 0..(cut % 8) {
                if stream.next().await.is_none() {
                    break;
                }
            }
        }
    }
}
