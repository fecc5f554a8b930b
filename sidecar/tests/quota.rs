//! Quota-aware account over the real mux WebSocket: a chat Lingma answers with a rate limit
//! or an exhausted quota pauses the account (`Status.paused` with the reason, `/readyz`,
//! metrics), chats meanwhile fail `unavailable` before Lingma sees them, and the sidecar
//! takes chats again when the pause is over. Pauses in a row grow; a success resets them.

mod common;

use common::*;
use mux_protocol::{ErrorKind, PauseReason, Role};
use std::time::{Duration, Instant};

/// A logged-in simulator and a sidecar whose first pause is 1 s (then 2 s, the cap).
async fn setup(extra: &[(&str, &str)]) -> (Sim, Sidecar, Mux, SimControl) {
    let sim = Sim::start_logged_in(&["--max-concurrent-chats", "0"]).await;
    let mut env: Vec<(&str, String)> = sim.attach_env();
    env.push(("SIDECAR_QUOTA_PAUSE_SEC", "1".into()));
    env.push(("SIDECAR_QUOTA_PAUSE_MAX_SEC", "2".into()));
    for (k, v) in extra {
        env.push((*k, (*v).to_owned()));
    }
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    mux.wait_status(|s| s.ready).await;
    let control = sim.control().clone();
    (sim, sidecar, mux, control)
}

fn ask(text: &str) -> mux_protocol::ChatRequest {
    request("k", vec![m(Role::User, text)])
}

async fn asks_received(control: &SimControl) -> u64 {
    control.stats().await.expect("sim stats")["asks_received"]
        .as_u64()
        .expect("asks_received")
}

#[tokio::test]
async fn an_exhausted_quota_pauses_the_account_then_it_rejoins() {
    let (_sim, sidecar, mux, control) = setup(&[]).await;
    control
        .set_fault("quota_exhausted", Some(1))
        .await
        .expect("sim control API");
    let limited = mux.chat(1, ask("use up the quota")).await;
    let (kind, message, before_output) = limited.error.expect("the limited chat fails");
    assert_eq!(kind, ErrorKind::RateLimited, "{message}");
    assert!(message.contains("quota"), "{message}");
    assert!(
        !before_output && limited.started.is_some(),
        "Lingma accepted that ask: it is not retried elsewhere"
    );

    let status = mux.wait_status(|s| s.paused.is_some()).await;
    let pause = status.paused.clone().expect("paused");
    assert_eq!(pause.reason, PauseReason::QuotaExhausted);
    assert_eq!(pause.pauses, 1);
    assert!(pause.retry_after_ms <= 1000, "{pause:?}");
    assert!(!status.ready, "a paused sidecar takes no chats");

    // While paused: refused at once, before Lingma sees the chat (retriable elsewhere).
    let before = asks_received(&control).await;
    let t = Instant::now();
    let refused = mux.chat(2, ask("anyone?")).await;
    let (kind, message, before_output) = refused.error.expect("refused while paused");
    assert_eq!(kind, ErrorKind::Unavailable, "{message}");
    assert!(before_output && refused.started.is_none());
    assert!(kind.retriable_elsewhere());
    assert!(t.elapsed() < Duration::from_millis(900), "no queueing");
    assert_eq!(asks_received(&control).await, before, "Lingma never saw it");

    // The probe stays 200 (the pod is fine) and says why chats are not taken.
    let (code, body) = sidecar.get("/readyz", None).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json["ready"], false, "{body}");
    assert_eq!(json["paused"]["reason"], "quota_exhausted", "{body}");
    // The operator's question (bearer token): logged in, and the pause next to it.
    let (code, body) = sidecar.get("/login/status", Some(TOKEN)).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json["state"], "logged_in", "{body}");
    assert_eq!(json["paused"]["reason"], "quota_exhausted", "{body}");
    assert_eq!(json["paused"]["pauses"], 1, "{body}");
    assert!(
        json["paused"]["retry_after_ms"].as_u64() <= Some(1000),
        "{body}"
    );
    assert_eq!(
        sidecar
            .metric("sidecar_account_paused{reason=\"quota_exhausted\"}")
            .await,
        1.0
    );
    assert_eq!(
        sidecar
            .metric("sidecar_account_pauses_total{reason=\"quota_exhausted\"}")
            .await,
        1.0
    );
    assert_eq!(sidecar.metric("sidecar_ready").await, 0.0);

    // The pause ends by itself; a Status without `paused` says so, and chats work again.
    let back = mux.wait_status(|s| s.ready && s.paused.is_none()).await;
    assert!(back.ready);
    let ok = mux.chat(3, ask("and now?")).await;
    assert!(ok.ok(), "{ok:?}");
    assert_eq!(
        sidecar
            .metric("sidecar_account_paused{reason=\"quota_exhausted\"}")
            .await,
        0.0
    );
    let (_, body) = sidecar.get("/readyz", None).await;
    assert!(body.contains("\"paused\":null"), "{body}");
    let (_, body) = sidecar.get("/login/status", Some(TOKEN)).await;
    assert_eq!(body, r#"{"state":"logged_in"}"#, "no pause, no field");
}

#[tokio::test]
async fn pauses_in_a_row_grow_and_a_success_starts_over() {
    let (_sim, _sidecar, mux, control) = setup(&[]).await;
    control
        .set_fault("rate_limited", None)
        .await
        .expect("sim control API");
    let mut id = 0;
    for expected in [1u32, 2] {
        // The probe after each pause meets the limit again.
        mux.wait_status(|s| s.ready).await;
        id += 1;
        let r = mux.chat(id, ask("still limited?")).await;
        assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::RateLimited));
        let status = mux.wait_status(|s| s.paused.is_some()).await;
        let pause = status.paused.expect("paused");
        assert_eq!(pause.reason, PauseReason::RateLimited);
        assert_eq!(pause.pauses, expected);
        let longest = if expected == 1 { 1000 } else { 2000 };
        assert!(
            pause.retry_after_ms <= longest && pause.retry_after_ms > longest / 2,
            "pause {expected}: {pause:?}"
        );
    }
    control.set_fault("none", None).await.expect("clear");
    mux.wait_status(|s| s.ready).await;
    id += 1;
    assert!(mux.chat(id, ask("recovered")).await.ok());
    // A new limit after a success is the first of a new streak.
    control
        .set_fault("rate_limited", Some(1))
        .await
        .expect("sim control API");
    id += 1;
    let r = mux.chat(id, ask("limited again")).await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::RateLimited));
    let status = mux.wait_status(|s| s.paused.is_some()).await;
    assert_eq!(status.paused.map(|p| p.pauses), Some(1));
}

#[tokio::test]
async fn with_pausing_off_each_limited_chat_fails_on_its_own() {
    let (_sim, sidecar, mux, control) = setup(&[("SIDECAR_QUOTA_PAUSE_SEC", "0")]).await;
    control
        .set_fault("rate_limited", Some(1))
        .await
        .expect("sim control API");
    let r = mux.chat(1, ask("limited")).await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::RateLimited));
    // No pause: the very next chat reaches Lingma and succeeds.
    let ok = mux.chat(2, ask("next")).await;
    assert!(ok.ok(), "{ok:?}");
    assert!(
        mux.status
            .borrow()
            .as_ref()
            .is_some_and(|s| s.paused.is_none())
    );
    assert_eq!(
        sidecar
            .metric("sidecar_account_pauses_total{reason=\"rate_limited\"}")
            .await,
        0.0
    );
}
