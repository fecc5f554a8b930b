//! The client against the REAL simulator binary (`lingma-sim start ...`, a test double of
//! Lingma), over real WebSocket connections on 127.0.0.1 ephemeral ports.

use futures_util::StreamExt;
use lingma_protocol::wire::{AskExtra, ChatAskParams, ModelConfig};
use lingma_protocol::{ChatEvent, ChatStream, ClientError, ClientOptions, LingmaClient};
use std::time::{Duration, Instant};
use test_support::{ChildProcess, ProcessBuilder, free_port, wait_for_port};

const CONTROL_TOKEN: &str = "client-test-control-token";
const WAIT: Duration = Duration::from_secs(10);

struct Sim {
    process: ChildProcess,
    ws_port: u16,
    http_port: u16,
    _work_dir: tempfile::TempDir,
}

impl Sim {
    async fn start(extra: &[&str]) -> Sim {
        let bin = tokio::task::spawn_blocking(|| test_support::binary("lingma-sim", "lingma-sim"))
            .await
            .expect("build lingma-sim");
        let work_dir = tempfile::tempdir().expect("temp workDir");
        let (ws_port, http_port) = (free_port(), free_port());
        let process = ProcessBuilder::new("lingma-sim", bin)
            .arg("start")
            .arg("--workDir")
            .arg(work_dir.path())
            .args(["--socketPort", &ws_port.to_string()])
            .args(["--httpPort", &http_port.to_string()])
            .args(["--logged-in", "--control-token", CONTROL_TOKEN])
            .args(extra)
            .spawn()
            .expect("spawn lingma-sim");
        let sim = Sim {
            process,
            ws_port,
            http_port,
            _work_dir: work_dir,
        };
        wait_for_port(ws_port, WAIT)
            .await
            .expect("lingma-sim WebSocket listens");
        wait_for_port(http_port, WAIT)
            .await
            .expect("lingma-sim HTTP listens");
        sim
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.ws_port)
    }

    async fn client(&self, opts: ClientOptions) -> LingmaClient {
        let client = LingmaClient::connect(&self.url(), opts)
            .await
            .expect("connect to lingma-sim");
        let init = client
            .initialize("file:///tmp/client-test")
            .await
            .expect("initialize");
        assert_eq!(init.server_info.name, "lingma-sim");
        client
    }

    /// Switch the fault at run time through the control API.
    async fn set_fault(&self, fault: &str, times: Option<u32>) {
        let mut body = serde_json::json!({ "fault": fault });
        if let Some(n) = times {
            body["times"] = n.into();
        }
        let status = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/control/fault", self.http_port))
            .bearer_auth(CONTROL_TOKEN)
            .json(&body)
            .timeout(WAIT)
            .send()
            .await
            .expect("control API reachable")
            .status();
        assert!(status.is_success(), "POST /control/fault -> {status}");
    }
}

fn ask(request_id: &str, session_id: &str, question: &str, is_reply: bool) -> ChatAskParams {
    ChatAskParams {
        request_id: request_id.into(),
        session_id: session_id.into(),
        question_text: question.into(),
        chat_task: "FREE_INPUT".into(),
        is_reply,
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

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Everything a finished chat produced.
#[derive(Debug, Default)]
struct Transcript {
    deltas: String,
    answers: usize,
    foreign: usize,
    events: Vec<&'static str>,
    finish: Option<lingma_protocol::wire::ChatFinish>,
    error: Option<ClientError>,
}

async fn collect(mut stream: ChatStream) -> Transcript {
    let own = stream.request_id().to_owned();
    let mut t = Transcript::default();
    loop {
        let item = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("chat stream stalled");
        match item {
            None => break,
            Some(Err(e)) => t.error = Some(e),
            Some(Ok(ChatEvent::Answer(a))) => {
                t.events.push("answer");
                t.answers += 1;
                t.foreign += usize::from(a.request_id != own);
                t.deltas.push_str(&a.text);
            }
            Some(Ok(ChatEvent::Finish(f))) => {
                t.events.push("finish");
                t.foreign += usize::from(f.request_id != own);
                t.finish = Some(f);
            }
            Some(Ok(ChatEvent::Step(s))) => {
                t.events.push("step");
                t.foreign += usize::from(s.request_id != own);
            }
            Some(Ok(ChatEvent::Think(_))) => t.events.push("think"),
            Some(Ok(ChatEvent::Title(_))) => t.events.push("title"),
        }
    }
    t
}

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

#[tokio::test]
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

impl Sim {
    async fn stats(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/control/stats", self.http_port))
            .bearer_auth(CONTROL_TOKEN)
            .timeout(WAIT)
            .send()
            .await
            .expect("control API reachable")
            .json()
            .await
            .expect("stats JSON")
    }
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

/// Open `n` chats that are still streaming, for the mid-stream faults.
async fn open_streams(client: &LingmaClient, n: usize) -> (Vec<ChatStream>, Vec<ClientError>) {
    let mut streams = Vec::new();
    let mut refused = Vec::new();
    for i in 0..n {
        match client
            .chat(ask(&uuid(), &uuid(), &format!("chat {i}"), false))
            .await
        {
            Ok(s) => streams.push(s),
            Err(e) => refused.push(e),
        }
    }
    (streams, refused)
}

async fn assert_all_connection_lost(
    client: &LingmaClient,
    streams: Vec<ChatStream>,
    refused: Vec<ClientError>,
) {
    assert!(
        !streams.is_empty(),
        "no chat was open when the fault struck"
    );
    for e in refused {
        assert_eq!(e, ClientError::ConnectionLost);
    }
    for stream in streams {
        let t = collect(stream).await;
        assert_eq!(t.error, Some(ClientError::ConnectionLost), "{t:?}");
        assert!(t.finish.is_none());
    }
    tokio::time::timeout(WAIT, client.closed())
        .await
        .expect("closed() resolves");
    assert!(client.is_closed());
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.pending_calls(), 0);
    assert_eq!(client.ping().await, Err(ClientError::ConnectionLost));
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

#[tokio::test]
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
