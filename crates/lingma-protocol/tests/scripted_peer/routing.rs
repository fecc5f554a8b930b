//! Acks, ordering and routing of events across frames and chats.

use crate::peer::*;

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
async fn a_consumer_that_falls_behind_a_burst_briefly_loses_nothing() {
    let (client, mut peer) = start(ClientOptions::default()).await;
    let chat = tokio::spawn({
        let client = client.clone();
        async move { client.chat(ask("burst")).await }
    });
    peer.accept_ask().await;
    let mut stream = chat.await.expect("task").expect("accepted");
    // Twice the buffer in one socket write, and the consumer starts reading only after a
    // while: the reader waits for room instead of ending the chat.
    let burst = 2 * lingma_protocol::CHAT_EVENT_BUFFER;
    let mut batch = String::new();
    for i in 0..burst {
        batch.push_str(&answer(1000 + i as i64, "burst", "x"));
    }
    peer.send_raw(batch).await;
    tokio::time::sleep(lingma_protocol::CONSUMER_GRACE / 4).await;
    for i in 0..burst {
        match next(&mut stream).await {
            Some(Ok(ChatEvent::Answer(a))) => assert_eq!(a.text, "x"),
            other => panic!("event {i} of {burst}: {other:?}"),
        }
    }
    assert_eq!(client.open_chats(), 1, "the chat is still open");
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
        matches!(error, ClientError::ConsumerTooSlow { .. }),
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
