//! One live mux connection: the outbound queue and the open streams, and the handle a
//! request holds on its stream (dropping it cancels the chat upstream).
//!
//! The reader never waits on a slow client (that would stall every chat of the
//! connection) and never cuts one for being slow either: a stream's events queue up for
//! its reader, and only a reader that took nothing for the idle deadline while its queue
//! was full is given up on (as the client's fault, `cancelled`). The handle keeps the
//! gateway's own deadlines on the sidecar: `Started` within the start deadline, then no
//! silence longer than the idle deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mux_protocol::{ChatRequest, ClientMessage, ErrorKind, ServerMessage, StreamId};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::Deadlines;
use super::stream_queue::{QueueReceiver, QueueSender, stream_queue};

/// Events a stream may hold unread before its reader's stall is measured.
const STREAM_BUFFER: usize = 512;
/// Events a stream may hold unread at all (far above any answer Lingma gives).
const MAX_BACKLOG: usize = 65_536;
pub(crate) const OUTBOUND_BUFFER: usize = 1024;

pub struct Link {
    outbound: mpsc::Sender<ClientMessage>,
    streams: Mutex<HashMap<StreamId, StreamEntry>>,
    next_id: AtomicU64,
    deadlines: Deadlines,
    epoch: Instant,
}

struct StreamEntry {
    tx: QueueSender<ServerMessage>,
    backlog: Arc<Backlog>,
}

/// What a stream's reader has left unread, and when it last took something.
#[derive(Default)]
struct Backlog {
    queued: AtomicUsize,
    /// Milliseconds since the link's epoch.
    last_read_ms: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the connection to the sidecar closed")]
    Closed,
}

impl Link {
    pub(crate) fn new(outbound: mpsc::Sender<ClientMessage>, deadlines: Deadlines) -> Self {
        Self {
            outbound,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            deadlines,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn open_streams(&self) -> usize {
        self.streams.lock().len()
    }

    /// Send a chat and return the handle its events arrive on.
    pub async fn open(self: &Arc<Self>, request: ChatRequest) -> Result<ChatStream, OpenError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = stream_queue();
        let backlog = Arc::new(Backlog::default());
        backlog.last_read_ms.store(self.now_ms(), Ordering::Relaxed);
        self.streams.lock().insert(
            id,
            StreamEntry {
                tx,
                backlog: backlog.clone(),
            },
        );
        // The sidecar may queue the chat for `queue_timeout_ms` before asking Lingma.
        let start_within =
            Duration::from_millis(request.queue_timeout_ms).saturating_add(self.deadlines.start);
        let stream = ChatStream {
            link: self.clone(),
            id,
            rx,
            backlog,
            finished: false,
            started: false,
            start_deadline: tokio::time::Instant::now() + start_within,
        };
        // On failure `stream` drops here and unregisters itself.
        self.outbound
            .send(ClientMessage::Chat { id, request })
            .await
            .map_err(|_| OpenError::Closed)?;
        Ok(stream)
    }

    /// Hand one message from the sidecar to its stream (called by the connection reader;
    /// never waits).
    pub(crate) fn dispatch(&self, message: ServerMessage) {
        let (id, last) = match &message {
            ServerMessage::Status(_) | ServerMessage::Sessions(_) | ServerMessage::Load(_) => {
                return;
            }
            ServerMessage::Started { id, .. } | ServerMessage::Delta { id, .. } => (*id, false),
            ServerMessage::Finish { id, .. } | ServerMessage::Error { id, .. } => (*id, true),
        };
        let mut streams = self.streams.lock();
        let Some(entry) = streams.get(&id) else {
            // Late frames of a cancelled stream: nothing waits for them.
            return;
        };
        if !last && self.reader_stalled(&entry.backlog) {
            // The client took nothing for the idle deadline with a full buffer: it is the
            // client's fault (never the instance's). Stop the chat upstream and tell the
            // handle why.
            let entry = streams.remove(&id);
            drop(streams);
            if let Some(entry) = entry {
                let _ = entry.tx.send(ServerMessage::Error {
                    id,
                    kind: ErrorKind::Cancelled,
                    message: "The client did not read its stream in time.".to_owned(),
                    before_output: false,
                });
            }
            let _ = self.outbound.try_send(ClientMessage::Cancel { id });
            return;
        }
        entry.backlog.queued.fetch_add(1, Ordering::AcqRel);
        let gone = entry.tx.send(message).is_err();
        if last || gone {
            streams.remove(&id);
        }
        drop(streams);
        if gone && !last {
            // The handle is gone (its drop already sent `Cancel` unless it raced us).
            let _ = self.outbound.try_send(ClientMessage::Cancel { id });
        }
    }

    fn reader_stalled(&self, backlog: &Backlog) -> bool {
        let queued = backlog.queued.load(Ordering::Acquire);
        if queued >= MAX_BACKLOG {
            return true;
        }
        if queued < STREAM_BUFFER {
            return false;
        }
        let idle = u64::try_from(self.deadlines.idle.as_millis()).unwrap_or(u64::MAX);
        let last_read = backlog.last_read_ms.load(Ordering::Relaxed);
        self.now_ms().saturating_sub(last_read) > idle
    }

    /// The connection ended: every open stream sees its channel close.
    pub(crate) fn close_all(&self) {
        self.streams.lock().clear();
    }

    /// End every open stream with an `Error` of `kind` (the gateway stops them itself).
    pub(crate) fn fail_all(&self, kind: ErrorKind, message: &str) {
        for (id, entry) in self.streams.lock().drain() {
            entry.backlog.queued.fetch_add(1, Ordering::AcqRel);
            let _ = entry.tx.send(ServerMessage::Error {
                id,
                kind,
                message: message.to_owned(),
                before_output: false,
            });
        }
    }
}

/// The events of one chat. Dropping it before the end sends `Cancel` upstream.
pub struct ChatStream {
    link: Arc<Link>,
    id: StreamId,
    rx: QueueReceiver<ServerMessage>,
    backlog: Arc<Backlog>,
    finished: bool,
    started: bool,
    start_deadline: tokio::time::Instant,
}

impl ChatStream {
    /// The next event; `None` when the connection was lost. A sidecar that misses the
    /// gateway's own deadline (`Started` within the start deadline, then no silence over
    /// the idle deadline) gets its chat cancelled and the handle an `Error` of kind
    /// `timeout`.
    pub async fn next(&mut self) -> Option<ServerMessage> {
        let deadline = if self.started {
            tokio::time::Instant::now() + self.link.deadlines.idle
        } else {
            self.start_deadline
        };
        let message = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(message) => message,
            Err(_) => Some(self.time_out()),
        };
        match &message {
            Some(ServerMessage::Finish { .. } | ServerMessage::Error { .. }) | None => {
                self.finished = true;
            }
            Some(_) => self.started = true,
        }
        if message.is_some() {
            self.backlog.queued.fetch_sub(1, Ordering::AcqRel);
            self.backlog
                .last_read_ms
                .store(self.link.now_ms(), Ordering::Relaxed);
        }
        message
    }

    /// The sidecar missed a deadline: stop the chat there and end it here.
    fn time_out(&mut self) -> ServerMessage {
        // Counted as if dispatched, so the bookkeeping in `next` stays even.
        self.backlog.queued.fetch_add(1, Ordering::AcqRel);
        self.cancel_upstream();
        self.finished = true;
        ServerMessage::Error {
            id: self.id,
            kind: ErrorKind::Timeout,
            message: "The upstream instance did not answer in time.".to_owned(),
            before_output: !self.started,
        }
    }

    fn cancel_upstream(&self) {
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

impl Drop for ChatStream {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel_upstream();
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
            wait_for_slot: true,
        }
    }

    #[tokio::test]
    async fn dropping_an_open_stream_sends_cancel() {
        let (tx, mut rx) = mpsc::channel(8);
        let link = Arc::new(Link::new(tx, Deadlines::default()));
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
        let link = Arc::new(Link::new(tx, Deadlines::default()));
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
    async fn a_slow_reader_queues_instead_of_being_cut() {
        let (tx, mut rx) = mpsc::channel(8);
        let link = Arc::new(Link::new(tx, Deadlines::default()));
        let mut stream = link.open(request()).await.expect("open");
        let _chat = rx.recv().await;
        let delta = |i: usize| ServerMessage::Delta {
            id: 1,
            content: Some(format!("{i} ")),
            reasoning_content: None,
        };
        for i in 0..(STREAM_BUFFER * 4) {
            link.dispatch(delta(i));
        }
        link.dispatch(ServerMessage::Finish {
            id: 1,
            finish_reason: mux_protocol::FinishReason::Stop,
            usage: mux_protocol::Usage::default(),
            session_id: "s".into(),
        });
        assert!(rx.try_recv().is_err(), "no cancel for a slow reader");
        let mut deltas = 0;
        while let Some(m) = stream.next().await {
            match m {
                ServerMessage::Delta { .. } => deltas += 1,
                ServerMessage::Finish { .. } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(deltas, STREAM_BUFFER * 4, "every event arrived");
        assert_eq!(link.open_streams(), 0);
    }

    #[tokio::test]
    async fn a_reader_stalled_past_the_idle_deadline_is_given_up_as_cancelled() {
        let (tx, mut rx) = mpsc::channel(8);
        let deadlines = Deadlines {
            idle: Duration::from_millis(50),
            ..Deadlines::default()
        };
        let link = Arc::new(Link::new(tx, deadlines));
        let mut stream = link.open(request()).await.expect("open");
        let _chat = rx.recv().await;
        for _ in 0..STREAM_BUFFER {
            link.dispatch(ServerMessage::Delta {
                id: 1,
                content: Some("x".into()),
                reasoning_content: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
        link.dispatch(ServerMessage::Delta {
            id: 1,
            content: Some("y".into()),
            reasoning_content: None,
        });
        assert_eq!(rx.recv().await, Some(ClientMessage::Cancel { id: 1 }));
        let mut last = None;
        while let Some(m) = stream.next().await {
            last = Some(m);
            if matches!(last, Some(ServerMessage::Error { .. })) {
                break;
            }
        }
        assert!(
            matches!(
                last,
                Some(ServerMessage::Error {
                    kind: ErrorKind::Cancelled,
                    ..
                })
            ),
            "{last:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_sidecar_misses_the_start_deadline() {
        let (tx, mut rx) = mpsc::channel(8);
        let deadlines = Deadlines {
            start: Duration::from_millis(100),
            ..Deadlines::default()
        };
        let link = Arc::new(Link::new(tx, deadlines));
        let mut stream = link.open(request()).await.expect("open");
        let _chat = rx.recv().await;
        let m = stream.next().await;
        assert!(
            matches!(
                m,
                Some(ServerMessage::Error {
                    kind: ErrorKind::Timeout,
                    before_output: true,
                    ..
                })
            ),
            "{m:?}"
        );
        assert_eq!(rx.recv().await, Some(ClientMessage::Cancel { id: 1 }));
        assert_eq!(link.open_streams(), 0);
    }

    #[tokio::test]
    async fn lost_connection_ends_streams() {
        let (tx, _rx) = mpsc::channel(8);
        let link = Arc::new(Link::new(tx, Deadlines::default()));
        let mut stream = link.open(request()).await.expect("open");
        link.close_all();
        assert!(stream.next().await.is_none());
    }
}
