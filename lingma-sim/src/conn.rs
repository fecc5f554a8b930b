//! The handle of one WebSocket connection that chats and the dispatcher hold: its outbox,
//! event ids, and the ack bookkeeping of the events the simulator pushes as requests. The
//! reader and writer tasks that own the socket live in `connection`.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub(crate) enum Out {
    Text(String),
    /// Drop the connection (no close frame) once everything before it is written.
    Abort,
}

/// The connection closed under a chat.
#[derive(Debug)]
pub(crate) struct Closed;

struct PendingAck {
    method: &'static str,
    sent: Instant,
    waiter: Option<oneshot::Sender<()>>,
}

pub(crate) struct Conn {
    pub id: u64,
    tx: mpsc::Sender<Out>,
    next_event_id: AtomicI64,
    pending: Mutex<HashMap<i64, PendingAck>>,
    /// Cancelled when the connection ends (or the simulator stops).
    pub closed: CancellationToken,
}

impl Conn {
    pub fn new(id: u64, tx: mpsc::Sender<Out>, closed: CancellationToken) -> Self {
        Self {
            id,
            tx,
            next_event_id: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            closed,
        }
    }

    pub async fn send(&self, frame: String) -> Result<(), Closed> {
        self.tx.send(Out::Text(frame)).await.map_err(|_| Closed)
    }

    pub async fn abort(&self) {
        let _ = self.tx.send(Out::Abort).await;
    }

    /// Whether the writer has nothing queued.
    pub fn outbox_empty(&self) -> bool {
        self.tx.capacity() == self.tx.max_capacity()
    }

    pub fn next_event_id(&self) -> i64 {
        self.next_event_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Remember an event until its ack; with `wait`, the receiver fires on the ack.
    pub fn track(
        &self,
        id: i64,
        method: &'static str,
        wait: bool,
    ) -> Option<oneshot::Receiver<()>> {
        let (waiter, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.pending.lock().insert(
            id,
            PendingAck {
                method,
                sent: Instant::now(),
                waiter,
            },
        );
        rx
    }

    /// The client acked event `id`.
    pub fn acked(&self, id: i64) -> bool {
        match self.pending.lock().remove(&id) {
            Some(p) => {
                if let Some(w) = p.waiter {
                    let _ = w.send(());
                }
                true
            }
            None => false,
        }
    }

    /// Forget the events unacked for longer than `timeout`; returns their ids and methods.
    pub fn take_expired(&self, timeout: Duration) -> Vec<(i64, &'static str)> {
        let now = Instant::now();
        let mut expired = Vec::new();
        self.pending.lock().retain(|id, p| {
            let keep = now.duration_since(p.sent) < timeout;
            if !keep {
                expired.push((*id, p.method));
            }
            keep
        });
        expired
    }
}
