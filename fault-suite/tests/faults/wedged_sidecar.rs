//! A sidecar that accepts the mux connection, reports itself ready and then stops reading
//! (a wedged process): the gateway's own deadlines answer its requests in time, eject it,
//! and route the next chats to the healthy sidecar.

use fault_suite::{API_KEY, Stack, assert_result_or_error, user};
use futures_util::SinkExt;
use mux_protocol::{
    ConnectionState, LoginState, PROTOCOL_VERSION, SUBPROTOCOL, ServerMessage, SidecarStatus,
};
use std::time::{Duration, Instant};
use test_support::Binaries;
use test_support::stack::{Gateway, GatewayOptions, Sidecar, SidecarOptions, Sim, SimOptions};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

// The error type is tungstenite's, fixed by its callback signature.
#[allow(clippy::result_large_err)]
fn offer_subprotocol(_: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    response.headers_mut().insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}

/// Serve lingma-mux.v1 handshakes that send one ready `Status` and then never read nor
/// write again. Returns the ws URL.
async fn wedged_sidecar() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, offer_subprotocol).await
                else {
                    return;
                };
                let status = ServerMessage::Status(SidecarStatus {
                    protocol_version: PROTOCOL_VERSION,
                    name: "wedged".into(),
                    ready: true,
                    connection: ConnectionState::Ready,
                    login: LoginState::LoggedIn,
                    capacity: 8,
                    in_flight: 0,
                    queued: 0,
                    draining: false,
                    models: vec![],
                    paused: None,
                });
                let text = serde_json::to_string(&status).expect("json");
                if ws.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                // Wedged: the socket stays open, nothing is read or written any more.
                std::future::pending::<()>().await;
                drop(ws);
            });
        }
    });
    format!("ws://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_stops_reading_is_ejected_and_its_requests_answered_in_time() {
    let bins = Binaries::debug();
    let sim = Sim::start(&bins.sim, SimOptions::default())
        .await
        .expect("simulator starts");
    let sidecar = Sidecar::start(
        &bins.sidecar,
        &sim,
        SidecarOptions {
            name: "healthy".into(),
            ..SidecarOptions::default()
        },
    )
    .await
    .expect("sidecar becomes ready");
    let base = GatewayOptions::for_sidecars(&[&sidecar]);
    let mut sidecars = base.sidecars.clone();
    sidecars.push(("wedged".into(), wedged_sidecar().await));
    // Queue wait 1 s + start deadline 2 s: every request is answered within ~3 s.
    let gateway = Gateway::start(
        &bins.gateway,
        GatewayOptions {
            sidecars,
            sidecar_token: base.sidecar_token,
            routing: "round-robin".into(),
            api_keys: API_KEY.into(),
            queue_timeout_sec: 1.0,
            log_level: "debug".into(),
            extra_env: vec![
                ("GATEWAY_START_TIMEOUT_SEC".into(), "2".into()),
                ("GATEWAY_SIDECAR_WRITE_TIMEOUT_SEC".into(), "2".into()),
                ("GATEWAY_EJECT_FAILURES".into(), "1".into()),
                ("GATEWAY_EJECT_COOLDOWN_SEC".into(), "60".into()),
            ],
            ..GatewayOptions::default()
        },
    )
    .await
    .expect("gateway becomes ready");
    let stack = Stack {
        sims: vec![sim],
        sidecars: vec![sidecar],
        gateway,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
    };
    // Wait until the wedged one is connected too, so round-robin reaches it.
    test_support::wait_until(Duration::from_secs(10), || async {
        stack
            .gateway
            .metrics()
            .await
            .ok()
            .and_then(|m| m.sum("gateway_pool_instance_ready"))
            .is_some_and(|n| n >= 2.0)
    })
    .await
    .expect("both sidecars in rotation");

    let mut statuses = Vec::new();
    for i in 0..6 {
        let started = Instant::now();
        let out = stack.chat(&user(&format!("request {i}"))).await;
        let took = started.elapsed();
        assert_result_or_error(&out, "wedged pool");
        assert!(
            took < Duration::from_secs(6),
            "request {i} answered in {took:?} (bound: 1 s queue + 2 s start)"
        );
        assert!(
            matches!(out.status, 200 | 502 | 504),
            "request {i}: {} {}",
            out.status,
            out.body
        );
        eprintln!("request {i}: {} in {took:?}", out.status);
        statuses.push(out.status);
    }
    assert!(
        statuses.iter().any(|s| *s == 504 || *s == 502),
        "the wedged sidecar got a request: {statuses:?}"
    );
    assert_eq!(
        &statuses[statuses.len() - 3..],
        &[200, 200, 200],
        "after its ejection every chat goes to the healthy sidecar: {statuses:?}"
    );
    let metrics = stack.gateway.metrics().await.expect("metrics");
    assert_eq!(
        metrics.sum_where("gateway_pool_ejections_total", "name", "wedged"),
        1.0,
        "the wedged sidecar was ejected"
    );
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
