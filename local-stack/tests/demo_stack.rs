//! Runs the README's first command (`lingma-local`, demo mode) as a real process and uses
//! the stack it starts: gateway + sidecars + simulators on 127.0.0.1, all in that process
//! (no other binary is built or started).

use std::time::Duration;
use test_support::{ProcessBuilder, binary, free_port, wait_for_http};

#[tokio::test(flavor = "multi_thread")]
async fn demo_stack_answers_and_stops_cleanly() {
    let port = free_port();
    let mut stack = ProcessBuilder::new("lingma-local", binary("local-stack", "lingma-local"))
        .args([
            "--port",
            &port.to_string(),
            "--instances",
            "2",
            "--first-token-delay-ms",
            "0",
            "--chunk-delay-ms",
            "0",
        ])
        .spawn()
        .expect("start lingma-local");
    let base = format!("http://127.0.0.1:{port}");
    wait_for_http(&format!("{base}/readyz"), 200, Duration::from_secs(60))
        .await
        .expect("stack ready");
    // The runner prints its banner after its own readiness poll: wait for it.
    test_support::wait_until(Duration::from_secs(10), || {
        let ready = stack.output().contains("is READY");
        async move { ready }
    })
    .await
    .expect("banner printed");
    let banner = stack.output();
    assert!(
        banner.contains("SIMULATOR"),
        "banner must say it is the simulator:\n{banner}"
    );
    assert!(
        banner.contains(&format!("{base}/v1")),
        "banner prints the base_url"
    );

    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": "org_auto",
            "messages": [{"role": "user", "content": "hello from the demo test"}]
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json body");
    let content = resp["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        content.contains("lingma-sim") && content.contains("hello from the demo test"),
        "unexpected answer: {resp}"
    );

    let status = stack
        .terminate(Duration::from_secs(20))
        .expect("lingma-local exits after SIGTERM");
    assert!(status.success(), "clean exit, got {status}");
    let out = stack.output();
    assert!(
        out.contains("gateway stopped"),
        "gateway stopped gracefully:\n{out}"
    );
}
