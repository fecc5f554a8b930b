//! The gateway's WebSocket (`/v1/mux`, sub-protocol `lingma-mux.v1`): many concurrent chats
//! on one connection, told apart by the gateway's stream id. See `docs/mux-protocol.md`.
//!
//! Per connection: a reader (this task) that starts and cancels chats, a writer task that
//! owns the socket's sending half (status pushes, the `sessions`/`load` announcements of
//! `announce`, and chat frames through one bounded channel), and one task per chat. Each
//! chat's bookkeeping is a [`StreamEntry`] guard: dropping it (finish, error, cancel, disconnect, panic) removes the stream and lowers
//! the open-streams gauge.

use crate::announce::Announcer;
use crate::chat::{self, Output};
use crate::state::SidecarState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use mux_protocol::{ClientMessage, ErrorKind, ServerMessage, StreamId};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames waiting for the socket, per connection. Chats wait when it is full, which slows
/// their Lingma streams rather than growing memory.
const OUTBOUND_FRAMES: usize = 1024;
/// Most frames written before one flush.
const WRITE_BATCH: usize = 64;
/// A gateway silent (no frame, not even a pong) for this many keepalive periods is
/// dropped, so one that vanished without closing does not hold streams forever.
const SILENT_PERIODS: u32 = 3;

type Streams = Arc<Mutex<HashMap<StreamId, CancellationToken>>>;

/// One chat's bookkeeping; freed on drop.
struct StreamEntry {
    id: StreamId,
    streams: Streams,
    state: Arc<SidecarState>,
}

impl StreamEntry {
    fn open(
        id: StreamId,
        streams: &Streams,
        state: &Arc<SidecarState>,
    ) -> Option<(Self, CancellationToken)> {
        let token = CancellationToken::new();
        {
            let mut map = streams.lock();
            if map.contains_key(&id) {
                return None;
            }
            map.insert(id, token.clone());
        }
        state.metrics.open_streams.inc();
        Some((
            Self {
                id,
                streams: streams.clone(),
                state: state.clone(),
            },
            token,
        ))
    }
}

impl Drop for StreamEntry {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
        self.state.metrics.open_streams.dec();
    }
}

/// Serve one gateway connection until it closes or the sidecar shuts down.
pub async fn serve(socket: WebSocket, state: Arc<SidecarState>) {
    state.metrics.mux_connections.inc();
    let (sink, mut incoming) = socket.split();
    let (tx, rx) = mpsc::channel::<String>(OUTBOUND_FRAMES);
    let streams: Streams = Arc::new(Mutex::new(HashMap::new()));
    let conn_done = CancellationToken::new();
    let writer = tokio::spawn(write_loop(sink, rx, state.clone(), conn_done.clone()));

    let mut last_heard = tokio::time::Instant::now();
    loop {
        let frame = tokio::select! {
            frame = incoming.next() => {
                last_heard = tokio::time::Instant::now();
                frame
            }
            _ = tokio::time::sleep_until(last_heard + state.keepalive * SILENT_PERIODS) => {
                tracing::warn!("gateway silent for too long; closing its connection");
                break;
            }
            _ = conn_done.cancelled() => break,
            _ = state.closing.cancelled() => break,
        };
        match frame {
            Some(Ok(Message::Text(text))) => on_message(text.as_str(), &state, &streams, &tx).await,
            Some(Ok(Message::Binary(_))) => {
                tracing::debug!("binary frame from the gateway ignored");
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "gateway connection error");
                break;
            }
        }
    }

    // Gateway gone (or shutting down): stop every chat of this connection. Their guards
    // free the bookkeeping as the tasks end.
    let open: Vec<CancellationToken> = streams.lock().values().cloned().collect();
    for token in open {
        token.cancel();
    }
    conn_done.cancel();
    drop(tx);
    let _ = writer.await;
    state.metrics.mux_connections.dec();
}

async fn on_message(
    text: &str,
    state: &Arc<SidecarState>,
    streams: &Streams,
    tx: &mpsc::Sender<String>,
) {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(ClientMessage::Chat { id, request }) => {
            let Some((entry, cancel)) = StreamEntry::open(id, streams, state) else {
                send_error(tx, id, ErrorKind::BadRequest, "stream id already in use").await;
                return;
            };
            let state = state.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _entry = entry;
                let mut out = Output::new(tx, id);
                let outcome = chat::run(&state, id, request, &mut out, &cancel).await;
                state
                    .metrics
                    .chats
                    .with_label_values(&[outcome.label()])
                    .inc();
            });
        }
        Ok(ClientMessage::Cancel { id }) => {
            let token = streams.lock().get(&id).cloned();
            if let Some(token) = token {
                token.cancel();
            }
        }
        Err(_) => {
            // Answer the stream when its id can be read, so the gateway is not left waiting.
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64));
            tracing::warn!(stream = ?id, "malformed message from the gateway");
            if let Some(id) = id {
                send_error(tx, id, ErrorKind::BadRequest, "malformed message").await;
            }
        }
    }
}

async fn send_error(tx: &mpsc::Sender<String>, id: StreamId, kind: ErrorKind, message: &str) {
    let msg = ServerMessage::Error {
        id,
        kind,
        message: message.to_owned(),
        before_output: true,
    };
    if let Ok(text) = serde_json::to_string(&msg) {
        let _ = tx.send(text).await;
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<String>,
    state: Arc<SidecarState>,
    done: CancellationToken,
) {
    let mut health = state.subscribe();
    let first_status = state.status();
    let mut ping_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + state.keepalive,
        state.keepalive,
    );
    if send_status(&mut sink, &first_status).await.is_err() {
        done.cancel();
        return;
    }
    // Right after the first status: the session keys held now, then changes and load.
    let (mut announcer, snapshot) = Announcer::start(state.clone(), &first_status);
    if send_frames(&mut sink, snapshot).await.is_err() {
        done.cancel();
        return;
    }
    loop {
        tokio::select! {
            biased;
            _ = state.closing.cancelled() => {
                let _ = sink.send(Message::Close(Some(CloseFrame {
                    code: axum::extract::ws::close_code::AWAY,
                    reason: Utf8Bytes::from_static("sidecar shutting down"),
                }))).await;
                break;
            }
            changed = health.changed() => {
                if changed.is_err() {
                    break;
                }
                if send_status(&mut sink, &state.status()).await.is_err() {
                    break;
                }
            }
            // A chat's session is stored and its slot freed before its `finish` is queued,
            // and `write_batch` flushes pending announcements before any `finish`: a
            // gateway always hears of both before the client has its answer.
            frames = announcer.next_frames() => {
                if send_frames(&mut sink, frames).await.is_err() {
                    break;
                }
            }
            frame = rx.recv() => {
                let Some(first) = frame else { break };
                if write_batch(&mut sink, &mut rx, first, &mut announcer).await.is_err() {
                    break;
                }
            }
            _ = ping_tick.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    done.cancel();
}

/// Write the frame and whatever else is already waiting, then flush once. Pending
/// announcements go before any `finish` (see `Announcer::flush_now`).
async fn write_batch(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    rx: &mut mpsc::Receiver<String>,
    first: String,
    announcer: &mut Announcer,
) -> Result<(), axum::Error> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(frame) = next.take() {
        if is_finish(&frame) {
            for f in announcer.flush_now() {
                sink.feed(Message::Text(f.into())).await?;
            }
        }
        sink.feed(Message::Text(frame.into())).await?;
        written += 1;
        if written < WRITE_BATCH {
            next = rx.try_recv().ok();
        }
    }
    sink.flush().await
}

/// Whether a serialised chat frame is a `finish` (serde writes the tag first).
fn is_finish(frame: &str) -> bool {
    frame.starts_with(r#"{"type":"finish""#)
}

/// Write announcement frames and flush once.
async fn send_frames(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    frames: Vec<String>,
) -> Result<(), axum::Error> {
    for f in frames {
        sink.feed(Message::Text(f.into())).await?;
    }
    sink.flush().await
}

async fn send_status(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    status: &mux_protocol::SidecarStatus,
) -> Result<(), axum::Error> {
    let text =
        serde_json::to_string(&ServerMessage::Status(status.clone())).map_err(axum::Error::new)?;
    sink.send(Message::Text(text.into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_frames_are_recognised_by_their_tag() {
        let finish = ServerMessage::Finish {
            id: 1,
            finish_reason: mux_protocol::FinishReason::Stop,
            usage: mux_protocol::Usage::default(),
            session_id: "s".into(),
        };
        let delta = ServerMessage::Delta {
            id: 1,
            content: Some("finish".into()),
            reasoning_content: None,
        };
        assert!(is_finish(&serde_json::to_string(&finish).expect("json")));
        assert!(!is_finish(&serde_json::to_string(&delta).expect("json")));
    }
}
