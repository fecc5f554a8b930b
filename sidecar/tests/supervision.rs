//! Lingma dies mid-stream: open chats get an error, `/readyz` goes false then true, and the
//! sidecar itself never restarts. Supervised mode (the sidecar runs and restarts the
//! simulator binary as LINGMA_BIN) and attach mode (the test restarts it). Plus graceful
//! shutdown on SIGTERM.

mod common;

use common::*;
use mux_protocol::{ErrorKind, Role};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Records whether `/readyz` was ever seen failing, polling every 10 ms.
fn watch_unready(port: u16) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(AtomicBool::new(false));
    let flag = seen.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let status = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            if status == 503 {
                flag.store(true, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_lingma_crash_is_restarted_without_a_sidecar_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = test_support::free_port();
    let ws_port = test_support::free_port();
    let sim_bin = test_support::binary("lingma-sim", "lingma-sim");
    let mut sidecar = spawn_sidecar(&[
        ("LINGMA_BIN", sim_bin.display().to_string()),
        ("LINGMA_WORK_DIR", dir.path().display().to_string()),
        ("LINGMA_SOCKET_PORT", ws_port.to_string()),
        ("LINGMA_HTTP_PORT", http_port.to_string()),
        // Settings of the supervised simulator, inherited through the environment.
        ("LINGMA_SIM_LOGGED_IN", "true".into()),
        ("LINGMA_SIM_CONTROL_TOKEN", CONTROL_TOKEN.into()),
        ("LINGMA_SIM_CHUNKS", "20".into()),
        ("LINGMA_SIM_CHUNK_DELAY_MS", "30".into()),
    ])
    .await;
    sidecar.wait_ready().await;
    let pid = sidecar.proc.id();
    assert_eq!(sidecar.metric("sidecar_lingma_starts_total").await, 1.0);
    let mux = sidecar.mux().await;
    let r = mux
        .chat(1, request("s", vec![m(Role::User, "before the crash")]))
        .await;
    assert!(r.ok(), "{r:?}");

    let (unready_seen, poller) = watch_unready(sidecar.port);
    let control = SimControl::new(http_port, CONTROL_TOKEN);
    control
        .set_fault("crash", Some(1))
        .await
        .expect("sim control API");
    let r = mux
        .chat(2, request("s", vec![m(Role::User, "crash now")]))
        .await;
    let (kind, message, _) = r.error.expect("the open chat gets an error");
    assert_eq!(kind, ErrorKind::ConnectionLost, "{message}");

    sidecar
        .wait_metric("sidecar_lingma_starts_total", 2.0)
        .await;
    sidecar.wait_ready().await;
    poller.abort();
    assert!(
        unready_seen.load(Ordering::Relaxed),
        "/readyz went false during the restart"
    );
    assert!(sidecar.metric("sidecar_reconnects_total").await >= 1.0);

    // Same sidecar process, same gateway connection, working again.
    assert!(sidecar.proc.is_running());
    assert_eq!(sidecar.proc.id(), pid);
    mux.wait_status(|s| s.ready).await;
    let r = mux
        .chat(3, request("s", vec![m(Role::User, "after the restart")]))
        .await;
    assert!(r.ok(), "{r:?}");
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;

    // SIGTERM stops the supervised Lingma too (no orphan left behind).
    let exit = tokio::task::block_in_place(|| sidecar.proc.terminate(Duration::from_secs(15)));
    assert!(exit.is_some_and(|s| s.success()), "clean exit: {exit:?}");
    test_support::wait_until(WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", ws_port))
            .await
            .is_err()
    })
    .await
    .expect("the supervised simulator is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_lingma_killed_and_started_again() {
    let mut sim = Sim::start_logged_in(&["--chunks", "40", "--chunk-delay-ms", "50"]).await;
    let mut sidecar = spawn_sidecar(&sim.attach_env()).await;
    sidecar.wait_ready().await;
    let pid = sidecar.proc.id();
    let mux = sidecar.mux().await;

    let mut open = mux.start(1, request("s", vec![m(Role::User, "a long answer")]));
    first_delta(&mut open).await;
    sim.kill();
    let r = collect(open).await;
    let (kind, _, before_output) = r.error.expect("the open chat gets an error");
    assert_eq!(kind, ErrorKind::ConnectionLost);
    assert!(!before_output);

    test_support::wait_until(WAIT, || async { !sidecar.ready().await })
        .await
        .expect("/readyz goes false");
    mux.wait_status(|s| !s.ready).await;
    // While Lingma is away, a chat that may not wait fails at once.
    let mut no_wait = request("s", vec![m(Role::User, "anyone there?")]);
    no_wait.queue_timeout_ms = 0;
    let r = mux.chat(2, no_wait).await;
    assert_eq!(
        r.error.map(|e| (e.0, e.2)),
        Some((ErrorKind::Unavailable, true))
    );

    // A chat that may wait is served once Lingma is back.
    let waiting = mux.start(3, request("s", vec![m(Role::User, "waiting for you")]));
    sim.restart().await.expect("lingma-sim listens again");
    sidecar.wait_ready().await;
    let r = collect(waiting).await;
    assert!(r.ok(), "{r:?}");
    assert!(sidecar.proc.is_running());
    assert_eq!(sidecar.proc.id(), pid);
    sidecar.wait_metric("sidecar_open_streams", 0.0).await;
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_chats_then_exits() {
    let sim = Sim::start_logged_in(&[
        "--max-concurrent-chats",
        "0",
        "--chunks",
        "20",
        "--chunk-delay-ms",
        "50",
    ])
    .await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_MAX_CONCURRENT_CHATS", "4".into()));
    let mut sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    let mut open = mux.start(1, request("s", vec![m(Role::User, "finish me")]));
    first_delta(&mut open).await;

    let pid = sidecar.proc.id().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = mux.wait_status(|s| s.draining).await;
    assert!(!status.ready);
    assert_eq!(sidecar.get("/readyz", None).await.0, 503);
    let r = mux
        .chat(2, request("s", vec![m(Role::User, "too late")]))
        .await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::Unavailable));

    let r = collect(open).await;
    assert!(r.ok(), "the open chat finishes during the drain: {r:?}");
    let exit = tokio::task::block_in_place(|| sidecar.proc.wait_exit(Duration::from_secs(15)));
    assert!(exit.is_some_and(|s| s.success()), "clean exit: {exit:?}");
}

/// A Lingma that starts but never opens its port (a shell script standing in for a hung
/// process): the state becomes `failed`, chats fail at once, and the process is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_lingma_is_failed_and_restarted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("hung-lingma");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sidecar = spawn_sidecar(&[
        ("LINGMA_BIN", script.display().to_string()),
        (
            "LINGMA_WORK_DIR",
            dir.path().join("work").display().to_string(),
        ),
        ("LINGMA_SOCKET_PORT", test_support::free_port().to_string()),
        ("LINGMA_HTTP_PORT", test_support::free_port().to_string()),
        ("LINGMA_STARTUP_TIMEOUT", "1".into()),
    ])
    .await;
    sidecar
        .wait_metric("sidecar_connection_state{state=\"failed\"}", 1.0)
        .await;
    let (status, body) = sidecar.get("/readyz", None).await;
    assert_eq!(status, 503);
    assert!(body.contains("\"connection\":\"failed\""), "{body}");
    let mux = sidecar.mux().await;
    let r = mux.chat(1, request("s", vec![m(Role::User, "hi")])).await;
    assert_eq!(
        r.error.map(|e| (e.0, e.2)),
        Some((ErrorKind::Unavailable, true))
    );
    test_support::wait_until(WAIT, || async {
        sidecar.metric("sidecar_lingma_starts_total").await >= 2.0
    })
    .await
    .expect("the unresponsive process is restarted");
}
