//! The accept loop: hyper's HTTP/1 connection builder with its timer on (so the
//! header-read deadline applies from the first byte), a cap on open connections,
//! TCP_NODELAY on every accepted socket, and graceful shutdown (stop accepting, let open
//! requests and streams finish).
//!
//! HTTP/1.1 only: no client of this API needs cleartext HTTP/2 (h2c), and hyper-util's
//! auto-detecting builder reads the first bytes of every connection to look for the h2
//! preface without any deadline (a client that connects and sends nothing, or trickles
//! `PRI * HTTP/2.0`, held a slot forever) and keeps a larger state per connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// hyper's smallest `max_buf_size` (it panics below it).
const MIN_BUF: usize = 8192;

/// How client connections are taken.
#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    /// Longest a client may take to send a request's headers (GATEWAY_HEADER_READ_TIMEOUT_SEC);
    /// `None` = no limit.
    pub header_read_timeout: Option<Duration>,
    /// Most connections open at once (GATEWAY_MAX_CONNECTIONS); further clients wait in
    /// the listen backlog until one closes.
    pub max_connections: usize,
    /// Largest HTTP/1 read and write buffer of a connection (GATEWAY_HTTP1_MAX_BUF_BYTES,
    /// at least 8192: hyper's minimum).
    pub http1_max_buf_bytes: usize,
}

/// Serve `router` on `listener` until `shutdown` completes, then wait for open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // hyper grows a connection's read buffer with the request (up to ~400 KiB by
        // default) and keeps it for the connection's life, which is a whole SSE stream
        // here: bound it (request heads and SSE events are small; bodies stream through).
        .max_buf_size(settings.http1_max_buf_bytes.max(MIN_BUF));
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    pause_after_accept_error(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Chat answers are small writes (one SSE event, one JSON body): with Nagle on, each
        // can wait for the client's delayed ACK (~40 ms) on a keep-alive connection.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(tcp), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one connection (reset before accept) are the client's; anything else (out of
/// file descriptors) gets a pause so the loop does not spin.
async fn pause_after_accept_error(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(
        settings: ServeSettings,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, settings, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    async fn get(conn: &mut TcpStream) -> String {
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 1024];
        let n = conn.read(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off() {
        let (addr, _stop) = start(ServeSettings {
            header_read_timeout: Some(Duration::from_millis(300)),
            max_connections: 10,
            http1_max_buf_bytes: 16_384,
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nhost")
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match slow.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a slow-header client kept its socket");
        // A normal client is served.
        let mut fine = TcpStream::connect(addr).await.expect("connect");
        assert!(get(&mut fine).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn silent_connections_and_h2_prefaces_are_cut_off_too() {
        let (addr, _stop) = start(ServeSettings {
            header_read_timeout: Some(Duration::from_millis(300)),
            max_connections: 10,
            http1_max_buf_bytes: 16_384,
        })
        .await;
        for first_bytes in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            conn.write_all(first_bytes).await.expect("write");
            let mut buf = [0u8; 256];
            let closed = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "kept a socket that sent {first_bytes:?}");
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_one() {
        let (addr, _stop) = start(ServeSettings {
            header_read_timeout: None,
            max_connections: 2,
            http1_max_buf_bytes: 16_384,
        })
        .await;
        let mut first = TcpStream::connect(addr).await.expect("connect");
        assert!(get(&mut first).await.starts_with("HTTP/1.1 200"));
        let mut second = TcpStream::connect(addr).await.expect("connect");
        assert!(get(&mut second).await.starts_with("HTTP/1.1 200"));
        // Third: the kernel completes the handshake, but nobody serves it while two are open.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let waiting = tokio::time::timeout(Duration::from_millis(300), get(&mut third)).await;
        assert!(waiting.is_err(), "served beyond the cap");
        drop(first);
        let served = tokio::time::timeout(Duration::from_secs(3), async {
            let mut buf = vec![0u8; 1024];
            let n = third.read(&mut buf).await.expect("read");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await
        .expect("served once a connection closed");
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    }
}
