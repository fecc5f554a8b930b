//! Failures before output: retry once on another sidecar, passive ejection after
//! consecutive failures, and 503 when no sidecar can take a chat. Real processes:
//! lingma-sim (test double of Lingma) + sidecar + gateway.

mod common;

use common::*;
use serde_json::Value;

/// The sidecar rendezvous picks for this first turn (asked once, fault-free).
async fn target_of(gw: &GatewayProc, text: &str) -> String {
    let resp = gw.chat(user(text)).await;
    assert_eq!(resp.status(), 200);
    header(&resp, "x-lingma-sidecar")
}

#[tokio::test]
async fn failure_before_output_retries_once_elsewhere_then_ejects() {
    let a = start_sidecar("sc-a", &["--chunks", "3"]).await;
    let b = start_sidecar("sc-b", &["--chunks", "3"]).await;
    let gw = start_gateway(
        &sidecar_list(&[&a, &b]),
        &[
            ("GATEWAY_EJECT_FAILURES", "2"),
            ("GATEWAY_EJECT_COOLDOWN_SEC", "60"),
        ],
    )
    .await;
    gw.wait_usable(2).await;

    let question = "which sidecar am I on";
    let target = target_of(&gw, question).await;
    let (bad, good) = if target == a.name { (&a, &b) } else { (&b, &a) };
    // An instance fault that proves the ask never ran (the account is logged out): a
    // refusal of the prompt itself (`error`) would be the request's fault, not retried.
    bad.sim
        .control()
        .set_fault("not_logged_in", None)
        .await
        .expect("sim control API");

    // Non-streaming: the failed first attempt is invisible to the client.
    let resp = gw.chat(user(question)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-lingma-sidecar"), good.name);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains(question))
    );
    assert_eq!(sample(&gw.metrics().await, "gateway_retries_total"), 1.0);

    // Streaming too: nothing was sent before `Started`, so it is retried the same way.
    let mut streamed = user(question);
    streamed["stream"] = Value::Bool(true);
    let resp = gw.chat(streamed).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-lingma-sidecar"), good.name);
    let text = resp.text().await.expect("body");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // Two consecutive failures ejected the bad sidecar: no more attempts on it.
    assert_eq!(gw.sidecar_state(&bad.name).await, "ejected");
    let metrics = gw.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            &format!("gateway_pool_instance_ready{{name=\"{}\"}}", bad.name)
        ),
        0.0
    );
    let asks_before =
        bad.sim.control().stats().await.expect("sim control API")["asks_received"].as_u64();
    let resp = gw.chat(user(question)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sample(&gw.metrics().await, "gateway_retries_total"), 2.0);
    assert_eq!(
        bad.sim.control().stats().await.expect("sim control API")["asks_received"].as_u64(),
        asks_before
    );
}

#[tokio::test]
async fn both_attempts_failing_gives_an_openai_error() {
    let a = start_sidecar("sc-x", &[]).await;
    let b = start_sidecar("sc-y", &[]).await;
    let gw = start_gateway(&sidecar_list(&[&a, &b]), &[("GATEWAY_EJECT_FAILURES", "0")]).await;
    gw.wait_usable(2).await;
    a.sim
        .control()
        .set_fault("not_logged_in", None)
        .await
        .expect("sim control API");
    b.sim
        .control()
        .set_fault("not_logged_in", None)
        .await
        .expect("sim control API");
    let resp = gw.chat(user("doomed")).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        sample(&gw.metrics().await, "gateway_retries_total"),
        1.0,
        "exactly one retry"
    );
}

/// No capacity is our JSON 503 on the chat, while the gateway stays ready (in its Service):
/// readiness means "serves and knows its pool", not "a sidecar is logged in".
#[tokio::test]
async fn no_reachable_sidecar_is_a_json_503_while_the_gateway_stays_ready() {
    let dead_port = test_support::free_port();
    let gw = start_gateway(&format!("ghost=ws://127.0.0.1:{dead_port}"), &[]).await;
    let ready = gw
        .http
        .get(gw.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), 200);
    let resp = gw.chat(user("anyone?")).await;
    assert_eq!(resp.status(), 503);
    assert!(!header(&resp, "x-request-id").is_empty());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "no_upstream_available");
}

#[tokio::test]
async fn wrong_sidecar_token_never_connects() {
    let a = start_sidecar("sc-t", &[]).await;
    let gw = start_gateway(&sidecar_list(&[&a]), &[("SIDECAR_TOKEN", "wrong-token")]).await;
    // Asserting an absence: let a few reconnect attempts (100 ms backoff and up) fail.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(gw.sidecar_state("sc-t").await, "connecting");
    assert_eq!(gw.chat(user("x")).await.status(), 503);
    assert!(
        !gw.gateway.output().contains("wrong-token"),
        "token in a log line"
    );
}
