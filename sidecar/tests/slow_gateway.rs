//! A gateway connection that stops reading (issue 14): the sidecar's per-chat event buffer
//! (1,024 Lingma events) must not overflow into a failure that blames the instance. The
//! chat waits for the gateway (its pending text is coalesced into fewer, larger deltas)
//! and completes with every character once the reader resumes.
//!
//! Before: the Lingma client's buffer overflowed while the chat's task waited for room on
//! the mux connection, and the chat ended as `upstream`, which the gateway counts against
//! the instance.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use mux_protocol::{ClientMessage, MUX_PATH, Role, SUBPROTOCOL, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Characters (and deltas) of the simulator's answer: far more events than the 1,024 of
/// the Lingma client's per-chat buffer plus the 1,024 frames of the mux queue, and more
/// bytes than the socket buffers of a small-window connection hold.
const ANSWER_PIECES: usize = 60_000;
/// How long the gateway side stops reading.
const PAUSE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_reading_gets_the_whole_answer_and_blames_nothing() {
    let pieces = ANSWER_PIECES.to_string();
    let sim = Sim::start_logged_in(&["--answer-pieces", &pieces, "--chunk-delay-ms", "0"]).await;
    let sidecar = spawn_sidecar(&sim.attach_env()).await;
    sidecar.wait_ready().await;

    let ws = connect_small_window(sidecar.port).await;
    let (mut sink, mut stream) = ws.split();
    let chat = ClientMessage::Chat {
        id: 1,
        request: request("s", vec![m(Role::User, "a very long answer please")]),
    };
    let text = serde_json::to_string(&chat).expect("json");
    sink.send(Message::Text(text.into())).await.expect("sent");

    // Read until the chat is running, then stop reading while Lingma keeps streaming.
    let mut content = String::new();
    let mut deltas = 0usize;
    loop {
        match next_message(&mut stream).await {
            ServerMessage::Delta { content: c, .. } => {
                content.push_str(c.as_deref().unwrap_or(""));
                deltas += 1;
                break;
            }
            ServerMessage::Started { .. }
            | ServerMessage::Status(_)
            | ServerMessage::Sessions(_)
            | ServerMessage::Load(_) => {}
            other => panic!("before the first delta: {other:?}"),
        }
    }
    tokio::time::sleep(PAUSE).await;
    let end = loop {
        match next_message(&mut stream).await {
            ServerMessage::Delta { content: c, .. } => {
                content.push_str(c.as_deref().unwrap_or(""));
                deltas += 1;
            }
            ServerMessage::Started { .. }
            | ServerMessage::Status(_)
            | ServerMessage::Sessions(_)
            | ServerMessage::Load(_) => {}
            end @ (ServerMessage::Finish { .. } | ServerMessage::Error { .. }) => break end,
        }
    };
    if let ServerMessage::Error { kind, message, .. } = &end {
        panic!(
            "the chat ended with {kind:?} ({message}) after {deltas} deltas; blames the instance: {}",
            kind.blames_instance()
        );
    }
    assert!(
        content.chars().count() >= ANSWER_PIECES,
        "every character arrived: {} of at least {ANSWER_PIECES} in {deltas} deltas",
        content.chars().count()
    );
    eprintln!(
        "{} characters in {deltas} deltas after a {PAUSE:?} pause",
        content.chars().count()
    );
    assert_eq!(
        sidecar.metric("sidecar_chats_total{outcome=\"ok\"}").await,
        1.0
    );
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A mux connection whose socket has a 4 KiB receive buffer (set before connecting, so the
/// advertised window stays small): when the client stops reading, the sidecar's socket
/// soon stops taking frames.
async fn connect_small_window(port: u16) -> Ws {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("nonblocking");
    let tcp = tokio::net::TcpStream::from_std(socket.into()).expect("tokio socket");
    let mut req = format!("ws://127.0.0.1:{port}{MUX_PATH}?v=1")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        SUBPROTOCOL.parse().expect("header"),
    );
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    let (ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("mux handshake");
    ws
}

async fn next_message(stream: &mut futures_util::stream::SplitStream<Ws>) -> ServerMessage {
    loop {
        let frame = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("frame ok");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("a server message");
        }
    }
}
