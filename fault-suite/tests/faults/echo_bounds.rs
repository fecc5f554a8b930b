//! Echoed values are bounded (issue 14): a `model` name over 256 bytes is refused in each
//! surface's own error shape instead of being echoed in every chunk of the answer, and a
//! 400 quotes at most a short prefix of the offending value, never the whole of it.

use fault_suite::{API_KEY, Stack, StackSpec};
use serde_json::{Value, json};

/// A value far larger than any error message should be.
const HUGE: usize = 100_000;
/// An error body quoting a value must stay under this (it quotes at most 64 characters).
const MAX_ERROR_BODY: usize = 1_000;

struct Surface {
    path: &'static str,
    body: fn(&str) -> Value,
    /// Where the error message sits in the surface's error body.
    message: fn(&Value) -> Option<&str>,
}

const SURFACES: [Surface; 3] = [
    Surface {
        path: "/v1/chat/completions",
        body: |model| {
            json!({"model": model, "stream": true,
                   "messages": [{"role": "user", "content": "hello"}]})
        },
        message: openai_message,
    },
    Surface {
        path: "/v1/messages",
        body: |model| {
            json!({"model": model, "max_tokens": 64, "stream": true,
                   "messages": [{"role": "user", "content": "hello"}]})
        },
        message: |v| {
            (v["type"] == "error" && v["error"]["type"] == "invalid_request_error")
                .then(|| v["error"]["message"].as_str())
                .flatten()
        },
    },
    Surface {
        path: "/v1/responses",
        body: |model| json!({"model": model, "stream": true, "input": "hello"}),
        message: openai_message,
    },
];

fn openai_message(v: &Value) -> Option<&str> {
    (v["error"]["type"] == "invalid_request_error" && v["error"]["param"] == "model")
        .then(|| v["error"]["message"].as_str())
        .flatten()
}

async fn post(stack: &Stack, path: &str, body: &str) -> (u16, String) {
    let response = stack
        .http
        .post(format!("{}{path}", stack.gateway.base_url()))
        .bearer_auth(API_KEY)
        .header("x-api-key", API_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

async fn asks(stack: &Stack) -> u64 {
    let stats = stack.sims[0].control().stats().await.expect("sim stats");
    stats["asks_received"].as_u64().expect("asks_received")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_model_names_and_quoted_values_are_bounded_on_every_surface() {
    let stack = Stack::start(StackSpec::default()).await;
    let huge_model = "m".repeat(HUGE);
    let longest_allowed = "n".repeat(256);
    for surface in &SURFACES {
        let before = asks(&stack).await;
        // Over the bound: a 400 in the surface's shape, quoting a short prefix only.
        let body = (surface.body)(&huge_model).to_string();
        let (status, text) = post(&stack, surface.path, &body).await;
        assert_eq!(
            status,
            400,
            "{}: {}",
            surface.path,
            &text[..text.len().min(300)]
        );
        assert!(
            text.len() < MAX_ERROR_BODY,
            "{}: the error echoes {} bytes",
            surface.path,
            text.len()
        );
        let v: Value = serde_json::from_str(&text).expect("a JSON error body");
        let message = (surface.message)(&v)
            .unwrap_or_else(|| panic!("{}: not the surface's error shape: {v}", surface.path));
        assert!(message.contains("256"), "{}: {message}", surface.path);
        assert_eq!(
            asks(&stack).await,
            before,
            "{}: refused before Lingma",
            surface.path
        );

        // At the bound: served, and the name is what the chunks echo.
        let body = (surface.body)(&longest_allowed).to_string();
        let (status, text) = post(&stack, surface.path, &body).await;
        assert_eq!(status, 200, "{}: {text}", surface.path);
        assert!(
            text.contains(&longest_allowed),
            "{}: model echoed",
            surface.path
        );
        assert_eq!(
            asks(&stack).await,
            before + 1,
            "{}: served once",
            surface.path
        );
    }

    // A huge value of the wrong type: the parser's message quotes a prefix, not 100 KB.
    let huge_text = "x".repeat(HUGE);
    let wrong_typed = [
        (
            "/v1/chat/completions",
            json!({"messages": huge_text}).to_string(),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": huge_text, "content": "x"}]}).to_string(),
        ),
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 8, "messages": huge_text}).to_string(),
        ),
        (
            "/v1/messages",
            json!({"model": "m", "max_tokens": 8,
                   "messages": [{"role": huge_text, "content": "x"}]})
            .to_string(),
        ),
        (
            "/v1/responses",
            json!({"model": "m", "input": "hi", "store": huge_text}).to_string(),
        ),
    ];
    for (path, body) in wrong_typed {
        let (status, text) = post(&stack, path, &body).await;
        assert_eq!(status, 400, "{path}: {}", &text[..text.len().min(300)]);
        assert!(
            text.len() < MAX_ERROR_BODY,
            "{path}: the 400 quotes {} bytes: {}…",
            text.len(),
            &text[..300]
        );
    }
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
