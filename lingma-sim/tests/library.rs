//! The simulator in process (`lingma_sim::start`), as benchmarks and other crates' tests use
//! it: many interleaved chats over one connection, run-time faults through the handle, stats.

mod common;

use common::{RawClient, WAIT, ask_params};
use lingma_sim::{Fault, SimConfig};
use serde_json::json;
use std::collections::HashMap;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_interleaved_chats_each_get_only_their_own_deltas() {
    let sim = lingma_sim::start(SimConfig {
        logged_in: true,
        max_concurrent_chats: 0,
        chunks: 5,
        ..SimConfig::default()
    })
    .await
    .expect("start");
    assert_ne!(sim.ws_port(), 0);
    let mut c = RawClient::connect(sim.ws_port()).await;

    let n = 200;
    let started = Instant::now();
    for i in 0..n {
        c.send_request(
            "chat/ask",
            ask_params(
                &format!("r{i}"),
                &format!("s{i}"),
                &format!("question {i}"),
                false,
            ),
        )
        .await;
    }
    let mut deltas: HashMap<String, String> = HashMap::new();
    let mut finished = 0;
    while finished < n {
        let f = c.next_frame().await;
        let rid = f["params"]["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match f["method"].as_str() {
            Some("chat/answer") => deltas
                .entry(rid)
                .or_default()
                .push_str(f["params"]["text"].as_str().unwrap_or_default()),
            Some("chat/finish") => {
                let full = f["params"]["fullAnswer"].as_str().unwrap_or_default();
                assert_eq!(deltas.get(&rid).map(String::as_str), Some(full), "{rid}");
                let i = rid.trim_start_matches('r');
                assert!(
                    full.contains(&format!("you said \"question {i}\"")),
                    "{rid}: {full}"
                );
                finished += 1;
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    eprintln!("{n} chats over one connection in {elapsed:?} (debug build)");
    c.call("ping", json!({})).await;
    let stats = sim.stats();
    assert_eq!(stats.chats_total, n as u64);
    assert_eq!(stats.chats_in_flight, 0);
    assert_eq!(stats.unacked_events, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn handle_switches_faults_and_a_library_crash_only_stops_the_servers() {
    let sim = lingma_sim::start(SimConfig {
        logged_in: true,
        chunks: 4,
        ..SimConfig::default()
    })
    .await
    .expect("start");
    let mut c = RawClient::connect(sim.ws_port()).await;
    assert_eq!(
        c.chat("r1", "s", "hi", false).await.finish["statusCode"],
        200
    );

    sim.set_fault(Fault::Internal, Some(1));
    assert_eq!(
        c.chat("r2", "s", "hi", true).await.finish["statusCode"],
        500
    );
    assert_eq!(sim.fault().0, Fault::None);

    // no_reply: the ask gets nothing at all.
    sim.set_fault(Fault::NoReply, Some(1));
    c.send_request("chat/ask", ask_params("r3", "s", "x", true))
        .await;
    assert!(
        c.try_next_frame(std::time::Duration::from_millis(200))
            .await
            .is_none()
    );

    // truncated_frame: a frame cut short, then the connection ends.
    sim.set_fault(Fault::TruncatedFrame, Some(1));
    c.send_request("chat/ask", ask_params("r4", "s", "x", true))
        .await;
    while c.try_next_frame(WAIT).await.is_some() {}
    assert!(
        c.messages
            .last()
            .is_some_and(|m| m.starts_with("Content-Length: 4096")),
        "{:?}",
        c.messages.last()
    );

    sim.set_fault(Fault::Crash, None);
    let mut c = RawClient::connect(sim.ws_port()).await;
    c.send_request("chat/ask", ask_params("r5", "s", "x", false))
        .await;
    tokio::time::timeout(WAIT, sim.stopped())
        .await
        .expect("stops on crash");
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_fault_delays_the_first_token_and_the_chunks() {
    let sim = lingma_sim::start(SimConfig {
        logged_in: true,
        chunks: 3,
        slow_first_token_ms: 300,
        slow_chunk_delay_ms: 100,
        ..SimConfig::default()
    })
    .await
    .expect("start");
    let mut c = RawClient::connect(sim.ws_port()).await;
    let fast = Instant::now();
    assert_eq!(
        c.chat("r1", "s", "quick", false).await.finish["statusCode"],
        200
    );
    assert!(
        fast.elapsed().as_millis() < 300,
        "zero delays must not sleep"
    );

    sim.set_fault(Fault::Slow, Some(1));
    let slow = Instant::now();
    let chat = c.chat("r2", "s", "slowly", true).await;
    assert_eq!(chat.finish["statusCode"], 200);
    assert!(slow.elapsed().as_millis() >= 500, "{:?}", slow.elapsed());
    sim.shutdown().await;
}
