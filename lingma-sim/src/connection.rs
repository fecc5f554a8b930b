//! The tasks that own one WebSocket connection: the accept loop, a reader that decodes
//! `Content-Length` frames across messages and dispatches them in order, one writer task fed by
//! a bounded channel (optionally coalescing frames or splitting each over two messages), and
//! the sweeper of unacked events. The handle the rest of the simulator holds is `conn::Conn`.

use crate::conn::{Conn, Out};
use crate::state::Sim;
use futures_util::{SinkExt, StreamExt};
use lingma_protocol::framing::FrameDecoder;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

/// Frames queued for one connection's writer.
const OUTBOX_CAPACITY: usize = 1024;
/// Largest coalesced WebSocket message.
const COALESCE_BYTES: usize = 64 * 1024;

pub(crate) async fn accept_loop(sim: Arc<Sim>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = sim.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                tracing::debug!(%peer, "WebSocket connection");
                tokio::spawn(serve(Arc::clone(&sim), tcp));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct ConnectionCount<'a>(&'a Sim);

impl Drop for ConnectionCount<'_> {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(sim: Arc<Sim>, tcp: TcpStream) {
    // Path-agnostic, like Lingma: any request path is accepted.
    let ws = match tokio_tungstenite::accept_async(tcp).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket handshake failed");
            return;
        }
    };
    sim.stats.connections.fetch_add(1, Ordering::Relaxed);
    sim.stats.connections_total.fetch_add(1, Ordering::Relaxed);
    let _count = ConnectionCount(&sim);
    let (sink, mut stream) = ws.split();
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    let conn = Arc::new(Conn::new(
        sim.next_conn_id.fetch_add(1, Ordering::Relaxed),
        tx,
        sim.shutdown.child_token(),
    ));
    tracing::info!(conn = conn.id, "client connected");
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        conn.closed.clone(),
        sim.config.coalesce_frames,
        sim.config.split_frames,
    ));
    let sweeper = tokio::spawn(sweep_unacked(Arc::clone(&sim), Arc::clone(&conn)));

    let mut decoder = FrameDecoder::new();
    loop {
        let next = tokio::select! {
            _ = conn.closed.cancelled() => break,
            m = stream.next() => m,
        };
        let bytes = match next {
            None | Some(Err(_)) => break,
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Binary(bin))) => match String::from_utf8(bin.to_vec()) {
                Ok(s) => s.into(),
                Err(_) => {
                    tracing::warn!(conn = conn.id, "binary message is not UTF-8; dropped");
                    continue;
                }
            },
            Some(Ok(WsMessage::Close(_))) => break,
            Some(Ok(_)) => continue,
        };
        on_message(&sim, &conn, &mut decoder, bytes.as_bytes()).await;
    }
    conn.closed.cancel();
    let _ = writer.await;
    let _ = sweeper.await;
    tracing::info!(conn = conn.id, "client disconnected");
}

async fn on_message(sim: &Arc<Sim>, conn: &Arc<Conn>, decoder: &mut FrameDecoder, bytes: &[u8]) {
    if decoder.pending() == 0 && !starts_like_a_header(bytes) {
        tracing::warn!(
            conn = conn.id,
            bytes = bytes.len(),
            "Unknown message header: message without Content-Length framing dropped"
        );
        return;
    }
    decoder.push(bytes);
    loop {
        match decoder.next_frame() {
            Ok(Some(body)) => crate::rpc::dispatch(sim, conn, &body).await,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(conn = conn.id, error = %e, "Unknown message header: buffered data dropped");
                break;
            }
        }
    }
}

/// Whether a message that starts a new frame begins like `Content-Length:` (or another LSP
/// header); a prefix counts, since a client may split the header itself.
fn starts_like_a_header(bytes: &[u8]) -> bool {
    const PREFIX: &[u8] = b"content-";
    let n = bytes.len().min(PREFIX.len());
    bytes[..n].eq_ignore_ascii_case(&PREFIX[..n])
}

type WsSink =
    futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, WsMessage>;

async fn write_loop(
    mut sink: WsSink,
    mut rx: mpsc::Receiver<Out>,
    closed: CancellationToken,
    coalesce: bool,
    split: bool,
) {
    loop {
        let first = tokio::select! {
            biased;
            m = rx.recv() => m,
            _ = closed.cancelled() => None,
        };
        let Some(mut item) = first else { break };
        // Write everything queued, then flush once.
        loop {
            let text = match item {
                Out::Abort => {
                    let _ = sink.flush().await;
                    closed.cancel();
                    return;
                }
                Out::Text(text) => text,
            };
            let mut pending_abort = false;
            let text = if coalesce {
                let mut batch = text;
                while batch.len() < COALESCE_BYTES {
                    match rx.try_recv() {
                        Ok(Out::Text(more)) => batch.push_str(&more),
                        Ok(Out::Abort) => {
                            pending_abort = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                batch
            } else {
                text
            };
            if write_text(&mut sink, text, split).await.is_err() {
                closed.cancel();
                return;
            }
            if pending_abort {
                item = Out::Abort;
                continue;
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            closed.cancel();
            return;
        }
    }
}

async fn write_text(
    sink: &mut WsSink,
    text: String,
    split: bool,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    if split && text.len() > 1 {
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        let second = text[cut..].to_owned();
        let mut first = text;
        first.truncate(cut);
        sink.feed(WsMessage::text(first)).await?;
        return sink.feed(WsMessage::text(second)).await;
    }
    sink.feed(WsMessage::text(text)).await
}

/// Log and count events the client never acked, like Lingma does.
async fn sweep_unacked(sim: Arc<Sim>, conn: Arc<Conn>) {
    let timeout = Duration::from_millis(sim.config.ack_timeout_ms.max(1));
    let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = conn.closed.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
        let expired = conn.take_expired(timeout);
        for (id, method) in expired {
            sim.stats.unacked_events.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                conn = conn.id,
                id,
                method,
                "send {method} (id {id}) failed: no response from client, timeout reached"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::starts_like_a_header;

    #[test]
    fn header_prefixes_are_recognised() {
        assert!(starts_like_a_header(b"Content-Length: 5\r\n\r\n{}"));
        assert!(starts_like_a_header(b"Cont"));
        assert!(starts_like_a_header(b"content-type: x"));
        assert!(!starts_like_a_header(b"{\"jsonrpc\":\"2.0\"}"));
    }
}
