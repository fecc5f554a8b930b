//! Streaming, concurrency, sessions, acks and cancellation against the simulator.

use crate::harness::*;

#[tokio::test]
async fn streamed_chat_arrives_in_order_and_finishes_with_the_session_id() {
    // Split and coalesced frames and empty deltas exercise the reader's buffering.
    for flags in [
        &[][..],
        &["--split-frames", "--empty-deltas", "--think"][..],
        &["--coalesce-frames"][..],
    ] {
        let sim = Sim::start(&[&["--chunks", "8"][..], flags].concat()).await;
        let client = sim.client(ClientOptions::default()).await;
        let session = uuid();
        let stream = client
            .chat(ask(&uuid(), &session, "hello", false))
            .await
            .expect("chat accepted");
        let t = collect(stream).await;
        assert!(t.error.is_none(), "{flags:?}: {:?}", t.error);
        let finish = t.finish.expect("chat/finish");
        assert_eq!(finish.status_code, 200);
        assert_eq!(finish.session_id, session);
        assert_eq!(t.deltas, finish.full_answer, "{flags:?}: deltas in order");
        assert!(t.answers >= 8, "{flags:?}: {} deltas", t.answers);
        assert!(
            finish.full_answer.contains("turn 1"),
            "{}",
            finish.full_answer
        );
        assert!(
            finish.full_answer.contains("you said \"hello\""),
            "{}",
            finish.full_answer
        );
        // Order: step_start and title before the first delta, finish last.
        let first_answer = t
            .events
            .iter()
            .position(|e| *e == "answer")
            .expect("answers");
        assert_eq!(t.events[0], "step");
        assert!(
            t.events[..first_answer].contains(&"title"),
            "{:?}",
            t.events
        );
        assert_eq!(t.events.last(), Some(&"finish"));
        assert_eq!(client.open_chats(), 0);
        assert_eq!(client.pending_calls(), 0);
        assert_eq!(client.protocol_errors(), 0);
    }
}

// Worker threads: the reader, the writer and the chats run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_chats_each_get_only_their_own_deltas() {
    let sim = Sim::start(&[
        "--max-concurrent-chats",
        "0",
        "--chunks",
        "6",
        "--chunk-delay-ms",
        "2",
    ])
    .await;
    let client = sim.client(ClientOptions::default()).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let question = format!("question number {i} from the concurrency test");
            let stream = client
                .chat(ask(&uuid(), &uuid(), &question, false))
                .await
                .expect("chat accepted");
            (question, collect(stream).await)
        }));
    }
    let mut peak_open = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        peak_open = peak_open.max(client.open_chats());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for task in tasks {
        let (question, t) = task.await.expect("chat task");
        assert!(t.error.is_none(), "{:?}", t.error);
        assert_eq!(t.foreign, 0, "events of other chats leaked in");
        let finish = t.finish.expect("chat/finish");
        assert_eq!(t.deltas, finish.full_answer);
        assert!(
            finish
                .full_answer
                .contains(&format!("you said \"{question}\"")),
            "{}",
            finish.full_answer
        );
    }
    assert!(peak_open > 1, "chats did not overlap (peak {peak_open})");
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.pending_calls(), 0);
}

#[tokio::test]
async fn follow_up_with_is_reply_remembers_the_earlier_turn() {
    let sim = Sim::start(&[]).await;
    let client = sim.client(ClientOptions::default()).await;
    let session = uuid();
    let first = collect(
        client
            .chat(ask(&uuid(), &session, "hello", false))
            .await
            .expect("turn 1"),
    )
    .await;
    assert!(
        first
            .finish
            .expect("finish 1")
            .full_answer
            .contains("turn 1")
    );
    let second = collect(
        client
            .chat(ask(&uuid(), &session, "and then?", true))
            .await
            .expect("turn 2"),
    )
    .await;
    let answer = second.finish.expect("finish 2").full_answer;
    assert!(answer.contains("turn 2"), "{answer}");
    assert!(answer.contains("you said \"and then?\""), "{answer}");
    assert!(answer.contains("previous: \"hello\""), "{answer}");
}

#[tokio::test]
async fn every_pushed_event_is_acked_so_a_waiting_lingma_never_stalls() {
    // The simulator sends each event only after the previous one's ack (or 3 s): a client
    // that did not ack would take seconds per chat (the "off-by-one" hazard).
    let sim = Sim::start(&[
        "--wait-for-ack",
        "--ack-timeout-ms",
        "3000",
        "--chunks",
        "8",
    ])
    .await;
    let client = sim.client(ClientOptions::default()).await;
    let started = Instant::now();
    let session = uuid();
    for turn in 1..=5 {
        let question = format!("question {turn}");
        let t = collect(
            client
                .chat(ask(&uuid(), &session, &question, turn > 1))
                .await
                .expect("chat"),
        )
        .await;
        let answer = t.finish.expect("finish").full_answer;
        assert!(answer.contains(&format!("turn {turn} ")), "{answer}");
        assert!(
            answer.contains(&format!("you said \"{question}\"")),
            "{answer}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Late frames after chat/finish are acked too, and dropped without a protocol error.
    sim.set_fault("late_frames", Some(1)).await;
    let t = collect(
        client
            .chat(ask(&uuid(), &uuid(), "late", false))
            .await
            .expect("chat"),
    )
    .await;
    assert!(t.finish.is_some() && t.error.is_none(), "{t:?}");
    client.ping().await.expect("ping");
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = sim.stats().await;
        if stats["events_sent"] == stats["acks_received"] {
            assert_eq!(stats["unacked_events"], 0, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "events not all acked: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.protocol_errors(), 0);
    assert_eq!(client.open_chats(), 0);
}

// Worker threads: the reader, the writer and the chats run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_chat_streams_free_bookkeeping_and_stop_the_chats_in_lingma() {
    let sim = Sim::start(&[
        "--max-concurrent-chats",
        "0",
        "--chunk-delay-ms",
        "1000",
        "--chunks",
        "20",
    ])
    .await;
    let client = sim.client(ClientOptions::default()).await;
    let mut streams = Vec::new();
    for i in 0..50 {
        let mut stream = client
            .chat(ask(&uuid(), &uuid(), &format!("abandon {i}"), false))
            .await
            .expect("chat");
        let first = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("first event");
        assert!(matches!(first, Some(Ok(_))), "{first:?}");
        streams.push(stream);
    }
    assert_eq!(client.open_chats(), 50);
    drop(streams);
    assert_eq!(client.open_chats(), 0, "dropping frees bookkeeping at once");
    // The background chat/stop reaches the simulator: nothing stays in flight there,
    // long before the 20 s these answers would take.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = sim.stats().await;
        if stats["chats_in_flight"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chats still running in the simulator: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.pending_calls(), 0);
    assert_eq!(client.protocol_errors(), 0);
    // Stopping explicitly works the same way.
    let stream = client
        .chat(ask(&uuid(), &uuid(), "stop me", false))
        .await
        .expect("chat");
    stream.stop().await;
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.pending_calls(), 0);
}

/// Not a pass/fail test: prints chats per second through one connection (debug build, so
/// only a rough figure). Run with `cargo test -p lingma-protocol --test against_sim -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test"]
async fn throughput_through_one_connection() {
    let sim = Sim::start(&[
        "--max-concurrent-chats",
        "0",
        "--chunks",
        "8",
        "--log-level",
        "warn",
    ])
    .await;
    let client = sim.client(ClientOptions::default()).await;
    let total = 5000usize;
    let concurrency = 256usize;
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let mut stream = client
                    .chat(ask(&uuid(), &uuid(), "bench", false))
                    .await
                    .expect("chat");
                while let Some(item) = stream.next().await {
                    item.expect("event");
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} chats in {secs:.2}s = {:.0} chats/s",
        total as f64 / secs
    );
    assert_eq!(client.open_chats(), 0);
}
