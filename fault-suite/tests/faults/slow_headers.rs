//! Slow-header clients (issue 14): 2,000 sockets that send one header byte every second
//! cannot take the gateway down. The gateway runs with the common 1,024 open-file limit
//! and its defaults (at most GATEWAY_MAX_CONNECTIONS = 1000 connections); the header-read
//! deadline (GATEWAY_HEADER_READ_TIMEOUT_SEC, 1 s here so the test is short) closes every
//! slow socket, and a normal client is served within a bound set by that deadline.
//!
//! Before the deadline and the cap, the slow sockets were held forever and the 1,024th
//! made `accept` fail, so the normal client was never served.

use fault_suite::{Stack, StackSpec, user};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_SOCKETS: usize = 2_000;
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// The gateway's open-file limit: the common default of a Linux login.
const GATEWAY_NOFILE: u64 = 1_024;
/// What this test process needs: the slow sockets plus the stack's own.
const TEST_NOFILE: u64 = SLOW_SOCKETS as u64 + 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_sockets_do_not_stop_a_normal_client() {
    if let Err(why) = raise_own_nofile(TEST_NOFILE) {
        eprintln!("SKIPPED: cannot open {SLOW_SOCKETS} sockets in this process: {why}");
        return;
    }
    let mut spec = StackSpec::default();
    spec.gateway.extra_env.push((
        "GATEWAY_HEADER_READ_TIMEOUT_SEC".into(),
        HEADER_TIMEOUT.as_secs_f64().to_string(),
    ));
    // Quiet: a debug line per cut socket would be most of the output.
    spec.gateway.log_level = "info".to_owned();
    let stack = Stack::start(spec).await;
    let pid = stack.gateway.pid().expect("gateway pid");
    limit_nofile(pid, GATEWAY_NOFILE).expect("prlimit on the gateway");
    let addr = format!("127.0.0.1:{}", stack.gateway.port);

    let closed = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..SLOW_SOCKETS {
        let (addr, closed, opened) = (addr.clone(), closed.clone(), opened.clone());
        slow.spawn(async move { trickle_headers(&addr, &opened, &closed).await });
        // Ramp so the listen backlog never overflows (SYN retries would add seconds).
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    test_support::wait_until(Duration::from_secs(20), || async {
        opened.load(Ordering::Relaxed) == SLOW_SOCKETS
    })
    .await
    .expect("every slow socket connected");

    // A normal client meanwhile: a health check and a chat, each served within the time
    // two batches of slow sockets (1,000 accepted, 1,000 in the backlog) take to time out.
    let bound = HEADER_TIMEOUT * 2 + Duration::from_secs(6);
    let t = Instant::now();
    let health = tokio::time::timeout(bound, async {
        stack
            .http
            .get(format!("{}/healthz", stack.gateway.base_url()))
            .send()
            .await
            .map(|r| r.status().as_u16())
    })
    .await;
    assert!(
        matches!(health, Ok(Ok(200))),
        "/healthz not served within {bound:?} beside {SLOW_SOCKETS} slow sockets: {health:?}"
    );
    let chat = tokio::time::timeout(bound, stack.chat(&user("served beside slow sockets")))
        .await
        .expect("a chat served in time");
    assert_eq!(chat.status, 200, "{}", chat.body);
    eprintln!(
        "normal client served {:?} after the slow sockets were open",
        t.elapsed()
    );

    // Every slow socket is closed by the gateway, within the deadline of each batch.
    let all_closed = Duration::from_secs(20);
    test_support::wait_until(all_closed, || async {
        closed.load(Ordering::Relaxed) == SLOW_SOCKETS
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} of {SLOW_SOCKETS} slow sockets still open {:?} after they connected",
            SLOW_SOCKETS - closed.load(Ordering::Relaxed),
            started.elapsed()
        )
    });
    slow.abort_all();
    eprintln!("all slow sockets closed {:?} after the first connected", started.elapsed());
    stack.eventually_ok(Duration::from_secs(5)).await;
    stack.assert_quiescent().await;
    stack.assert_no_secrets();
}

/// Connect, then send a request head one byte a second until the gateway closes the
/// socket; count the close.
async fn trickle_headers(addr: &str, opened: &AtomicUsize, closed: &AtomicUsize) {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return;
    };
    opened.fetch_add(1, Ordering::Relaxed);
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n";
    let mut buf = [0u8; 512];
    for byte in head.iter().cycle() {
        if tcp.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            // A 408 or 400 before the close is fine; keep reading until EOF.
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    closed.fetch_add(1, Ordering::Relaxed);
}

/// Raise this process's soft open-file limit to `want` (within the hard limit), with
/// util-linux's `prlimit` (the workspace forbids `unsafe`, so no direct syscall here).
fn raise_own_nofile(want: u64) -> Result<(), String> {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), "--nofile", "--raw", "--noheadings", "--output=SOFT,HARD"])
        .output()
        .map_err(|e| format!("prlimit: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fields = text.split_whitespace();
    let soft = fields.next().and_then(|s| s.parse::<u64>().ok());
    let hard = fields.next().map(|h| h.parse::<u64>().unwrap_or(u64::MAX));
    let (Some(soft), Some(hard)) = (soft, hard) else {
        return Err(format!("cannot read the limit: {text:?}"));
    };
    if soft >= want {
        return Ok(());
    }
    if hard < want {
        return Err(format!("hard limit {hard} < {want}"));
    }
    set_nofile(std::process::id(), &format!("{want}:"))
}

/// Set another process's open-file limit (soft and hard) to `limit`.
fn limit_nofile(pid: u32, limit: u64) -> Result<(), String> {
    set_nofile(pid, &format!("{limit}:{limit}"))
}

fn set_nofile(pid: u32, limits: &str) -> Result<(), String> {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limits}")])
        .status()
        .map_err(|e| format!("prlimit: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("prlimit --nofile={limits} failed: {status}"))
    }
}
