//! A sidecar killed (SIGKILL) with chats open on it, then started again.

use fault_suite::{
    Stack, StackSpec, assert_result_or_error, assert_stream_result_or_error, user, user_stream,
};
use std::time::Duration;
use test_support::stack::SimOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_killed_and_restarted() {
    let mut stack = Stack::start(StackSpec {
        sidecars: 2,
        sim: SimOptions {
            chunks: 20,
            chunk_delay_ms: 50,
            ..SimOptions::default()
        },
        ..StackSpec::default()
    })
    .await;
    // Streams spread over both sidecars (distinct conversations hash apart).
    let mut streams = Vec::new();
    for i in 0..8 {
        let body = user_stream(&format!("conversation {i} about the restart"));
        streams.push(stack.spawn_stream(body));
    }
    test_support::wait_until(Duration::from_secs(10), || async {
        let mut open = 0;
        for s in &stack.sidecars {
            open += s
                .metrics()
                .await
                .ok()
                .and_then(|m| m.sum("sidecar_open_streams"))
                .unwrap_or(0.0) as u64;
        }
        open >= 8
    })
    .await
    .expect("streams open on the sidecars");
    stack.sidecars[0].kill();

    for s in streams {
        let out = s.await.expect("join").expect("HTTP answer");
        assert_stream_result_or_error(&out, "a stream open while a sidecar died");
    }
    // The survivor takes new traffic; a request that fails before output is retried on it.
    for i in 0..10 {
        let out = stack.chat(&user(&format!("after the kill {i}"))).await;
        assert_result_or_error(&out, "a request after the kill");
        assert_eq!(out.status, 200, "the other sidecar is live: {}", out.body);
    }

    stack.sidecars[0].restart().await.expect("sidecar restarts");
    let name = stack.sidecars[0].options.name.clone();
    test_support::wait_until(Duration::from_secs(20), || async {
        stack
            .gateway
            .metrics()
            .await
            .ok()
            .is_some_and(|m| m.sum_where("gateway_pool_instance_ready", "name", &name) == 1.0)
    })
    .await
    .expect("the gateway reconnects to the restarted sidecar");
    stack.eventually_ok(Duration::from_secs(10)).await;
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}
