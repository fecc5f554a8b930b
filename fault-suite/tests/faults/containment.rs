//! Failure containment (issue 14): only the instance's own faults count against it, and a
//! request Lingma accepted reaches it exactly once, whatever fails afterwards.

use fault_suite::{Stack, StackSpec, assert_result_or_error, assert_stream_result_or_error, user};
use serde_json::Value;
use test_support::openai;

fn two_sidecars() -> StackSpec {
    StackSpec {
        sidecars: 2,
        ..StackSpec::default()
    }
}

/// Asks received by all simulators of the stack.
async fn asks(stack: &Stack) -> u64 {
    let mut total = 0;
    for sim in &stack.sims {
        let stats = sim.control().stats().await.expect("simulator stats");
        total += stats["asks_received"].as_u64().expect("asks_received");
    }
    total
}

async fn arm_everywhere(stack: &Stack, fault: &str) {
    for sim in &stack.sims {
        sim.control()
            .set_fault(fault, None)
            .await
            .expect("set fault");
    }
}

async fn ejections(stack: &Stack) -> f64 {
    let metrics = stack.gateway.metrics().await.expect("gateway metrics");
    metrics.sum("gateway_pool_ejections_total").unwrap_or(0.0)
}

/// Three prompts Lingma refuses (a JSON-RPC error on `chat/ask`, an unknown model key) are
/// the request's fault: a 400 each, no retry on the other instance, nothing ejected, and
/// the next good chat is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_prompts_eject_nothing_and_move_nowhere() {
    let stack = Stack::start(two_sidecars()).await;
    for fault in ["error", "unknown_model"] {
        arm_everywhere(&stack, fault).await;
        let before = asks(&stack).await;
        for i in 0..3 {
            let out = stack.chat(&user(&format!("bad prompt {fault} {i}"))).await;
            assert_result_or_error(&out, fault);
            assert_eq!(
                out.status, 400,
                "{fault}: the request's fault: {}",
                out.body
            );
        }
        assert_eq!(
            asks(&stack).await,
            before + 3,
            "{fault}: each refused prompt reached Lingma once (no retry elsewhere)"
        );
    }
    arm_everywhere(&stack, "none").await;
    assert_eq!(ejections(&stack).await, 0.0, "refusals eject nothing");
    let good = stack.chat(&user("a good prompt")).await;
    assert_eq!(good.status, 200, "served at once: {}", good.body);
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

/// A chat Lingma accepted and then failed (statusCode 408 / 500, or no answer until the
/// idle timeout) reaches Lingma exactly once: neither the sidecar (fresh session) nor the
/// gateway (other instance) asks again. Also for a follow-up turn on a stored session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_ask_reaches_lingma_exactly_once() {
    let stack = Stack::start(two_sidecars()).await;
    for fault in ["timeout", "internal", "hang"] {
        for streaming in [false, true] {
            arm_everywhere(&stack, fault).await;
            let before = asks(&stack).await;
            let what = format!("fault {fault} (stream: {streaming})");
            let body = openai::chat_body(&[("user", what.as_str())], streaming, None);
            failed_once(&stack, &body, streaming, &what).await;
            arm_everywhere(&stack, "none").await;
            assert_eq!(asks(&stack).await, before + 1, "{what}: one ask upstream");
        }
    }

    // A follow-up turn: the first turn stores a session, the second continues it and fails.
    let first = stack.chat(&user("hello there")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let answer = first.content().expect("answer").to_owned();
    arm_everywhere(&stack, "timeout").await;
    let before = asks(&stack).await;
    let follow_up = openai::chat_body(
        &[
            ("user", "hello there"),
            ("assistant", answer.as_str()),
            ("user", "and then?"),
        ],
        false,
        None,
    );
    failed_once(&stack, &follow_up, false, "follow-up turn").await;
    arm_everywhere(&stack, "none").await;
    assert_eq!(
        asks(&stack).await,
        before + 1,
        "follow-up turn: one ask upstream"
    );
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

async fn failed_once(stack: &Stack, body: &Value, streaming: bool, what: &str) {
    if streaming {
        let out = stack.stream(body).await;
        assert_stream_result_or_error(&out, what);
        assert!(out.error.is_some(), "{what}: the fault ends the stream");
    } else {
        let out = stack.chat(body).await;
        assert_result_or_error(&out, what);
        assert!(out.status >= 500, "{what}: {} {}", out.status, out.body);
    }
}

/// When every sidecar fails (each chat accepted, then statusCode 500), requests keep being
/// tried: at most half of the pool is ejected (GATEWAY_MAX_EJECTION_PERCENT=50), so no
/// request gets an instant pool-wide 503, and the next chat after the fault is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sidecar_failing_still_leaves_requests_tried() {
    let stack = Stack::start(two_sidecars()).await;
    arm_everywhere(&stack, "internal").await;
    let before = asks(&stack).await;
    for i in 0..9 {
        let out = stack.chat(&user(&format!("failing everywhere {i}"))).await;
        assert_result_or_error(&out, "all failing");
        assert_eq!(
            out.status, 502,
            "request {i} was tried, not refused: {}",
            out.body
        );
    }
    assert_eq!(
        asks(&stack).await,
        before + 9,
        "every request reached an instance, once"
    );
    assert!(
        ejections(&stack).await <= 1.0,
        "at most half of two sidecars ejected"
    );
    arm_everywhere(&stack, "none").await;
    let ok = stack.chat(&user("all healthy again")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

/// A client that stops reading a long stream for 10 s is neither cut nor held against its
/// sidecar: the stream completes and nothing is ejected.
///
/// The client's socket has a 4 KiB receive buffer (set before connecting, so the window it
/// advertises stays small), and the answer is 30,000 pieces (about 5 MB of SSE): the
/// socket buffers on both sides cannot absorb it, so the gateway's writes stop and its
/// per-stream queue grows far past its 512 events while the client pauses (the sidecar
/// merges bursts of pieces into fewer deltas, but thousands remain). A gateway that
/// cut a reader whose queue filled (as before issue 14) fails this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_its_whole_stream_and_ejects_nothing() {
    const PIECES: usize = 30_000;
    let stack = Stack::start(StackSpec {
        sim: test_support::stack::SimOptions {
            // As fast as the simulator can: the whole answer is upstream long before the
            // client reads again.
            chunk_delay_ms: 0,
            extra_args: vec!["--answer-pieces".into(), PIECES.to_string()],
            ..test_support::stack::SimOptions::default()
        },
        ..StackSpec::default()
    })
    .await;
    let body = openai::chat_body(&[("user", "a very long answer please")], true, None);
    let mut client = slow_reader::SmallWindow::connect(stack.gateway.port).await;
    client.post_json("/v1/chat/completions", &body).await;
    let head = client.read_some().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The reader pauses while the answer streams in.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    // Then it reads at full speed: with its 4 KiB window the 5 MB would take a minute
    // (delayed ACKs on tiny segments), which on a loaded CI machine ran past the deadline.
    client.widen_window();
    let text = head + &client.read_to_end().await;
    if let Some(at) = text.find("\"error\"") {
        panic!(
            "an error event after {} bytes: {}",
            at,
            &text[at.saturating_sub(200)..(at + 400).min(text.len())]
        );
    }
    assert!(text.contains("data: [DONE]"), "the stream completed");
    // The sidecar merges text that arrives in a burst into fewer deltas, so count
    // characters: the simulator pads the answer with filler words to at least PIECES
    // characters (PIECES + 17 at most), so a lost piece shows as a gap in the filler or a
    // short answer.
    let (deltas, content) = slow_reader::SmallWindow::contents(&text);
    const FILLER: &str = " lingma-sim filler";
    let filler = content.find(FILLER).map_or("", |at| &content[at..]);
    assert!(
        content.chars().count() >= PIECES && filler == FILLER.repeat(filler.len() / FILLER.len()),
        "every piece arrived, in order: {} characters in {deltas} deltas",
        content.chars().count()
    );
    // The sidecar merges at most 32 pieces into one delta, so at least 938 reach the
    // gateway: more than its old 512-event stream buffer held.
    assert!(
        deltas > 512,
        "{deltas} deltas: too few to overflow the gateway's old 512-event stream buffer"
    );
    assert_eq!(ejections(&stack).await, 0.0, "a slow reader ejects nothing");
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

mod slow_reader {
    //! A raw HTTP/1.1 client whose socket has a small receive buffer (reqwest cannot set
    //! SO_RCVBUF before connecting).

    use serde_json::Value;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct SmallWindow {
        tcp: TcpStream,
    }

    impl SmallWindow {
        pub async fn connect(port: u16) -> Self {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .expect("socket");
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
            socket.connect(&addr.into()).expect("connect");
            socket.set_nonblocking(true).expect("nonblocking");
            let tcp = TcpStream::from_std(socket.into()).expect("tokio socket");
            Self { tcp }
        }

        pub async fn post_json(&mut self, path: &str, body: &Value) {
            let body = body.to_string();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                fault_suite::API_KEY,
                body.len()
            );
            self.tcp.write_all(head.as_bytes()).await.expect("head");
            self.tcp.write_all(body.as_bytes()).await.expect("body");
        }

        /// What one read returns (the head and the first events).
        pub async fn read_some(&mut self) -> String {
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), self.tcp.read(&mut buf))
                .await
                .expect("the gateway answers in time")
                .expect("read");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }

        /// A large receive buffer from now on (the window grows with it, up to 64 KiB:
        /// the small buffer at connect time left the window unscaled).
        pub fn widen_window(&self) {
            socket2::SockRef::from(&self.tcp)
                .set_recv_buffer_size(1 << 20)
                .expect("SO_RCVBUF");
        }

        /// The number of content deltas in a raw chunked SSE response, and their text.
        pub fn contents(raw: &str) -> (usize, String) {
            let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let (mut deltas, mut text, mut events) = (0, String::new(), String::new());
            let mut rest = body;
            // Chunked transfer coding: "<hex size>\r\n<data>\r\n" ..., "0\r\n\r\n".
            while let Some((size, after)) = rest.split_once("\r\n") {
                let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
                if size == 0 {
                    break;
                }
                events.push_str(after.get(..size).expect("a whole chunk"));
                rest = after.get(size + 2..).unwrap_or("");
            }
            for data in events.lines().filter_map(|l| l.strip_prefix("data: ")) {
                let Ok(v) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                    deltas += 1;
                    text.push_str(c);
                }
            }
            (deltas, text)
        }

        /// Everything until the gateway closes the connection (`connection: close`).
        pub async fn read_to_end(&mut self) -> String {
            let mut all = Vec::new();
            tokio::time::timeout(Duration::from_secs(120), self.tcp.read_to_end(&mut all))
                .await
                .expect("the stream ends in time")
                .expect("the stream is not cut");
            String::from_utf8_lossy(&all).into_owned()
        }
    }
}
