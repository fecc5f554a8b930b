//! The mux endpoint against the real sidecar and the real simulator (attach mode):
//! concurrency, per-stream bookkeeping, cancel, disconnect, auth.

mod common;

use common::*;
use mux_protocol::{ConnectionState, ErrorKind, LoginState, Role, ServerMessage, SessionOutcome};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_chats_each_get_their_own_answer() {
    let sim = Sim::start_logged_in(&["--max-concurrent-chats", "0", "--chunk-delay-ms", "5"]).await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_MAX_CONCURRENT_CHATS", "100".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    let status = mux.wait_status(|s| s.ready).await;
    assert_eq!(status.capacity, 100);
    assert_eq!(status.connection, ConnectionState::Ready);
    assert_eq!(status.login, LoginState::LoggedIn);
    assert!(!status.models.is_empty(), "models reported: {status:?}");

    let streams: Vec<_> = (0..100u64)
        .map(|i| {
            let req = request(
                "scope",
                vec![m(Role::User, &format!("question number {i}"))],
            );
            (i, mux.start(i, req))
        })
        .collect();
    for (i, rx) in streams {
        let r = collect(rx).await;
        assert!(r.ok(), "chat {i}: {r:?}");
        assert!(
            r.content
                .contains(&format!("you said \"question number {i}\"")),
            "chat {i} got someone else's answer: {}",
            r.content
        );
        let (_, usage, session_id) = r.finish.expect("finished");
        assert!(usage.estimated && usage.completion_tokens > 0);
        assert_eq!(r.started.map(|s| s.1), Some(session_id));
    }
    let stats = sim.control().stats().await.expect("sim control API");
    assert_eq!(stats["chats_total"], 100);
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
    assert_eq!(
        sidecar.metric("sidecar_chats_total{outcome=\"ok\"}").await,
        100.0
    );
}

#[tokio::test]
async fn open_streams_return_to_zero_after_cancel_and_disconnect() {
    let sim = Sim::start_logged_in(&[
        "--max-concurrent-chats",
        "0",
        "--chunks",
        "30",
        "--chunk-delay-ms",
        "50",
    ])
    .await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_MAX_CONCURRENT_CHATS", "10".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let control = sim.control();

    // Cancel: the stream ends with Cancelled, Lingma's chat is stopped, bookkeeping freed.
    let mux = sidecar.mux().await;
    let mut rx1 = mux.start(1, request("s", vec![m(Role::User, "long answer please")]));
    let mut rx2 = mux.start(2, request("s", vec![m(Role::User, "another long one")]));
    first_delta(&mut rx1).await;
    first_delta(&mut rx2).await;
    assert_eq!(sidecar.metric("sidecar_open_streams").await, 2.0);
    mux.cancel(1);
    let r1 = collect(rx1).await;
    let (kind, _, before_output) = r1.error.expect("cancelled stream ends with an error");
    assert_eq!(kind, ErrorKind::Cancelled);
    assert!(!before_output);
    sidecar.wait_metric("sidecar_open_streams", 1.0).await;

    // Disconnect mid-stream: the remaining stream is freed and stopped upstream.
    drop(rx2);
    drop(mux);
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
    test_support::wait_until(WAIT, || async {
        control.stats().await.expect("sim control API")["chats_in_flight"].as_u64() == Some(0)
    })
    .await
    .expect("chats stopped upstream (chat/stop sent)");
    assert_eq!(
        sidecar
            .metric("sidecar_chats_total{outcome=\"cancelled\"}")
            .await,
        2.0
    );

    // Cancel while queued for a slot, and finish normally: both freed too.
    let mux = sidecar.mux().await;
    let r = mux
        .chat(3, request("s", vec![m(Role::User, "short")]))
        .await;
    assert!(r.ok(), "{r:?}");
    mux.cancel(999); // unknown stream: ignored
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
}

#[tokio::test]
async fn cancel_while_waiting_for_a_slot_frees_the_queue() {
    let sim = Sim::start_logged_in(&["--chunks", "40", "--chunk-delay-ms", "100"]).await;
    let sidecar = spawn_sidecar(&sim.attach_env()).await; // capacity 1
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    let mut running = mux.start(1, request("s", vec![m(Role::User, "first")]));
    first_delta(&mut running).await;
    let queued = mux.start(2, request("s", vec![m(Role::User, "second")]));
    mux.wait_status(|s| s.queued == 1 && s.in_flight == 1).await;
    mux.cancel(2);
    let r = collect(queued).await;
    let (kind, _, before_output) = r.error.expect("cancelled");
    assert_eq!(kind, ErrorKind::Cancelled);
    assert!(before_output);
    mux.wait_status(|s| s.queued == 0).await;

    // A chat that may not wait is refused at once while the slot is taken.
    let mut no_wait = request("s", vec![m(Role::User, "third")]);
    no_wait.queue_timeout_ms = 0;
    let r = mux.chat(3, no_wait).await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::Overloaded));

    // So is one that could wait long but says it may not wait for a slot (a gateway
    // replica that lost the last slot to another's chat): refused before output, never
    // queued, never sent to Lingma.
    let chats_before = sim.control().stats().await.expect("sim control API")["chats_total"].clone();
    let mut no_slot_wait = request("s", vec![m(Role::User, "fourth")]);
    no_slot_wait.wait_for_slot = false;
    let mut waiting = mux.start(4, no_slot_wait);
    let first = waiting.recv().await.expect("an answer");
    match first {
        ServerMessage::Error {
            kind,
            before_output,
            ..
        } => {
            assert_eq!(kind, ErrorKind::Overloaded);
            assert!(before_output);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let status = mux.wait_status(|_| true).await;
    assert_eq!((status.in_flight, status.queued), (1, 0), "never queued");
    assert_eq!(
        sim.control().stats().await.expect("sim control API")["chats_total"],
        chats_before,
        "Lingma never saw it"
    );
    mux.cancel(1);
    let _ = collect(running).await;
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused() {
    let sim = Sim::start_logged_in(&[]).await;
    let sidecar = spawn_sidecar(&sim.attach_env()).await;
    for token in [None, Some("wrong-token"), Some("")] {
        match Mux::connect(sidecar.port, token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401, "token {token:?}")
            }
            Err(e) => panic!("token {token:?}: unexpected error {e}"),
            Ok(_) => panic!("token {token:?} was accepted"),
        }
    }
    assert_eq!(sidecar.get("/login/status", None).await.0, 401);
    assert_eq!(sidecar.get("/login/status", Some("nope")).await.0, 401);
    assert_eq!(sidecar.post("/login/start", None).await.0, 401);
    assert_eq!(sidecar.get("/login/status", Some(TOKEN)).await.0, 200);
    // Probes and metrics are open (kubelet, Prometheus).
    assert_eq!(sidecar.get("/healthz", None).await.0, 200);
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    let r = mux.chat(1, request("s", vec![m(Role::User, "hi")])).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.started.map(|s| s.0), Some(SessionOutcome::New));
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let sim = Sim::start_logged_in(&[]).await;
    let sidecar = spawn_sidecar(&sim.attach_env()).await;
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    // No user message.
    let r = mux
        .chat(
            1,
            request("s", vec![m(Role::System, "only a system prompt")]),
        )
        .await;
    assert_eq!(
        r.error.map(|e| (e.0, e.2)),
        Some((ErrorKind::BadRequest, true))
    );
    // A model Lingma does not have.
    let mut req = request("s", vec![m(Role::User, "hi")]);
    req.model = Some("no-such-model".into());
    let r = mux.chat(2, req).await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::UnknownModel));
    // Malformed JSON with a readable id is answered on that stream.
    let rx5 = mux.route(5);
    mux.send_raw(r#"{"type":"chat","id":5,"request":{"oops":true}}"#);
    let r = collect(rx5).await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::BadRequest));
    // The connection stays usable.
    let r = mux
        .chat(6, request("s", vec![m(Role::User, "still there?")]))
        .await;
    assert!(r.ok(), "{r:?}");
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
    // Wrong protocol version is refused before the upgrade.
    let resp = reqwest::Client::new()
        .get(sidecar.url("/v1/mux?v=99"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn reasoning_is_separate_and_a_silent_chat_times_out() {
    let sim = Sim::start_logged_in(&["--think"]).await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_CHAT_IDLE_TIMEOUT_SEC", "1".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    let r = mux
        .chat(1, request("s", vec![m(Role::User, "think first")]))
        .await;
    assert!(r.ok(), "{r:?}");
    assert!(
        r.reasoning.contains("thinking"),
        "reasoning: {:?}",
        r.reasoning
    );
    assert!(!r.content.contains("thinking"), "content: {:?}", r.content);
    assert!(
        r.content.contains("you said \"think first\""),
        "{}",
        r.content
    );

    // Lingma accepts the chat and then says nothing: the idle timeout ends it.
    sim.control()
        .set_fault("hang", Some(1))
        .await
        .expect("sim control API");
    let r = mux
        .chat(2, request("s", vec![m(Role::User, "hello?")]))
        .await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::Timeout));
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
    assert_eq!(
        sidecar
            .metric("sidecar_upstream_errors_total{kind=\"timeout\"}")
            .await,
        1.0
    );
}

/// Rough throughput probe (not a benchmark: debug build, shared machine). Run with
/// `cargo test -p sidecar --test mux -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn throughput_probe() {
    let sim = Sim::start_logged_in(&[
        "--max-concurrent-chats",
        "0",
        "--chunks",
        "4",
        "--log-level",
        "warn",
    ])
    .await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_MAX_CONCURRENT_CHATS", "0".into()));
    env.push(("LOG_LEVEL", "warn".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let mux = std::sync::Arc::new(sidecar.mux().await);
    let total = 4000u64;
    let window = 256u64;
    let started = std::time::Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(window as usize));
    let mut handles = Vec::new();
    for i in 0..total {
        let permit = sem.clone().acquire_owned().await.expect("permit");
        let mux = mux.clone();
        handles.push(tokio::spawn(async move {
            let r = mux
                .chat(i, request("s", vec![m(Role::User, &format!("q{i}"))]))
                .await;
            drop(permit);
            r.ok()
        }));
    }
    let mut ok = 0;
    for h in handles {
        ok += u64::from(h.await.expect("join"));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{ok}/{total} chats in {secs:.2}s = {:.0} chats/s",
        total as f64 / secs
    );
    assert_eq!(ok, total);
}

#[tokio::test]
async fn silent_gateways_are_dropped_and_responsive_ones_kept() {
    let sim = Sim::start_logged_in(&[]).await;
    let mut env = sim.attach_env();
    env.push(("SIDECAR_KEEPALIVE_SEC", "1".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;

    // A client that never reads never answers pings: it is dropped after ~3 s.
    let mut req = format!("ws://127.0.0.1:{}/v1/mux", sidecar.port)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    let (silent, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connects");
    // A responsive client (tungstenite answers pings while reading) stays.
    let mux = sidecar.mux().await;
    sidecar.wait_metric("sidecar_mux_connections", 2.0).await;
    sidecar.wait_metric("sidecar_mux_connections", 1.0).await;
    tokio::time::sleep(Duration::from_secs(4)).await; // several keepalive periods of idling
    assert_eq!(sidecar.metric("sidecar_mux_connections").await, 1.0);
    let r = mux
        .chat(1, request("s", vec![m(Role::User, "still here")]))
        .await;
    assert!(r.ok(), "{r:?}");
    drop(silent);
}
