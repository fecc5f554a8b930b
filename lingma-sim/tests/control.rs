//! Faults and the concurrency cap, switched at start and at run time through the control
//! API, and the stats that tell tests what reached "Lingma".

mod common;

use common::{SimProcess, WAIT, ask_params, temp_work_dir};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn a_fault_switched_at_run_time_changes_the_next_chat() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--max-concurrent-chats", "0"]).await;
    let mut c = sim.client().await;
    assert_eq!(
        c.chat("r1", "s", "one", false).await.finish["statusCode"],
        200
    );

    // The control API wants the token.
    let anonymous = reqwest::Client::new()
        .post(sim.http("/control/fault"))
        .json(&json!({"fault": "error"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(anonymous.status(), 401);
    let unknown = sim
        .control("/control/fault", json!({"fault": "gremlins"}))
        .await;
    assert_eq!(unknown.status(), 400);

    let set = sim
        .control(
            "/control/fault",
            json!({"fault": "rate_limited", "times": 1}),
        )
        .await;
    assert_eq!(set.status(), 200);
    let limited = c.chat("r2", "s", "two", true).await;
    assert_eq!(limited.finish["statusCode"], 429);
    assert_eq!(
        c.chat("r3", "s", "three", true).await.finish["statusCode"],
        200,
        "times:1 applies once"
    );

    for (fault, code) in [
        ("forbidden", 403),
        ("timeout", 408),
        ("internal", 500),
        ("filtered", 601),
        ("quota_exhausted", 403),
    ] {
        sim.control("/control/fault", json!({"fault": fault, "times": 1}))
            .await;
        let chat = c.chat(&format!("r-{fault}"), "s", "x", true).await;
        assert_eq!(chat.finish["statusCode"], code, "{fault}");
    }

    sim.control("/control/fault", json!({"fault": "error"}))
        .await;
    for i in 0..2 {
        let refused = c.chat(&format!("e{i}"), "s", "x", true).await;
        assert_eq!(
            refused.ask_response["error"]["code"], -32603,
            "until cleared"
        );
    }
    sim.control("/control/fault", json!({"fault": "none"}))
        .await;
    assert_eq!(
        c.chat("r4", "s", "four", true).await.finish["statusCode"],
        200
    );

    // forget_session: the reply silently loses its context.
    sim.control(
        "/control/fault",
        json!({"fault": "forget_session", "times": 1}),
    )
    .await;
    let forgot = c.chat("r5", "s", "five", true).await;
    assert!(
        forgot.full_answer().contains("turn 1 of session s:"),
        "{}",
        forgot.full_answer()
    );

    // late_frames: a delta arrives after chat/finish.
    sim.control(
        "/control/fault",
        json!({"fault": "late_frames", "times": 1}),
    )
    .await;
    let late = c.chat("r6", "s", "six", true).await;
    assert_eq!(late.finish["statusCode"], 200);
    let after = c.next_frame().await;
    assert_eq!(after["method"], "chat/answer");
    assert_eq!(after["params"]["requestId"], "r6");

    // unknown_model and not_logged_in refuse the ask.
    sim.control(
        "/control/fault",
        json!({"fault": "unknown_model", "times": 1}),
    )
    .await;
    assert_eq!(
        c.chat("r7", "s", "x", true).await.ask_response["error"]["code"],
        -32602
    );
    sim.control(
        "/control/fault",
        json!({"fault": "not_logged_in", "times": 1}),
    )
    .await;
    assert_eq!(
        c.chat("r8", "s", "x", true).await.ask_response["error"]["code"],
        -32001
    );

    let stats = sim.stats().await;
    let recent = stats["recent_asks"].as_array().expect("recent_asks");
    let r2 = recent
        .iter()
        .find(|a| a["requestId"] == "r2")
        .expect("r2 recorded");
    assert_eq!(r2["questionText"], "two");
    assert_eq!(r2["isReply"], true);
    assert_eq!(r2["sessionId"], "s");
    assert_eq!(r2["extra"]["modelConfig"]["key"], "dashscope_qwen3_coder");
    assert_eq!(r2["mode"], "chat");
    assert_eq!(stats["asks_received"].as_u64(), Some(recent.len() as u64));
    assert!(stats["question_bytes_total"].as_u64().unwrap_or(0) >= 10);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["chats_in_flight"], 0);
}

#[tokio::test]
async fn mid_stream_faults_drop_hang_malformed_duplicate_and_crash() {
    let dir = temp_work_dir();
    let mut sim = SimProcess::start(dir.path(), &["--logged-in", "--chunks", "4"]).await;

    // drop: some deltas, then the connection ends without chat/finish.
    sim.control("/control/fault", json!({"fault": "drop", "times": 1}))
        .await;
    let mut c = sim.client().await;
    c.send_request("chat/ask", ask_params("d1", "s", "x", false))
        .await;
    let mut methods = Vec::new();
    while let Some(f) = c.try_next_frame(WAIT).await {
        methods.push(f["method"].as_str().unwrap_or("response").to_owned());
    }
    assert!(methods.contains(&"chat/answer".to_owned()), "{methods:?}");
    assert!(!methods.contains(&"chat/finish".to_owned()), "{methods:?}");

    // hang: accepted, then silence until chat/stop.
    sim.control("/control/fault", json!({"fault": "hang", "times": 1}))
        .await;
    let mut c = sim.client().await;
    let ask = c
        .send_request("chat/ask", ask_params("h1", "s", "x", false))
        .await;
    let accepted = c.next_frame().await;
    assert_eq!(accepted["id"], ask);
    assert!(
        c.try_next_frame(Duration::from_millis(300)).await.is_none(),
        "hang must send nothing"
    );
    c.send_request("chat/stop", json!({"requestId": "h1"}))
        .await;
    let mut finish = Value::Null;
    while let Some(f) = c.try_next_frame(WAIT).await {
        if f["method"] == "chat/finish" {
            finish = f;
            break;
        }
    }
    assert_eq!(finish["params"]["reason"], "cancelled");

    // malformed_frame: a well-delimited frame whose body is not JSON; the chat goes on.
    sim.control(
        "/control/fault",
        json!({"fault": "malformed_frame", "times": 1}),
    )
    .await;
    let mut c = sim.client().await;
    let chat = c.chat("m1", "s", "x", false).await;
    assert_eq!(chat.finish["statusCode"], 200);
    assert_eq!(c.bad_frames.len(), 1, "{:?}", c.bad_frames);

    // duplicate_request_id: the first delta twice with the same JSON-RPC id.
    sim.control(
        "/control/fault",
        json!({"fault": "duplicate_request_id", "times": 1}),
    )
    .await;
    let mut c = sim.client().await;
    let chat = c.chat("u1", "s", "x", false).await;
    let answer_ids: Vec<&Value> = chat
        .frames
        .iter()
        .filter(|f| f["method"] == "chat/answer")
        .map(|f| &f["id"])
        .collect();
    assert!(
        answer_ids.len() >= 2 && answer_ids[0] == answer_ids[1],
        "{answer_ids:?}"
    );

    // crash: the process exits mid-stream.
    sim.control("/control/fault", json!({"fault": "crash"}))
        .await;
    let mut c = sim.client().await;
    c.send_request("chat/ask", ask_params("c1", "s", "x", false))
        .await;
    while c.try_next_frame(WAIT).await.is_some() {}
    let status = sim.child.wait_exit(WAIT).expect("the simulator exits");
    assert!(!status.success());
}

#[tokio::test]
async fn the_concurrency_cap_refuses_or_finishes_429() {
    for (over_limit, expect_error) in [("error", true), ("finish429", false)] {
        let dir = temp_work_dir();
        let sim = SimProcess::start(
            dir.path(),
            &[
                "--logged-in",
                "--chunks",
                "20",
                "--chunk-delay-ms",
                "50",
                "--max-concurrent-chats",
                "1",
                "--over-limit",
                over_limit,
            ],
        )
        .await;
        let mut a = sim.client().await;
        a.send_request("chat/ask", ask_params("a1", "s1", "long", false))
            .await;
        test_support::wait_until(WAIT, || async { sim.stats().await["chats_in_flight"] == 1 })
            .await
            .expect("first chat in flight");
        let mut b = sim.client().await;
        let second = b.chat("b1", "s2", "second", false).await;
        if expect_error {
            assert_eq!(
                second.ask_response["error"]["code"], -32002,
                "{:?}",
                second.ask_response
            );
        } else {
            assert_eq!(second.finish["statusCode"], 429, "{:?}", second.finish);
        }
        let stats = sim.stats().await;
        assert_eq!(stats["chats_rejected"], 1);
        assert_eq!(stats["chats_in_flight"], 1);
        // Once the first chat ends, a new one is admitted.
        a.send_request("chat/stop", json!({"requestId": "a1"}))
            .await;
        test_support::wait_until(WAIT, || async { sim.stats().await["chats_in_flight"] == 0 })
            .await
            .expect("slot freed");
        assert_eq!(
            b.chat("b2", "s2", "third", false).await.finish["statusCode"],
            200
        );
    }
}

#[tokio::test]
async fn prefill_delays_the_first_token_by_the_size_of_the_question() {
    let dir = temp_work_dir();
    // 100 ms per KiB: an 8 KiB question costs 800 ms, a 64-byte one about 6 ms.
    let sim = SimProcess::start(
        dir.path(),
        &["--logged-in", "--prefill-us-per-kib", "100000"],
    )
    .await;
    let mut c = sim.client().await;
    let long = "x".repeat(8 * 1024);
    let started = std::time::Instant::now();
    assert_eq!(
        c.chat("p1", "s-long", &long, false).await.finish["statusCode"],
        200
    );
    let long_took = started.elapsed();
    let stats = sim.stats().await;
    assert_eq!(stats["last_prefill_us"], 800_000, "{stats}");
    assert!(
        long_took >= Duration::from_millis(800),
        "the prefill delay is applied: {long_took:?}"
    );
    // A continued session is sent only its new turn: the prefill is small.
    let short = "and the next step?";
    assert_eq!(
        c.chat("p2", "s-long", short, true).await.finish["statusCode"],
        200
    );
    let stats = sim.stats().await;
    let expected = short.len() as u64 * 100_000 / 1024;
    assert_eq!(stats["last_prefill_us"], expected, "{stats}");
    assert_eq!(stats["prefill_us_total"], 800_000 + expected, "{stats}");
}

#[tokio::test]
async fn a_fault_armed_for_a_period_clears_by_itself() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--max-concurrent-chats", "0"]).await;
    let mut c = sim.client().await;
    let set = sim
        .control(
            "/control/fault",
            json!({"fault": "quota_exhausted", "for_ms": 600}),
        )
        .await;
    assert_eq!(set.status(), 200);
    let body: Value = set.json().await.expect("JSON");
    assert_eq!(body["fault"], "quota_exhausted");
    assert!(
        body["remaining_ms"].as_u64().is_some_and(|ms| ms <= 600),
        "{body}"
    );
    for i in 0..2 {
        let limited = c.chat(&format!("q{i}"), "s", "x", false).await;
        assert_eq!(
            limited.finish["statusCode"], 403,
            "for every chat of the period"
        );
        assert_eq!(limited.finish["extra"]["errorCode"], 110);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sim.stats().await["fault"], "none", "the period is over");
    assert_eq!(
        c.chat("q-after", "s", "x", false).await.finish["statusCode"],
        200,
        "recovered"
    );
}
