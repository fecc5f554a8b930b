//! The wire protocol over a raw WebSocket against the real binary: framing rules, login
//! gating, the frame order of a streamed chat, session memory, stop, acks, coalesced and
//! split frames.

mod common;

use common::{RawClient, SimProcess, WAIT, ask_params, log_of, temp_work_dir};
use lingma_protocol::framing::encode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn handshake_login_gate_streamed_chat_and_session_memory() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--chunks", "4"]).await;
    let mut c = sim.client().await;

    // Unframed JSON is dropped without a reply; the next framed request is answered first.
    c.send_text(r#"{"jsonrpc":"2.0","id":99,"method":"ping","params":{}}"#.to_owned())
        .await;
    let init = c
        .call("initialize", json!({"processId": null, "clientInfo": {"name": "t", "version": "1"}, "rootUri": "file:///w", "capabilities": {}, "workspaceFolders": []}))
        .await;
    assert_eq!(init["id"], 1, "the unframed ping must get no reply: {init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "lingma-sim");

    // `initialized` is an unknown notification: no reply at all.
    c.send_text(encode(
        r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#,
    ))
    .await;
    let ping = c.call("ping", json!({})).await;
    assert_eq!(ping["result"]["success"], true);

    // Logged out: status 1, no models, chat/ask refused with a JSON-RPC error.
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        1
    );
    assert_eq!(
        c.call("config/queryModels", json!({})).await["result"],
        json!({})
    );
    let refused = c.chat("r0", "s1", "hello", false).await;
    assert_eq!(
        refused.ask_response["error"]["code"], -32001,
        "{:?}",
        refused.ask_response
    );

    c.login().await;
    let status = c.call("auth/status", json!({})).await;
    assert_eq!(status["result"]["status"], 2);
    assert_eq!(status["result"]["name"], "dev@example.com");
    let models = c.call("config/queryModels", json!({})).await;
    let keys: Vec<&str> = models["result"]["chat"]
        .as_array()
        .expect("chat models")
        .iter()
        .filter_map(|m| m["key"].as_str())
        .collect();
    assert!(
        keys.contains(&"dashscope_qwen3_coder") && keys.contains(&"dashscope_qwen_max_latest"),
        "{keys:?}"
    );

    // Turn 1: exact frame order of section 4.
    let t1 = c.chat("r1", "s1", "hello", false).await;
    assert_eq!(t1.ask_response["result"]["success"], true);
    assert_eq!(t1.ask_response["result"]["isSuccess"], true);
    assert_eq!(
        t1.shape(),
        [
            "step:step_start",
            "session/title/update",
            "chat/answer",
            "chat/answer",
            "chat/answer",
            "chat/answer",
            "step:step_end",
            "chat/finish"
        ]
    );
    assert_eq!(t1.finish["statusCode"], 200);
    assert_eq!(t1.finish["reason"], "success");
    assert_eq!(t1.finish["sessionId"], "s1");
    assert_eq!(t1.full_answer(), t1.deltas());
    assert!(
        t1.full_answer()
            .starts_with("lingma-sim turn 1 of session s1: you said \"hello\"; previous: none"),
        "{}",
        t1.full_answer()
    );
    // Event ids increase.
    let ids: Vec<i64> = t1.frames.iter().filter_map(|f| f["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // Turn 2 continues the session: no title, turn number and previous message revealed.
    let t2 = c.chat("r2", "s1", "and then?", true).await;
    assert!(!t2.shape().contains(&"session/title/update".to_owned()));
    assert!(
        t2.full_answer()
            .contains("turn 2 of session s1: you said \"and then?\"; previous: \"hello\""),
        "{}",
        t2.full_answer()
    );

    // A reply to an unknown session silently starts at turn 1.
    let lost = c.chat("r3", "s-unknown", "again", true).await;
    assert!(
        lost.full_answer().contains("turn 1 of session s-unknow"),
        "{}",
        lost.full_answer()
    );

    // Session housekeeping.
    let list = c.call("chat/listAllSessions", json!({})).await;
    let ids: Vec<&str> = list["result"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["sessionId"].as_str())
        .collect();
    assert!(ids.contains(&"s1") && ids.contains(&"s-unknown"), "{ids:?}");
    let s1 = c
        .call("chat/getSessionById", json!({"sessionId": "s1"}))
        .await;
    assert_eq!(
        s1["result"]["chatRecords"].as_array().map(Vec::len),
        Some(2),
        "{s1}"
    );
    assert_eq!(s1["result"]["sessionTitle"], "hello");
    let deleted = c
        .call("chat/deleteSessionById", json!({"sessionId": "s1"}))
        .await;
    assert_eq!(deleted["result"]["success"], true);
    assert!(
        c.call("chat/getSessionById", json!({"sessionId": "s1"}))
            .await
            .get("error")
            .is_some()
    );
    assert_eq!(
        c.call("no/such/method", json!({})).await["error"]["code"],
        -32601
    );

    let log = log_of(dir.path());
    assert!(
        log.contains("Communication servers ready - WebSocket: "),
        "{log}"
    );
    assert!(log.contains("unknown method: initialized"), "{log}");
    assert!(log.contains("Unknown message header"), "{log}");
}

#[tokio::test]
async fn think_and_empty_deltas_keep_the_full_answer_whole() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(
        dir.path(),
        &[
            "--logged-in",
            "--think",
            "--empty-deltas",
            "--usage-sync",
            "--chunks",
            "3",
        ],
    )
    .await;
    let mut c = sim.client().await;
    let chat = c.chat("r1", "s1", "think first", false).await;
    let shape = chat.shape();
    assert_eq!(
        &shape[..4],
        [
            "step:step_start",
            "session/title/update",
            "think:start",
            "think:done"
        ],
        "{shape:?}"
    );
    let deltas: Vec<&Value> = chat
        .frames
        .iter()
        .filter(|f| f["method"] == "chat/answer")
        .collect();
    assert!(
        deltas.iter().any(|f| f["params"]["text"] == ""),
        "an empty delta is expected"
    );
    assert!(deltas.len() > 3);
    assert_eq!(chat.full_answer(), chat.deltas());
    let usage = c.try_next_frame(WAIT).await;
    let usage = usage.expect("a context/usage/sync frame");
    assert_eq!(usage["method"], "context/usage/sync");
    assert!(usage.get("id").is_none(), "a notification: {usage}");
    assert!(usage["params"]["usedTokens"].as_u64().unwrap_or(0) > 0);
}

#[tokio::test]
async fn stop_ends_the_stream_with_a_cancel_finish() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(
        dir.path(),
        &["--logged-in", "--chunks", "50", "--chunk-delay-ms", "100"],
    )
    .await;
    let mut c = sim.client().await;
    let ask = c
        .send_request(
            "chat/ask",
            ask_params("r1", "s1", "long answer please", false),
        )
        .await;
    // Wait for the first delta, then stop.
    loop {
        let f = c.next_frame().await;
        if f["method"] == "chat/answer" {
            break;
        }
        if f.get("method").is_none() && f["id"] == json!(ask) {
            assert_eq!(f["result"]["success"], true, "{f}");
        }
    }
    let stop = c
        .send_request("chat/stop", json!({"requestId": "r1", "sessionId": "s1"}))
        .await;
    let mut answers_after_stop = 0;
    let finish = loop {
        let f = c.next_frame().await;
        if f["id"] == json!(stop) && f.get("method").is_none() {
            assert_eq!(f["result"], json!({}));
            continue;
        }
        match f["method"].as_str() {
            Some("chat/finish") => break f["params"].clone(),
            Some("chat/answer") => answers_after_stop += 1,
            _ => {}
        }
    };
    assert_eq!(finish["reason"], "cancelled");
    assert!(
        answers_after_stop < 5,
        "the stream went on after chat/stop: {answers_after_stop}"
    );
    assert!(!finish["fullAnswer"].as_str().unwrap_or_default().is_empty());
}

#[tokio::test]
async fn unacked_events_are_logged_and_counted() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(
        dir.path(),
        &["--logged-in", "--chunks", "2", "--ack-timeout-ms", "150"],
    )
    .await;
    let mut c = sim.client().await;
    c.auto_ack = false;
    let chat = c.chat("r1", "s1", "no acks", false).await;
    let events = chat.frames.len() as u64;
    test_support::wait_until(WAIT, || async {
        sim.stats().await["unacked_events"].as_u64().unwrap_or(0) >= events
    })
    .await
    .expect("every unacked event is counted");
    assert!(log_of(dir.path()).contains("no response from client, timeout reached"));

    // An acking client leaves nothing unacked.
    let mut acking = sim.client().await;
    acking.chat("r2", "s2", "with acks", false).await;
    acking.call("ping", json!({})).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // let the ack timeout pass: nothing may be counted
    assert_eq!(sim.stats().await["unacked_events"].as_u64(), Some(events));
}

#[tokio::test]
async fn coalesced_frames_share_messages() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--coalesce-frames"]).await;
    let mut c = sim.client().await;
    let chat = c.chat("r1", "s1", "pack them", false).await;
    assert_eq!(chat.finish["statusCode"], 200);
    assert_eq!(chat.full_answer(), chat.deltas());
    let most = c
        .messages
        .iter()
        .map(|m| m.matches("Content-Length:").count())
        .max()
        .unwrap_or(0);
    assert!(
        most >= 2,
        "no message carried several frames: {:?}",
        c.messages
    );
}

#[tokio::test]
async fn split_frames_span_two_messages() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--split-frames"]).await;
    let mut c = sim.client().await;
    let chat = c.chat("r1", "s1", "split them", false).await;
    assert_eq!(chat.finish["statusCode"], 200);
    assert_eq!(chat.full_answer(), chat.deltas());
    let partial = c
        .messages
        .iter()
        .filter(|m| !m.starts_with("Content-Length:"))
        .count();
    assert!(
        partial * 2 >= c.messages.len(),
        "frames were not split: {:?}",
        c.messages
    );
}

#[tokio::test]
async fn client_frames_split_and_coalesced_are_understood() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--init-log-message"]).await;
    let mut c = RawClient::connect(sim.ws_port).await;
    let two = format!(
        "{}{}",
        encode(r#"{"jsonrpc":"2.0","id":"a","method":"ping","params":{}}"#),
        encode(r#"{"jsonrpc":"2.0","id":"b","method":"auth/status","params":{}}"#)
    );
    let (head, tail) = two.split_at(7); // inside "Content-Length"
    c.send_text(head.to_owned()).await;
    c.send_text(tail.to_owned()).await;
    let first = c.next_frame().await;
    let second = c.next_frame().await;
    assert_eq!(first["id"], "a");
    assert_eq!(second["id"], "b");
    assert_eq!(second["result"]["status"], 2);

    let init = c.send_request("initialize", json!({})).await;
    let note = c.next_frame().await;
    assert_eq!(note["method"], "window/logMessage");
    assert!(note.get("id").is_none());
    assert_eq!(c.next_frame().await["id"], init);
}

#[tokio::test]
async fn wait_for_ack_holds_each_event_until_it_is_acked() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(
        dir.path(),
        &["--logged-in", "--wait-for-ack", "--ack-timeout-ms", "20000"],
    )
    .await;
    let mut c = sim.client().await;
    c.auto_ack = false;
    let ask = c
        .send_request("chat/ask", ask_params("r1", "s1", "slowly", false))
        .await;
    assert_eq!(c.next_frame().await["id"], ask);
    let first = c.next_frame().await;
    assert_eq!(first["params"]["step"], "step_start");
    // Without the ack nothing more comes (the off-by-one hazard of non-acking clients).
    assert!(c.try_next_frame(Duration::from_millis(300)).await.is_none());
    c.send_text(encode(
        &json!({"jsonrpc": "2.0", "id": first["id"], "result": null}).to_string(),
    ))
    .await;
    let second = c.next_frame().await;
    assert_eq!(second["method"], "session/title/update");
}
