//! Faults of the simulator: hang, crash, drop, malformed and truncated frames, run-time errors.

use crate::harness::*;

#[tokio::test]
async fn hang_gives_timeout_within_the_configured_time() {
    let sim = Sim::start(&["--fault", "hang"]).await;
    let opts = ClientOptions {
        rpc_timeout: Duration::from_millis(500),
        chat_idle_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let client = sim.client(opts).await;
    let started = Instant::now();
    // `hang` accepts the ask and then sends nothing: either the accept or the stream times out.
    let error = match client
        .chat(ask(&uuid(), &uuid(), "anyone there?", false))
        .await
    {
        Err(e) => e,
        Ok(stream) => collect(stream).await.error.expect("an error, not a finish"),
    };
    let waited = started.elapsed();
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.pending_calls(), 0);
    // The connection itself is fine.
    client.ping().await.expect("ping after a hung chat");
}

#[tokio::test]
async fn crash_mid_stream_gives_connection_lost_to_every_open_chat() {
    // Slow chunks keep every chat open until the first one reaches the crash point.
    let mut sim = Sim::start(&[
        "--max-concurrent-chats",
        "0",
        "--chunk-delay-ms",
        "100",
        "--fault",
        "crash",
    ])
    .await;
    let client = sim.client(ClientOptions::default()).await;
    let (streams, refused) = open_streams(&client, 5).await;
    assert_all_connection_lost(&client, streams, refused).await;
    assert!(
        sim.process.wait_exit(WAIT).is_some(),
        "the crash fault exits the process"
    );
}

#[tokio::test]
async fn drop_mid_stream_gives_connection_lost_to_every_open_chat() {
    let mut sim = Sim::start(&[
        "--max-concurrent-chats",
        "0",
        "--chunk-delay-ms",
        "100",
        "--fault",
        "drop",
    ])
    .await;
    let client = sim.client(ClientOptions::default()).await;
    let (streams, refused) = open_streams(&client, 5).await;
    assert_all_connection_lost(&client, streams, refused).await;
    // Only the connection went: the process lives and takes a new one.
    assert!(sim.process.is_running());
    sim.set_fault("none", None).await;
    let again = sim.client(ClientOptions::default()).await;
    let t = collect(
        again
            .chat(ask(&uuid(), &uuid(), "back?", false))
            .await
            .expect("chat"),
    )
    .await;
    assert!(t.finish.is_some(), "{t:?}");
}

#[tokio::test]
async fn malformed_frame_gives_a_protocol_error_and_the_connection_survives() {
    let sim = Sim::start(&[]).await;
    let client = sim.client(ClientOptions::default()).await;
    sim.set_fault("malformed_frame", Some(1)).await;
    let t = collect(
        client
            .chat(ask(&uuid(), &uuid(), "garbage please", false))
            .await
            .expect("chat"),
    )
    .await;
    assert!(matches!(t.error, Some(ClientError::Protocol(_))), "{t:?}");
    assert!(client.protocol_errors() >= 1);
    assert_eq!(client.open_chats(), 0);
    // The fault was for one chat: the next one is normal on the same connection.
    let t = collect(
        client
            .chat(ask(&uuid(), &uuid(), "clean", false))
            .await
            .expect("chat"),
    )
    .await;
    assert!(t.error.is_none() && t.finish.is_some(), "{t:?}");
}

#[tokio::test]
async fn truncated_frame_is_counted_and_ends_chats_with_connection_lost() {
    let sim = Sim::start(&["--fault", "truncated_frame"]).await;
    let client = sim.client(ClientOptions::default()).await;
    let t = collect(
        client
            .chat(ask(&uuid(), &uuid(), "cut me", false))
            .await
            .expect("chat"),
    )
    .await;
    // The simulator drops the connection right after the short frame.
    assert_eq!(t.error, Some(ClientError::ConnectionLost), "{t:?}");
    assert_eq!(
        client.protocol_errors(),
        1,
        "the incomplete frame is counted"
    );
    tokio::time::timeout(WAIT, client.closed())
        .await
        .expect("closed() resolves");
    assert_eq!(client.open_chats(), 0);
}

#[tokio::test]
async fn runtime_error_fault_gives_upstream_error_then_recovers() {
    let sim = Sim::start(&[]).await;
    let client = sim.client(ClientOptions::default()).await;
    sim.set_fault("error", Some(1)).await;
    match client.chat(ask(&uuid(), &uuid(), "fail once", false)).await {
        Err(ClientError::Upstream { .. }) => {}
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert_eq!(client.open_chats(), 0);
    let t = collect(
        client
            .chat(ask(&uuid(), &uuid(), "fine now", false))
            .await
            .expect("chat"),
    )
    .await;
    assert!(t.finish.is_some(), "{t:?}");
    // Duplicate event ids (a resent delta) do not duplicate text.
    sim.set_fault("duplicate_request_id", Some(1)).await;
    let t = collect(
        client
            .chat(ask(&uuid(), &uuid(), "once", false))
            .await
            .expect("chat"),
    )
    .await;
    let finish = t.finish.expect("finish");
    assert_eq!(t.deltas, finish.full_answer);
}
