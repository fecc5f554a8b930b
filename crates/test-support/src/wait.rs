use std::future::Future;
use std::time::{Duration, Instant};

/// A port that was free a moment ago (bind to 0, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Poll `check` every 20 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    wait_until(timeout, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
    .map_err(|e| anyhow::anyhow!("port {port}: {e}"))
}

/// Wait until GET `url` answers with `status`.
pub async fn wait_for_http(url: &str, status: u16, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    wait_until(timeout, || {
        let req = client.get(url).timeout(Duration::from_secs(2)).send();
        async move {
            req.await
                .map(|r| r.status().as_u16() == status)
                .unwrap_or(false)
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("GET {url} -> {status}: {e}"))
}
