//! Garbage, timeouts, cancellation and disconnects.

use crate::peer::*;

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
    assert!(
        matches!(client.ping().await, Err(ClientError::NotSent)),
        "a request after the disconnect never left"
    );
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
