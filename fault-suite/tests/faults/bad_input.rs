//! Hostile and broken requests: malformed, huge and wrong-typed JSON, invalid UTF-8, header
//! abuse. Each gets a clear OpenAI error (never a panic or a dropped connection where an
//! answer is possible), and the gateway keeps serving.

use fault_suite::{API_KEY, Stack, StackSpec, WRONG_KEY, assert_result_or_error, user};
use serde_json::Value;
use std::time::Duration;
use test_support::stack::GatewayOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_BODY: usize = 64 * 1024;

async fn stack() -> Stack {
    Stack::start(StackSpec {
        gateway: GatewayOptions {
            max_in_flight: 0,
            api_keys: API_KEY.to_owned(),
            log_level: "debug".to_owned(),
            extra_env: vec![("GATEWAY_MAX_BODY_BYTES".into(), MAX_BODY.to_string())],
            ..GatewayOptions::default()
        },
        ..StackSpec::default()
    })
    .await
}

/// POST raw bytes with the right key; (status, parsed body).
async fn post_raw(stack: &Stack, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let resp = stack
        .http
        .post(stack.gateway.chat_url())
        .bearer_auth(API_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("HTTP answer");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn assert_openai_error(status: u16, body: &Value, expected: u16, what: &str) {
    assert_eq!(status, expected, "{what}: status, body {body}");
    assert!(
        test_support::openai::is_openai_error(body),
        "{what}: not an OpenAI error body: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_wrong_typed_json_get_400() {
    let stack = stack().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", b"".to_vec()),
        (
            "truncated JSON",
            br#"{"model":"org_auto","messages":[{"role":"user","content":"hi"#.to_vec(),
        ),
        ("not an object", br#"["model"]"#.to_vec()),
        ("a bare string", br#""hello""#.to_vec()),
        ("no messages", br#"{"model":"org_auto"}"#.to_vec()),
        (
            "messages not an array",
            br#"{"model":"x","messages":"hi"}"#.to_vec(),
        ),
        ("empty messages", br#"{"model":"x","messages":[]}"#.to_vec()),
        (
            "role not a string",
            br#"{"model":"x","messages":[{"role":5,"content":"hi"}]}"#.to_vec(),
        ),
        (
            "unknown role",
            br#"{"model":"x","messages":[{"role":"wizard","content":"hi"}]}"#.to_vec(),
        ),
        (
            "content an object",
            br#"{"model":"x","messages":[{"role":"user","content":{"a":1}}]}"#.to_vec(),
        ),
        (
            "content a number",
            br#"{"model":"x","messages":[{"role":"user","content":42}]}"#.to_vec(),
        ),
        (
            "stream not a bool",
            br#"{"model":"x","stream":"yes","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        ),
        (
            "n > 1",
            br#"{"model":"x","n":3,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        ),
        (
            "model a number",
            br#"{"model":7,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        ),
        (
            "NaN literal",
            br#"{"model":"x","temperature":NaN,"messages":[{"role":"user","content":"hi"}]}"#
                .to_vec(),
        ),
        (
            "trailing garbage",
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}]} xyz"#.to_vec(),
        ),
        ("deep nesting", {
            let mut v = br#"{"model":"x","metadata":"#.to_vec();
            v.extend(std::iter::repeat_n(b'[', 20_000));
            v
        }),
        ("invalid UTF-8 in a string", {
            let mut v = br#"{"model":"x","messages":[{"role":"user","content":"bad "#.to_vec();
            v.extend([0xff, 0xfe, 0xc3, 0x28]);
            v.extend(br#""}]}"#);
            v
        }),
        (
            "lone surrogate escape",
            br#"{"model":"x","messages":[{"role":"user","content":"\ud800"}]}"#.to_vec(),
        ),
        ("NUL bytes", b"{\"model\":\"x\",\0\0\0}".to_vec()),
    ];
    let mut wrong = Vec::new();
    for (what, body) in cases {
        let t = std::time::Instant::now();
        let (status, json) = post_raw(&stack, body, "application/json").await;
        eprintln!("{what}: {status} in {:?}", t.elapsed());
        if status != 400 || !test_support::openai::is_openai_error(&json) {
            wrong.push(format!(
                "{what}: {status} {}",
                json.to_string().chars().take(120).collect::<String>()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not a 400 OpenAI error:\n{}",
        wrong.join("\n")
    );
    // Sampling parameters Lingma cannot honour are ignored; a wrong type there may be
    // ignored too (the gateway's choice) or refused, never a crash or a non-OpenAI error.
    let body = br#"{"model":"x","temperature":"hot","messages":[{"role":"user","content":"hi"}]}"#
        .to_vec();
    let (status, json) = post_raw(&stack, body, "application/json").await;
    assert!(
        status == 200 || (status == 400 && test_support::openai::is_openai_error(&json)),
        "temperature a string: {status} {json}"
    );
    // Still serving, nothing left open.
    let ok = stack.chat(&user("after the garbage")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_get_413_and_accepted_extras_are_ignored() {
    let stack = stack().await;
    // Over GATEWAY_MAX_BODY_BYTES: 413, whatever the JSON.
    let big = "x".repeat(MAX_BODY + 1);
    let body = serde_json::to_vec(&user(&big)).expect("json");
    let (status, json) = post_raw(&stack, body, "application/json").await;
    assert_openai_error(status, &json, 413, "body over the limit");
    // Declared huge but never sent in full: refused on the header, not buffered.
    let (status, head) = raw_exchange(
        &stack,
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: 999999999\r\n\r\n{{"
        )
        .into_bytes(),
    )
    .await;
    assert!(
        status == Some(413) || status.is_none(),
        "declared huge body: {status:?} {head}"
    );
    // The whole schema with unknown fields is accepted (just under the limit is fine too).
    let full = serde_json::json!({
        "model": "gpt-4o", "temperature": 0.2, "top_p": 1, "max_tokens": 50,
        "max_completion_tokens": 50, "stop": ["\n\n"], "user": "u-1", "metadata": {"a": "b"},
        "response_format": {"type": "text"}, "tools": [], "tool_choice": "none",
        "stream_options": {"include_usage": true}, "some_future_field": {"x": [1, 2]},
        "messages": [
            {"role": "system", "content": "s"}, {"role": "developer", "content": null},
            {"role": "user", "content": [{"type": "text", "text": "x".repeat(MAX_BODY / 2)}]},
        ],
    });
    let out = stack.chat(&full).await;
    assert_result_or_error(&out, "full schema");
    assert_eq!(out.status, 200, "{}", out.body);
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

/// Send raw bytes, read what comes back within 5 s; (status, head of the response).
async fn raw_exchange(stack: &Stack, request: Vec<u8>) -> (Option<u16>, String) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", stack.gateway.port))
        .await
        .expect("connect");
    let _ = conn.write_all(&request).await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok());
    (status, text.chars().take(300).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_abuse_is_refused_cleanly() {
    let mut stack = stack().await;
    let body = serde_json::to_string(&user("hi")).expect("json");
    let request = |headers: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    // Auth: missing, wrong, empty, wrong scheme, non-ASCII bytes -> 401 OpenAI error.
    for (what, headers) in [
        ("no key", String::new()),
        (
            "wrong key",
            format!("authorization: Bearer {WRONG_KEY}\r\n"),
        ),
        ("empty bearer", "authorization: Bearer \r\n".to_owned()),
        (
            "basic scheme",
            format!("authorization: Basic {API_KEY}\r\n"),
        ),
        (
            "key with a suffix",
            format!("authorization: Bearer {API_KEY}x\r\n"),
        ),
    ] {
        let (status, head) = raw_exchange(&stack, request(&headers)).await;
        assert_eq!(status, Some(401), "{what}: {head}");
    }
    let mut non_ascii = b"authorization: Bearer ".to_vec();
    non_ascii.extend([0xff, 0xfe, b'k', b'\r', b'\n']);
    let mut req = request("").to_vec();
    let at = req
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("request line")
        + 2;
    req.splice(at..at, non_ascii);
    let (status, head) = raw_exchange(&stack, req).await;
    assert!(
        matches!(status, Some(400) | Some(401)),
        "non-ASCII authorization: {head}"
    );

    // Headers past any sane limit (1 MiB; hyper refuses ~400 KiB), many headers, a huge
    // x-request-id, control characters in a header value.
    let huge = format!(
        "x-filler: {}\r\nauthorization: Bearer {API_KEY}\r\n",
        "a".repeat(1 << 20)
    );
    let (status, head) = raw_exchange(&stack, request(&huge)).await;
    assert!(
        status.is_none() || matches!(status, Some(400) | Some(413) | Some(431)),
        "huge header: {head}"
    );
    let many: String = (0..5000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, head) = raw_exchange(
        &stack,
        request(&format!("{many}authorization: Bearer {API_KEY}\r\n")),
    )
    .await;
    assert!(
        status.is_none() || matches!(status, Some(400) | Some(413) | Some(431)),
        "many headers: {head}"
    );
    let long_id = format!(
        "x-request-id: {}\r\nauthorization: Bearer {API_KEY}\r\n",
        "r".repeat(6000)
    );
    let (status, head) = raw_exchange(&stack, request(&long_id)).await;
    assert!(
        status.is_some_and(|s| s == 200 || s == 400 || s == 431),
        "long x-request-id: {head}"
    );
    assert!(
        head.len() < 8000,
        "a huge x-request-id must not be echoed whole"
    );
    let ctl = format!("x-request-id: a\u{1}b\r\nauthorization: Bearer {API_KEY}\r\n");
    let (status, head) = raw_exchange(&stack, request(&ctl)).await;
    assert!(
        status.is_some(),
        "control character in a header: no answer: {head}"
    );
    // A body shorter than its content-length, then the client leaves.
    let mut short = request(&format!("authorization: Bearer {API_KEY}\r\n"));
    short.truncate(short.len() - 5);
    let _ = raw_exchange(&stack, short).await;
    // Wrong content type with a JSON body: either accepted or an OpenAI error.
    let (status, json) = post_raw(&stack, body.clone().into_bytes(), "text/plain").await;
    assert!(
        status == 200 || (status >= 400 && test_support::openai::is_openai_error(&json)),
        "text/plain: {status} {json}"
    );

    // Still healthy and serving.
    let ok = stack.chat(&user("after the abuse")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(stack.gateway.is_running(), "the gateway survived");
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
