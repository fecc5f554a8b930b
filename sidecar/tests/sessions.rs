//! The session map end to end: a follow-up turn continues the upstream session with
//! isReply=true and only the new message; an error on reuse invalidates and retries fresh;
//! scopes do not share sessions. (TTL and LRU eviction: unit tests in `src/sessions.rs`.)

mod common;

use common::*;
use mux_protocol::{ChatMessage, Role, SessionOutcome};

async fn setup() -> (Sim, Sidecar, Mux, SimControl) {
    let sim = Sim::start_logged_in(&["--max-concurrent-chats", "0"]).await;
    let mut env = sim.attach_env();
    // No account pause after a rate-limited turn: these tests send the next turn at once
    // (pauses: tests/quota.rs).
    env.push(("SIDECAR_QUOTA_PAUSE_SEC", "0".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    let control = sim.control().clone();
    (sim, sidecar, mux, control)
}

fn turn2(first_answer: &str) -> Vec<ChatMessage> {
    vec![
        m(Role::System, "be brief"),
        m(Role::User, "hello"),
        m(Role::Assistant, first_answer),
        m(Role::User, "and then?"),
    ]
}

fn turn1() -> Vec<ChatMessage> {
    vec![m(Role::System, "be brief"), m(Role::User, "hello")]
}

#[tokio::test]
async fn follow_up_continues_the_upstream_session() {
    let (_sim, sidecar, mux, control) = setup().await;
    let r1 = mux.chat(1, request("key-a", turn1())).await;
    assert!(r1.ok(), "{r1:?}");
    let (outcome1, session1) = r1.started.clone().expect("started");
    assert_eq!(outcome1, SessionOutcome::New);
    let ask1 = control
        .recent_asks()
        .await
        .expect("sim control API")
        .pop()
        .expect("turn 1 reached the sim");
    assert_eq!(ask1["isReply"], false);
    let q1 = ask1["questionText"].as_str().expect("text");
    assert!(
        q1.contains("be brief") && q1.contains("hello"),
        "flattened: {q1}"
    );

    // The client echoes the answer reformatted: the key ignores assistant turns.
    let echoed = format!("  {}\n", r1.content.trim());
    let r2 = mux.chat(2, request("key-a", turn2(&echoed))).await;
    assert!(r2.ok(), "{r2:?}");
    assert_eq!(r2.started, Some((SessionOutcome::Reused, session1.clone())));
    let ask2 = control
        .recent_asks()
        .await
        .expect("sim control API")
        .pop()
        .expect("turn 2 reached the sim");
    assert_eq!(ask2["isReply"], true);
    assert_eq!(ask2["questionText"], "and then?");
    assert_eq!(ask2["sessionId"].as_str(), Some(session1.as_str()));
    // The simulator's answer proves it remembered turn 1.
    assert!(r2.content.contains("turn 2"), "{}", r2.content);
    assert!(r2.content.contains("previous: \""), "{}", r2.content);
    assert_eq!(
        sidecar.metric("sidecar_session_cache_hits_total").await,
        1.0
    );

    // Turn 3 goes on in the same session.
    let mut t3 = turn2(&echoed);
    t3.push(m(Role::Assistant, &r2.content));
    t3.push(m(Role::User, "and finally?"));
    let r3 = mux.chat(3, request("key-a", t3)).await;
    assert_eq!(r3.started, Some((SessionOutcome::Reused, session1)));
    assert!(r3.content.contains("turn 3"), "{}", r3.content);
}

#[tokio::test]
async fn error_on_reuse_invalidates_and_retries_fresh_once() {
    let (_sim, sidecar, mux, control) = setup().await;
    let r1 = mux.chat(1, request("k", turn1())).await;
    assert!(r1.ok(), "{r1:?}");
    let session1 = r1.started.clone().expect("started").1;

    control
        .set_fault("error", Some(1))
        .await
        .expect("sim control API");
    let r2 = mux.chat(2, request("k", turn2(&r1.content))).await;
    assert!(r2.ok(), "retried as a fresh session: {r2:?}");
    let (outcome, session2) = r2.started.clone().expect("started");
    assert_eq!(outcome, SessionOutcome::New);
    assert_ne!(session2, session1);
    let asks = control.recent_asks().await.expect("sim control API");
    let failed = &asks[asks.len() - 2];
    let retried = &asks[asks.len() - 1];
    assert_eq!(failed["isReply"], true);
    assert_eq!(failed["sessionId"].as_str(), Some(session1.as_str()));
    assert_eq!(retried["isReply"], false);
    let text = retried["questionText"].as_str().expect("text");
    assert!(
        text.contains("hello") && text.contains("and then?") && text.contains("be brief"),
        "the retry carries the whole conversation: {text}"
    );
    assert!(
        r2.content.contains("turn 1"),
        "a fresh session: {}",
        r2.content
    );
    assert_eq!(
        sidecar.metric("sidecar_session_invalidations_total").await,
        1.0
    );

    // The old session is gone from the map; the new one is continued next.
    let mut t3 = turn2(&r1.content);
    t3.push(m(Role::Assistant, &r2.content));
    t3.push(m(Role::User, "third"));
    let r3 = mux.chat(3, request("k", t3)).await;
    assert_eq!(r3.started, Some((SessionOutcome::Reused, session2)));

    // A failure that already reached the gateway is not retried: it is reported.
    control
        .set_fault("internal", Some(1))
        .await
        .expect("sim control API");
    let r4 = mux
        .chat(4, request("k", vec![m(Role::User, "fresh question")]))
        .await;
    let (kind, message, _) = r4.error.expect("internal error reported");
    assert_eq!(kind, mux_protocol::ErrorKind::Upstream);
    assert!(!message.is_empty());
}

#[tokio::test]
async fn another_scope_does_not_share_the_session() {
    let (_sim, _sidecar, mux, control) = setup().await;
    let r1 = mux.chat(1, request("key-a", turn1())).await;
    assert!(r1.ok(), "{r1:?}");
    let r2 = mux.chat(2, request("key-b", turn2(&r1.content))).await;
    assert!(r2.ok(), "{r2:?}");
    assert_eq!(r2.started.as_ref().map(|s| s.0), Some(SessionOutcome::New));
    assert_ne!(r2.started.map(|s| s.1), r1.started.map(|s| s.1));
    let ask = control
        .recent_asks()
        .await
        .expect("sim control API")
        .pop()
        .expect("ask");
    assert_eq!(ask["isReply"], false);
    // Opting out per request also starts fresh.
    let mut req = request("key-a", turn2(&r1.content));
    req.session_reuse = false;
    let r3 = mux.chat(3, req).await;
    assert_eq!(r3.started.map(|s| s.0), Some(SessionOutcome::New));
}

#[tokio::test]
async fn failed_and_cancelled_turns_store_nothing() {
    let (_sim, sidecar, mux, control) = setup().await;
    control
        .set_fault("rate_limited", Some(1))
        .await
        .expect("sim control API");
    let r1 = mux.chat(1, request("k", turn1())).await;
    assert_eq!(
        r1.error.map(|e| e.0),
        Some(mux_protocol::ErrorKind::RateLimited)
    );
    // Turn 2 of a conversation whose turn 1 failed finds nothing to continue.
    let r2 = mux.chat(2, request("k", turn2("whatever"))).await;
    assert!(r2.ok(), "{r2:?}");
    assert_eq!(r2.started.map(|s| s.0), Some(SessionOutcome::New));
    assert_eq!(
        sidecar
            .metric("sidecar_upstream_errors_total{kind=\"rate_limited\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn filtered_and_refused_turns_map_and_store_nothing() {
    let (_sim, sidecar, mux, control) = setup().await;
    // Content filter: a finish, not an error, but not a turn to continue.
    control
        .set_fault("filtered", Some(1))
        .await
        .expect("sim control API");
    let r1 = mux.chat(1, request("k", turn1())).await;
    let (reason, _, _) = r1.finish.clone().expect("finished");
    assert_eq!(reason, mux_protocol::FinishReason::ContentFilter);
    let r2 = mux.chat(2, request("k", turn2(&r1.content))).await;
    assert_eq!(r2.started.map(|s| s.0), Some(SessionOutcome::New));

    // 403 from Lingma's cloud: an upstream auth error, counted by kind.
    control
        .set_fault("forbidden", Some(1))
        .await
        .expect("sim control API");
    let r3 = mux
        .chat(3, request("k", vec![m(Role::User, "forbidden?")]))
        .await;
    assert_eq!(
        r3.error.map(|e| e.0),
        Some(mux_protocol::ErrorKind::UpstreamAuth)
    );
    assert_eq!(
        sidecar
            .metric("sidecar_upstream_errors_total{kind=\"upstream_auth\"}")
            .await,
        1.0
    );
    // The login re-check it triggers finds the login intact: still ready.
    sidecar.wait_ready().await;
    assert_eq!(
        sidecar
            .metric("sidecar_chats_total{outcome=\"content_filter\"}")
            .await,
        1.0
    );
}

/// At most once upstream: once Lingma accepted the ask (`Started` goes out at once), a
/// failure is reported, never retried as a fresh session.
#[tokio::test]
async fn a_failure_after_the_ask_was_accepted_is_never_retried() {
    let (_sim, sidecar, mux, control) = setup().await;
    let r1 = mux.chat(1, request("k", turn1())).await;
    assert!(r1.ok(), "{r1:?}");
    let asks = |s: anyhow::Result<serde_json::Value>| {
        s.expect("sim control API")["asks_received"]
            .as_u64()
            .expect("asks_received")
    };
    for (id, fault) in [(2, "timeout"), (3, "internal")] {
        let before = asks(control.stats().await);
        // Armed for two chats: a retry would reach Lingma again and fail again.
        control
            .set_fault(fault, Some(2))
            .await
            .expect("sim control API");
        let r = mux.chat(id, request("k", turn2(&r1.content))).await;
        control
            .set_fault("none", None)
            .await
            .expect("sim control API");
        let (_, _, before_output) = r.error.clone().expect("the fault ends the chat");
        assert!(r.started.is_some(), "{fault}: Started before the failure");
        assert!(!before_output, "{fault}: the ask was accepted");
        assert_eq!(
            asks(control.stats().await),
            before + 1,
            "{fault}: one ask upstream, no fresh retry"
        );
    }
    assert_eq!(
        sidecar.metric("sidecar_session_invalidations_total").await,
        0.0
    );
}
