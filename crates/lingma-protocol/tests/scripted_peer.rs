//! Client behaviour the simulator cannot produce on demand (exact frame splitting, unknown
//! requestIds, garbage frames, tool calls): the other end here is a SCRIPTED PEER, a
//! WebSocket server on 127.0.0.1 inside the test that plays Lingma's side frame by frame.
//! Everything else is tested against the real simulator in `against_sim.rs`.

use futures_util::{SinkExt, StreamExt};
use lingma_protocol::framing::{FrameDecoder, encode};
use lingma_protocol::wire::{AskExtra, ChatAskParams, ModelConfig};
use lingma_protocol::{ChatEvent, ChatStream, ClientError, ClientOptions, LingmaClient};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// The scripted Lingma side of one connection.
struct Peer {
    ws: WebSocketStream<TcpStream>,
    decoder: FrameDecoder,
}

impl Peer {
    /// Next JSON-RPC message from the client.
    async fn recv(&mut self) -> Value {
        loop {
            if let Some(body) = self.decoder.next_frame().expect("client sent a bad frame") {
                return serde_json::from_str(&body).expect("client sent bad JSON");
            }
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("client sent nothing in time")
                .expect("client closed")
                .expect("read failed");
            if let Message::Text(t) = msg {
                self.decoder.push(t.as_bytes());
            }
        }
    }

    async fn recv_method(&mut self, method: &str) -> Value {
        let msg = self.recv().await;
        assert_eq!(msg["method"], method, "unexpected message {msg}");
        msg
    }

    /// One WebSocket text message, sent as is.
    async fn send_raw(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("peer send failed");
    }

    async fn send(&mut self, msg: Value) {
        self.send_raw(encode(&msg.to_string())).await;
    }

    async fn reply(&mut self, request: &Value, result: Value) {
        self.send(json!({"jsonrpc":"2.0","id":request["id"],"result":result}))
            .await;
    }

    /// Answer the next `chat/ask` as accepted; returns its params.
    async fn accept_ask(&mut self) -> Value {
        let ask = self.recv_method("chat/ask").await;
        let rid = ask["params"]["requestId"].clone();
        self.reply(&ask, json!({"success":true,"requestId":rid}))
            .await;
        ask["params"].clone()
    }
}

fn event(id: i64, method: &str, params: Value) -> String {
    encode(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string())
}

fn answer(id: i64, rid: &str, text: &str) -> String {
    event(
        id,
        "chat/answer",
        json!({"requestId":rid,"sessionId":"s-1","text":text}),
    )
}

fn finish(id: i64, rid: &str, full: &str) -> String {
    event(
        id,
        "chat/finish",
        json!({"requestId":rid,"sessionId":"s-1","reason":"success","statusCode":200,"fullAnswer":full}),
    )
}

async fn start(opts: ClientOptions) -> (LingmaClient, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake")
    });
    let client = LingmaClient::connect(&format!("ws://127.0.0.1:{port}/"), opts)
        .await
        .expect("connect");
    let ws = tokio::time::timeout(WAIT, accept)
        .await
        .expect("accept in time")
        .expect("accept task");
    (
        client,
        Peer {
            ws,
            decoder: FrameDecoder::new(),
        },
    )
}

fn ask(rid: &str) -> ChatAskParams {
    ChatAskParams {
        request_id: rid.into(),
        session_id: "s-1".into(),
        question_text: "hi".into(),
        chat_task: "FREE_INPUT".into(),
        source: 1,
        stream: true,
        extra: AskExtra {
            model_config: ModelConfig {
                key: "dashscope_qwen3_coder".into(),
            },
            context: vec![],
        },
        session_type: "chat".into(),
        mode: "chat".into(),
        ..Default::default()
    }
}

async fn next(stream: &mut ChatStream) -> Option<Result<ChatEvent, ClientError>> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream yielded nothing in time")
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn coalesced_and_split_frames_are_acked_and_delivered_in_order() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("r-1")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    assert_eq!(client.open_chats(), 1);

    // Three frames in one message, then the finish frame cut in the middle of its header
    // and again in its body, over three messages.
    let three = format!(
        "{}{}{}",
        answer(101, "r-1", "He"),
        answer(102, "r-1", ""),
        answer(103, "r-1", "llo")
    );
    peer.send_raw(three).await;
    let fin = finish(104, "r-1", "Hello");
    let (a, rest) = fin.split_at(7);
    let (b, c) = rest.split_at(rest.len() - 10);
    for part in [a, b, c] {
        peer.send_raw(part).await;
    }

    for id in 101..=104 {
        let ack = peer.recv().await;
        assert_eq!(ack, json!({"jsonrpc":"2.0","id":id,"result":null}));
    }
    let mut text = String::new();
    for _ in 0..3 {
        match next(&mut stream).await {
            Some(Ok(ChatEvent::Answer(a))) => text.push_str(&a.text),
            other => panic!("expected an answer, got {other:?}"),
        }
    }
    assert_eq!(text, "Hello");
    match next(&mut stream).await {
        Some(Ok(ChatEvent::Finish(f))) => {
            assert_eq!(f.full_answer, "Hello");
            assert_eq!(f.session_id, "s-1");
        }
        other => panic!("expected finish, got {other:?}"),
    }
    assert!(next(&mut stream).await.is_none());
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.protocol_errors(), 0);
}

#[tokio::test]
async fn unknown_request_ids_are_acked_and_dropped() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("mine")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    peer.send_raw(answer(7, "someone-else", "not yours")).await;
    assert_eq!(peer.recv().await["id"], 7);
    peer.send_raw(answer(8, "mine", "yours")).await;
    assert_eq!(peer.recv().await["id"], 8);
    match next(&mut stream).await {
        Some(Ok(ChatEvent::Answer(a))) => assert_eq!(a.text, "yours"),
        other => panic!("expected own answer, got {other:?}"),
    }
    assert_eq!(client.protocol_errors(), 0);
    // A response to an id this client never sent is counted but ends no chat.
    peer.send(json!({"jsonrpc":"2.0","id":"not-ours","result":{}}))
        .await;
    peer.send_raw(answer(9, "mine", "again")).await;
    assert_eq!(peer.recv().await["id"], 9);
    match next(&mut stream).await {
        Some(Ok(ChatEvent::Answer(a))) => assert_eq!(a.text, "again"),
        other => panic!("expected own answer, got {other:?}"),
    }
    assert_eq!(client.protocol_errors(), 1);
}

#[tokio::test]
async fn garbage_naming_a_chat_fails_only_that_chat() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let mut streams = Vec::new();
    for rid in ["a", "b"] {
        let chat = tokio::spawn({
            let client = client.clone();
            async move { client.chat(ask(rid)).await }
        });
        peer.accept_ask().await;
        streams.push(chat.await.expect("task").expect("accepted"));
    }
    // Well framed, but the JSON is cut short.
    peer.send_raw(encode(
        r#"{"jsonrpc":"2.0","id":9,"method":"chat/answer","params":{"requestId":"a","te"#,
    ))
    .await;
    match next(&mut streams[0]).await {
        Some(Err(ClientError::Protocol(_))) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(next(&mut streams[0]).await.is_none());
    // Chat "a" was abandoned mid-stream: the client asks Lingma to stop it.
    let stop = peer.recv_method("chat/stop").await;
    assert_eq!(stop["params"]["requestId"], "a");
    // "b" goes on.
    peer.send_raw(answer(10, "b", "still here")).await;
    match next(&mut streams[1]).await {
        Some(Ok(ChatEvent::Answer(a))) => assert_eq!(a.text, "still here"),
        other => panic!("expected b's answer, got {other:?}"),
    }
    assert_eq!(client.protocol_errors(), 1);
    assert_eq!(client.open_chats(), 1);
}

#[tokio::test]
async fn unattributable_garbage_fails_open_chats_but_keeps_the_connection() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("x")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    // Unframed JSON, then a frame with a non-numeric length.
    peer.send_raw(r#"{"jsonrpc":"2.0","method":"chat/answer"}"#)
        .await;
    match next(&mut stream).await {
        Some(Err(ClientError::Protocol(_))) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    peer.send_raw("Content-Length: lots\r\n\r\n{}").await;
    peer.send_raw(encode(r#""a string""#)).await;
    wait_for("three protocol errors", || client.protocol_errors() == 3).await;
    assert_eq!(client.open_chats(), 0);
    // The connection still works.
    let ping = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    let _stop = peer.recv_method("chat/stop").await;
    let req = peer.recv_method("ping").await;
    peer.reply(&req, json!({"success":true})).await;
    ping.await.expect("task").expect("ping");
}

#[tokio::test]
async fn tool_invoke_is_refused_and_title_is_routed_by_session() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("t")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    peer.send_raw(event(
        20,
        "tool/invoke",
        json!({"requestId":"t","toolCallId":"c1","name":"run_in_terminal","parameters":{}}),
    ))
    .await;
    let reply = peer.recv().await;
    assert_eq!(reply["id"], 20);
    assert_eq!(reply["result"]["success"], false);
    assert_eq!(reply["result"]["toolCallId"], "c1");
    peer.send_raw(event(
        21,
        "session/title/update",
        json!({"sessionId":"s-1","sessionTitle":"Greeting"}),
    ))
    .await;
    assert_eq!(peer.recv().await["id"], 21);
    match next(&mut stream).await {
        Some(Ok(ChatEvent::Title(t))) => assert_eq!(t.session_title, "Greeting"),
        other => panic!("expected the title, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_streams_and_calls_frees_bookkeeping() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("d")).await }
    });
    peer.accept_ask().await;
    let stream = chat.await.expect("task").expect("accepted");
    assert_eq!(client.open_chats(), 1);
    drop(stream);
    assert_eq!(client.open_chats(), 0);
    let stop = peer.recv_method("chat/stop").await;
    assert_eq!(stop["params"]["requestId"], "d");
    assert_eq!(stop["params"]["sessionId"], "s-1");

    // A call whose future is dropped (cancelled) frees its entry.
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    peer.recv_method("ping").await;
    assert_eq!(client.pending_calls(), 1);
    call.abort();
    wait_for("the aborted call to be freed", || {
        client.pending_calls() == 0
    })
    .await;

    // A call that times out frees its entry too.
    let err = client
        .call_with_timeout::<_, Value>("ping", &json!({}), Duration::from_millis(50))
        .await
        .expect_err("no answer");
    assert_eq!(
        err,
        ClientError::Timeout {
            method: "ping".into()
        }
    );
    assert_eq!(client.pending_calls(), 0);
}

#[tokio::test]
async fn upstream_errors_are_sanitised_and_rejections_reported() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.auth_status().await }
    });
    let req = peer.recv_method("auth/status").await;
    peer.send(
        json!({"jsonrpc":"2.0","id":req["id"],"error":{"code":-32603,
        "message":"upstream said token=sk-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 is invalid"}}),
    )
    .await;
    match call.await.expect("task") {
        Err(ClientError::Upstream { code, message }) => {
            assert_eq!(code, -32603);
            assert!(!message.contains("ABCDEFGHIJ"), "{message}");
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }

    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("no")).await }
    });
    let ask = peer.recv_method("chat/ask").await;
    peer.reply(
        &ask,
        json!({"success":false,"errorMessage":"too many chats"}),
    )
    .await;
    match chat.await.expect("task") {
        Err(ClientError::Rejected(why)) => assert_eq!(why, "too many chats"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(client.open_chats(), 0);
}

#[tokio::test]
async fn idle_chat_times_out() {
    let opts = ClientOptions {
        chat_idle_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (client, mut peer) = start(opts).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("idle")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    peer.send_raw(answer(30, "idle", "a")).await;
    let started = tokio::time::Instant::now();
    assert!(matches!(
        next(&mut stream).await,
        Some(Ok(ChatEvent::Answer(_)))
    ));
    match next(&mut stream).await {
        Some(Err(ClientError::Timeout { .. })) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(client.open_chats(), 0);
}

#[tokio::test]
async fn disconnect_fails_everything_with_connection_lost() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("c")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.query_models().await }
    });
    peer.recv_method("config/queryModels").await;
    drop(peer);
    match next(&mut stream).await {
        Some(Err(ClientError::ConnectionLost)) => {}
        other => panic!("expected connection lost, got {other:?}"),
    }
    assert!(matches!(
        call.await.expect("task"),
        Err(ClientError::ConnectionLost)
    ));
    tokio::time::timeout(WAIT, client.closed())
        .await
        .expect("closed() resolves");
    assert!(client.is_closed());
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.pending_calls(), 0);
    assert!(matches!(
        client.ping().await,
        Err(ClientError::ConnectionLost)
    ));
}

#[tokio::test]
async fn close_gives_closed() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("z")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    client.close();
    match next(&mut stream).await {
        Some(Err(ClientError::Closed)) => {}
        other => panic!("expected closed, got {other:?}"),
    }
    tokio::time::timeout(WAIT, client.closed())
        .await
        .expect("closed() resolves");
    assert!(matches!(client.ping().await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn an_event_sent_twice_is_acked_twice_and_delivered_once() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("dup")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    let first = answer(40, "dup", "a");
    peer.send_raw(first.clone()).await;
    peer.send_raw(first).await;
    peer.send_raw(answer(41, "dup", "b")).await;
    peer.send_raw(finish(42, "dup", "ab")).await;
    for id in [40, 40, 41, 42] {
        assert_eq!(peer.recv().await["id"], id);
    }
    let mut text = String::new();
    while let Some(item) = next(&mut stream).await {
        match item.expect("no error") {
            ChatEvent::Answer(a) => text.push_str(&a.text),
            ChatEvent::Finish(f) => assert_eq!(f.full_answer, text),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(text, "ab");
}

#[tokio::test]
async fn a_frame_cut_by_the_disconnect_is_counted_and_chats_get_connection_lost() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("cut")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    peer.send_raw("Content-Length: 4096\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":")
        .await;
    drop(peer);
    assert_eq!(
        next(&mut stream).await,
        Some(Err(ClientError::ConnectionLost))
    );
    tokio::time::timeout(WAIT, client.closed())
        .await
        .expect("closed() resolves");
    assert_eq!(client.protocol_errors(), 1);
}

#[tokio::test]
async fn session_learned_from_events_routes_the_title() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move {
            let mut params = ask("new-session");
            params.session_id = String::new();
            client.chat(params).await
        }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    assert_eq!(stream.session_id(), "");
    peer.send_raw(event(
        50,
        "chat/process_step_callback",
        json!({"requestId":"new-session","sessionId":"assigned","step":"step_start","status":"doing"}),
    ))
    .await;
    peer.send_raw(event(
        51,
        "session/title/update",
        json!({"sessionId":"assigned","sessionTitle":"T"}),
    ))
    .await;
    assert!(matches!(
        next(&mut stream).await,
        Some(Ok(ChatEvent::Step(_)))
    ));
    assert_eq!(stream.session_id(), "assigned");
    match next(&mut stream).await {
        Some(Ok(ChatEvent::Title(t))) => assert_eq!(t.session_title, "T"),
        other => panic!("expected the title, got {other:?}"),
    }
}

#[tokio::test]
async fn a_chat_nobody_reads_is_ended_without_blocking_the_others() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let mut streams = Vec::new();
    for rid in ["slow", "fast"] {
        let chat = tokio::spawn({
            let client = client.clone();
            async move { client.chat(ask(rid)).await }
        });
        peer.accept_ask().await;
        streams.push(chat.await.expect("task").expect("accepted"));
    }
    let flood = lingma_protocol::CHAT_EVENT_BUFFER + 50;
    let mut batch = String::new();
    for i in 0..flood {
        batch.push_str(&answer(1000 + i as i64, "slow", "x"));
    }
    peer.send_raw(batch).await;
    peer.send_raw(answer(5000, "fast", "through")).await;
    match next(&mut streams[1]).await {
        Some(Ok(ChatEvent::Answer(a))) => assert_eq!(a.text, "through"),
        other => panic!("the other chat was blocked: {other:?}"),
    }
    let mut delivered = 0;
    let error = loop {
        match next(&mut streams[0]).await {
            Some(Ok(ChatEvent::Answer(_))) => delivered += 1,
            Some(Err(e)) => break e,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        matches!(error, ClientError::Protocol(ref m) if m.contains("too slow")),
        "{error:?}"
    );
    assert_eq!(delivered, lingma_protocol::CHAT_EVENT_BUFFER - 1);
    assert_eq!(client.open_chats(), 1);
    let stop = loop {
        let msg = peer.recv().await;
        if msg["method"] == "chat/stop" {
            break msg;
        }
    };
    assert_eq!(stop["params"]["requestId"], "slow");
}

#[tokio::test]
async fn an_unanswered_ask_times_out_frees_everything_and_is_stopped() {
    let opts = ClientOptions {
        rpc_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (client, mut peer) = start(opts).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("silent")).await }
    });
    peer.recv_method("chat/ask").await;
    let started = tokio::time::Instant::now();
    match chat.await.expect("task") {
        Err(ClientError::Timeout { method }) => assert_eq!(method, "chat/ask"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.pending_calls(), 0);
    // Lingma may have started it after all: the client stops it.
    let stop = peer.recv_method("chat/stop").await;
    assert_eq!(stop["params"]["requestId"], "silent");
    // A late accept and events for it are acked and dropped.
    peer.send_raw(answer(60, "silent", "late")).await;
    assert_eq!(peer.recv().await["id"], 60);
    assert_eq!(client.protocol_errors(), 0);
}

#[tokio::test]
async fn a_non_utf8_frame_does_not_hold_back_the_frames_after_it() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("u")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    // One binary message: a frame whose body is not UTF-8, then a valid frame.
    let mut bytes = b"Content-Length: 2\r\n\r\n\xff\xfe".to_vec();
    bytes.extend_from_slice(answer(70, "other", "x").as_bytes());
    peer.ws
        .send(Message::binary(bytes))
        .await
        .expect("peer send failed");
    // The valid frame is handled at once (acked), not when the next message arrives.
    assert_eq!(peer.recv().await["id"], 70);
    assert!(matches!(
        next(&mut stream).await,
        Some(Err(ClientError::Protocol(_)))
    ));
    assert_eq!(client.protocol_errors(), 1);
}
