//! Quota-aware accounts through the whole stack: one of two instances runs out of quota
//! (the simulator's `quota_exhausted` for a period). The chat that meets the limit fails
//! with a 429; then the instance leaves the rotation (every request goes to the other one
//! and succeeds), its state and reason show in `/internal/stats` and the gateway's metrics,
//! and it rejoins once its account recovered and the sidecar's pause is over.

use fault_suite::{Stack, StackSpec, assert_result_or_error, user};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The sidecars' pause: longer than the simulator's quota outage, so the probe after the
/// pause meets a recovered account.
const PAUSE_SEC: &str = "3";
const OUTAGE: Duration = Duration::from_millis(1500);

/// `sidecars` instances whose pauses last PAUSE_SEC, serving.
async fn start(sidecars: usize) -> Stack {
    let mut spec = StackSpec {
        sidecars,
        ..StackSpec::default()
    };
    for name in ["SIDECAR_QUOTA_PAUSE_SEC", "SIDECAR_QUOTA_PAUSE_MAX_SEC"] {
        spec.sidecar_env.push((name.into(), PAUSE_SEC.into()));
    }
    let stack = Stack::start(spec).await;
    stack.eventually_ok(Duration::from_secs(10)).await;
    stack
}

async fn stats(stack: &Stack) -> Value {
    let g = &stack.gateway;
    stack
        .http
        .get(format!("{}/internal/stats", g.base_url()))
        .bearer_auth(&g.options.admin_token)
        .send()
        .await
        .expect("GET /internal/stats")
        .json()
        .await
        .expect("stats JSON")
}

/// The `/internal/stats` entry of one sidecar.
async fn entry(stack: &Stack, name: &str) -> Value {
    stats(stack).await["pool"]
        .as_array()
        .and_then(|pool| pool.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

async fn asks(stack: &Stack, i: usize) -> u64 {
    stack.sims[i].control().stats().await.expect("sim stats")["asks_received"]
        .as_u64()
        .unwrap_or(0)
}

async fn paused_gauge(stack: &Stack, name: &str) -> f64 {
    let m = stack.gateway.metrics().await.expect("gateway metrics");
    m.samples
        .iter()
        .filter(|s| {
            s.name == "gateway_pool_instance_paused"
                && s.label("name") == Some(name)
                && s.label("reason") == Some("quota_exhausted")
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_exhausted_instance_leaves_the_rotation_and_rejoins() {
    let stack = start(2).await;
    assert_eq!(entry(&stack, "sidecar-0").await["state"], "usable");

    // Account 0 runs out of quota for a while. Requests spread over both instances (a new
    // conversation each); the first one that lands on instance 0 fails with 429.
    stack.sims[0]
        .control()
        .set_fault_for("quota_exhausted", OUTAGE)
        .await
        .expect("arm the outage");
    let mut failures = Vec::new();
    let mut sent = 0;
    while entry(&stack, "sidecar-0").await["state"] != "paused" {
        assert!(sent < 40, "instance 0 never met its limit: {failures:?}");
        sent += 1;
        let out = stack.chat(&user(&format!("before the pause {sent}"))).await;
        assert_result_or_error(&out, "a request as the quota runs out");
        if out.status != 200 {
            failures.push((out.status, out.body.clone()));
        }
    }
    assert_eq!(
        failures.len(),
        1,
        "only the chat that met the limit: {failures:?}"
    );
    assert_eq!(
        failures[0].0, 429,
        "an exhausted quota is a 429: {failures:?}"
    );

    // Out of rotation, with its reason, in the stats and the metrics.
    let e = entry(&stack, "sidecar-0").await;
    assert_eq!(e["status"]["paused"]["reason"], "quota_exhausted", "{e}");
    assert_eq!(e["status"]["ready"], false, "{e}");
    assert_eq!(entry(&stack, "sidecar-1").await["state"], "usable");
    assert_eq!(paused_gauge(&stack, "sidecar-0").await, 1.0);
    assert_eq!(paused_gauge(&stack, "sidecar-1").await, 0.0);

    // While paused: every request goes to instance 1 and succeeds; instance 0's Lingma sees
    // nothing.
    let before = asks(&stack, 0).await;
    let started = Instant::now();
    for i in 0..8 {
        let out = stack.chat(&user(&format!("during the pause {i}"))).await;
        assert_eq!(out.status, 200, "{}", out.body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the requests must not wait for the pause to end"
    );
    assert_eq!(
        asks(&stack, 0).await,
        before,
        "a paused account gets no chat"
    );

    // Its account recovered and the pause ends: it rejoins and takes chats again.
    let ok = test_support::wait_until(Duration::from_secs(10), || async {
        entry(&stack, "sidecar-0").await["state"] == "usable"
    })
    .await;
    assert!(
        ok.is_ok(),
        "instance 0 never rejoined: {}",
        entry(&stack, "sidecar-0").await
    );
    assert_eq!(paused_gauge(&stack, "sidecar-0").await, 0.0);
    let before = asks(&stack, 0).await;
    for i in 0..20 {
        let out = stack.chat(&user(&format!("after the pause {i}"))).await;
        assert_eq!(out.status, 200, "{}", out.body);
    }
    assert!(
        asks(&stack, 0).await > before,
        "the rejoined instance takes its share again"
    );
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

/// With every account paused there is nothing to route to: the gateway answers 503 at
/// once, in each surface's shape, with the pause's remaining time in `Retry-After`, and
/// serves again when the pause ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_paused_is_a_503_with_the_pause_in_retry_after() {
    let stack = start(1).await;
    stack.sims[0]
        .control()
        .set_fault_for("quota_exhausted", OUTAGE)
        .await
        .expect("arm the outage");
    let met = stack.chat(&user("the one that meets the limit")).await;
    assert_eq!(met.status, 429, "{}", met.body);
    let paused = test_support::wait_until(Duration::from_secs(5), || async {
        entry(&stack, "sidecar-0").await["state"] == "paused"
    })
    .await;
    assert!(paused.is_ok(), "{}", entry(&stack, "sidecar-0").await);

    let started = Instant::now();
    let out = stack.chat(&user("while every account is paused")).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert_eq!(out.status, 503, "{}", out.body);
    assert_eq!(
        out.body["error"]["code"], "no_upstream_available",
        "{}",
        out.body
    );
    let pause: u64 = PAUSE_SEC.parse().expect("seconds");
    let retry_after = |v: Option<&str>| -> u64 {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Retry-After seconds, got {v:?}"))
    };
    let secs = retry_after(out.retry_after.as_deref());
    assert!(
        (1..=pause).contains(&secs),
        "Retry-After {secs} for a {pause} s pause"
    );

    let g = &stack.gateway;
    let anthropic = stack
        .http
        .post(format!("{}/v1/messages", g.base_url()))
        .header("x-api-key", fault_suite::API_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&serde_json::json!({
            "model": "auto",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "while paused, Anthropic"}],
        }))
        .send()
        .await
        .expect("POST /v1/messages");
    assert_eq!(anthropic.status().as_u16(), 529);
    let secs = retry_after(
        anthropic
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
    );
    assert!((1..=pause).contains(&secs), "Anthropic Retry-After {secs}");
    let body: Value = anthropic.json().await.expect("JSON error");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");

    let back = test_support::wait_until(Duration::from_secs(10), || async {
        stack.chat(&user("after the pause")).await.status == 200
    })
    .await;
    assert!(back.is_ok(), "served again after the pause");
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
