//! One live mux connection: the outbound queue and the open streams, and the handle a
//! request holds on its stream (dropping it cancels the chat upstream).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mux_protocol::{ChatRequest, ClientMessage, ServerMessage, StreamId};
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Events buffered per stream. The reader never waits on a slow client: a stream whose
/// buffer is full is cancelled instead of stalling every other chat on the connection.
const STREAM_BUFFER: usize = 512;
pub(crate) const OUTBOUND_BUFFER: usize = 1024;

pub struct Link {
    outbound: mpsc::Sender<ClientMessage>,
    streams: Mutex<HashMap<StreamId, mpsc::Sender<ServerMessage>>>,
    next_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the connection to the sidecar closed")]
    Closed,
}

impl Link {
    pub(crate) fn new(outbound: mpsc::Sender<ClientMessage>) -> Self {
        Self {
            outbound,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn open_streams(&self) -> usize {
        self.streams.lock().len()
    }

    /// Send a chat and return the handle its events arrive on.
    pub async fn open(self: &Arc<Self>, request: ChatRequest) -> Result<ChatStream, OpenError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.streams.lock().insert(id, tx);
        let stream = ChatStream {
            link: self.clone(),
            id,
            rx,
            finished: false,
        };
        // On failure `stream` drops here and unregisters itself.
        self.outbound
            .send(ClientMessage::Chat { id, request })
            .await
            .map_err(|_| OpenError::Closed)?;
        Ok(stream)
    }

    /// Hand one message from the sidecar to its stream (called by the connection reader).
    pub(crate) fn dispatch(&self, message: ServerMessage) {
        let (id, last) = match &message {
            ServerMessage::Status(_) => return,
            ServerMessage::Started { id, .. } | ServerMessage::Delta { id, .. } => (*id, false),
            ServerMessage::Finish { id, .. } | ServerMessage::Error { id, .. } => (*id, true),
        };
        let mut streams = self.streams.lock();
        let Some(tx) = (if last {
            streams.remove(&id)
        } else {
            streams.get(&id).cloned()
        }) else {
            // Late frames of a cancelled stream: nothing waits for them.
            return;
        };
        drop(streams);
        if tx.try_send(message).is_err() && !last {
            // Full (client too slow) or gone: stop the chat upstream; the handle sees its
            // channel close and reports the stream as failed.
            self.streams.lock().remove(&id);
            let _ = self.outbound.try_send(ClientMessage::Cancel { id });
        }
    }

    /// The connection ended: every open stream sees its channel close.
    pub(crate) fn close_all(&self) {
        self.streams.lock().clear();
    }
}

/// The events of one chat. Dropping it before the end sends `Cancel` upstream.
pub struct ChatStream {
    link: Arc<Link>,
    id: StreamId,
    rx: mpsc::Receiver<ServerMessage>,
    finished: bool,
}

impl ChatStream {
    /// The next event; `None` when the connection was lost (or the stream was cancelled
    /// for being too slow).
    pub async fn next(&mut self) -> Option<ServerMessage> {
        let message = self.rx.recv().await;
        match &message {
            Some(ServerMessage::Finish { .. } | ServerMessage::Error { .. }) | None => {
                self.finished = true;
            }
            _ => {}
        }
        message
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let registered = self.link.streams.lock().remove(&self.id).is_some();
        if registered {
            let cancel = ClientMessage::Cancel { id: self.id };
            if let Err(mpsc::error::TrySendError::Full(cancel)) =
                self.link.outbound.try_send(cancel)
            {
                let outbound = self.link.outbound.clone();
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _ = outbound.send(cancel).await;
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            request_id: "r".into(),
            model: None,
            messages: vec![],
            scope: String::new(),
            session_reuse: true,
            queue_timeout_ms: 0,
        }
    }

    #[tokio::test]
    async fn dropping_an_open_stream_sends_cancel() {
        let (tx, mut rx) = mpsc::channel(8);
        let link = Arc::new(Link::new(tx));
        let stream = link.open(request()).await.expect("open");
        assert!(matches!(
            rx.recv().await,
            Some(ClientMessage::Chat { id: 1, .. })
        ));
        assert_eq!(link.open_streams(), 1);
        drop(stream);
        assert_eq!(rx.recv().await, Some(ClientMessage::Cancel { id: 1 }));
        assert_eq!(link.open_streams(), 0);
    }

    #[tokio::test]
    async fn finished_streams_do_not_cancel() {
        let (tx, mut rx) = mpsc::channel(8);
        let link = Arc::new(Link::new(tx));
        let mut stream = link.open(request()).await.expect("open");
        let _chat = rx.recv().await;
        link.dispatch(ServerMessage::Error {
            id: 1,
            kind: mux_protocol::ErrorKind::Upstream,
            message: "x".into(),
            before_output: true,
        });
        assert!(matches!(
            stream.next().await,
            Some(ServerMessage::Error { .. })
        ));
        drop(stream);
        assert!(rx.try_recv().is_err(), "no cancel after the end");
        assert_eq!(link.open_streams(), 0);
    }

    #[tokio::test]
    async fn lost_connection_ends_streams() {
        let (tx, _rx) = mpsc::channel(8);
        let link = Arc::new(Link::new(tx));
        let mut stream = link.open(request()).await.expect("open");
        link.close_all();
        assert!(stream.next().await.is_none());
    }
}
