//! Bookkeeping shared by the caller side and the reader task: pending calls by id, open
//! chats by `requestId`, and `sessionId -> requestId` for `session/title/update`. One
//! mutex, held only for map operations and non-blocking channel sends, never across `.await`.

use super::chat::ChatEvent;
use super::{ClientOptions, ServerEvent};
use crate::error::ClientError;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub(crate) type ChatItem = Result<ChatEvent, ClientError>;
pub(crate) type Reply = Result<Box<RawValue>, ClientError>;

struct ChatEntry {
    tx: mpsc::Sender<ChatItem>,
    /// Empty until known (a chat may be asked with `sessionId: ""`).
    session_id: String,
    /// JSON-RPC id of the last event delivered, to drop an event Lingma sent twice.
    last_event_id: Option<i64>,
}

#[derive(Default)]
struct Routes {
    pending: HashMap<i64, oneshot::Sender<Reply>>,
    chats: HashMap<String, ChatEntry>,
    sessions: HashMap<String, String>,
    /// Set once the connection is gone; nothing registers after that.
    ended: Option<ClientError>,
}

/// What happened to an event the reader routed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Delivered,
    /// No open chat has this id (late frames, stopped chats): acked and dropped.
    Unknown,
    /// The chat's buffer was full: the chat was ended with an error.
    Overflow,
    /// The same event (same JSON-RPC id) again: dropped.
    Duplicate,
}

pub(crate) struct ConnectionState {
    routes: Mutex<Routes>,
    next_id: AtomicI64,
    pub outbound: mpsc::Sender<String>,
    /// Cancelled to stop the reader and writer (close(), socket error, EOF).
    pub stop: CancellationToken,
    /// Cancelled after every chat and call has been told the connection is gone.
    pub gone: CancellationToken,
    pub close_requested: AtomicBool,
    pub events: broadcast::Sender<ServerEvent>,
    pub protocol_errors: AtomicU64,
    pub opts: ClientOptions,
}

/// Room kept in every chat channel for the terminal error, so that an error always fits.
pub(crate) const RESERVED_SLOTS: usize = 1;

impl ConnectionState {
    pub fn new(outbound: mpsc::Sender<String>, opts: ClientOptions) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            routes: Mutex::new(Routes::default()),
            next_id: AtomicI64::new(1),
            outbound,
            stop: CancellationToken::new(),
            gone: CancellationToken::new(),
            close_requested: AtomicBool::new(false),
            events,
            protocol_errors: AtomicU64::new(0),
            opts,
        }
    }

    pub fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The error for callers once the connection is unusable.
    pub fn end_reason(&self) -> ClientError {
        if self.close_requested.load(Ordering::Acquire) {
            ClientError::Closed
        } else {
            ClientError::ConnectionLost
        }
    }

    pub fn register_call(&self, id: i64, tx: oneshot::Sender<Reply>) -> Result<(), ClientError> {
        let mut routes = self.routes.lock();
        if let Some(reason) = &routes.ended {
            return Err(reason.clone());
        }
        routes.pending.insert(id, tx);
        Ok(())
    }

    pub fn forget_call(&self, id: i64) {
        self.routes.lock().pending.remove(&id);
    }

    /// Hand a response to its caller; false if nobody waits for it (timed out, dropped,
    /// or a fire-and-forget `chat/stop`).
    pub fn resolve_call(&self, id: i64, reply: Reply) -> bool {
        let tx = self.routes.lock().pending.remove(&id);
        match tx {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }

    pub fn register_chat(
        &self,
        request_id: &str,
        session_id: &str,
        tx: mpsc::Sender<ChatItem>,
    ) -> Result<(), ClientError> {
        let mut routes = self.routes.lock();
        if let Some(reason) = &routes.ended {
            return Err(reason.clone());
        }
        if routes.chats.contains_key(request_id) {
            return Err(ClientError::Rejected(format!(
                "requestId {request_id} is already open on this connection"
            )));
        }
        routes.chats.insert(
            request_id.to_owned(),
            ChatEntry {
                tx,
                session_id: session_id.to_owned(),
                last_event_id: None,
            },
        );
        if !session_id.is_empty() {
            routes
                .sessions
                .insert(session_id.to_owned(), request_id.to_owned());
        }
        Ok(())
    }

    /// Free a chat's bookkeeping (idempotent).
    pub fn forget_chat(&self, request_id: &str) {
        let mut routes = self.routes.lock();
        Self::remove_chat(&mut routes, request_id);
    }

    fn remove_chat(routes: &mut Routes, request_id: &str) -> Option<ChatEntry> {
        let entry = routes.chats.remove(request_id)?;
        if !entry.session_id.is_empty()
            && routes
                .sessions
                .get(&entry.session_id)
                .is_some_and(|owner| owner == request_id)
        {
            routes.sessions.remove(&entry.session_id);
        }
        Some(entry)
    }

    /// Route one chat event to its chat: `owner` is the chat's `requestId` when the event
    /// does not carry it (titles), otherwise the event's own. `chat/finish` ends the chat's
    /// bookkeeping. No allocation on the common path: the key is borrowed from the event.
    /// The channel of `key`'s chat when its buffer is full, for the reader to wait on
    /// (see [`super::CONSUMER_GRACE`]); None when there is room or no such chat.
    pub fn full_chat(&self, key: &str) -> Option<mpsc::Sender<ChatItem>> {
        let routes = self.routes.lock();
        routes
            .chats
            .get(key)
            .filter(|e| e.tx.capacity() <= RESERVED_SLOTS)
            .map(|e| e.tx.clone())
    }

    pub fn deliver(
        &self,
        owner: Option<&str>,
        event_id: Option<i64>,
        event: ChatEvent,
    ) -> Delivery {
        let mut routes = self.routes.lock();
        let key = owner.unwrap_or_else(|| event.request_id());
        let Some(entry) = routes.chats.get_mut(key) else {
            tracing::debug!(request_id = key, "event for no open chat, dropped");
            return Delivery::Unknown;
        };
        if event_id.is_some() && entry.last_event_id == event_id {
            tracing::debug!(request_id = key, "event sent twice, dropped");
            return Delivery::Duplicate;
        }
        if entry.tx.capacity() <= RESERVED_SLOTS {
            let capacity = entry.tx.max_capacity();
            tracing::warn!(
                request_id = key,
                capacity,
                "chat consumer too slow, chat ended"
            );
            let key = key.to_owned();
            if let Some(entry) = Self::remove_chat(&mut routes, &key) {
                let _ = entry
                    .tx
                    .try_send(Err(ClientError::ConsumerTooSlow { unread: capacity }));
            }
            return Delivery::Overflow;
        }
        let finish = matches!(event, ChatEvent::Finish(_));
        let learned_session = if entry.session_id.is_empty() {
            event.session_id().map(str::to_owned)
        } else {
            None
        };
        // Needed after the event moves only when the chat ends or learns its session.
        let key = (finish || learned_session.is_some()).then(|| key.to_owned());
        if entry.tx.try_send(Ok(event)).is_err() {
            // The stream is being dropped; its guard frees the entry.
            return Delivery::Unknown;
        }
        entry.last_event_id = event_id;
        if let Some(session_id) = &learned_session {
            entry.session_id.clone_from(session_id);
        }
        if let Some(key) = key {
            if finish {
                Self::remove_chat(&mut routes, &key);
            } else if let Some(session_id) = learned_session {
                routes.sessions.insert(session_id, key);
            }
        }
        Delivery::Delivered
    }

    /// The chat that currently owns `session_id`, for `session/title/update`.
    pub fn chat_of_session(&self, session_id: &str) -> Option<String> {
        self.routes.lock().sessions.get(session_id).cloned()
    }

    /// End one chat with an error (a frame of its stream could not be parsed).
    pub fn fail_chat(&self, request_id: &str, error: ClientError) -> bool {
        let entry = Self::remove_chat(&mut self.routes.lock(), request_id);
        match entry {
            Some(entry) => {
                let _ = entry.tx.try_send(Err(error));
                true
            }
            None => false,
        }
    }

    /// End every open chat with an error, keeping the connection (an unattributable
    /// protocol violation: some chat lost a frame and nobody can tell which).
    pub fn fail_all_chats(&self, error: &ClientError) -> usize {
        let chats = {
            let mut routes = self.routes.lock();
            routes.sessions.clear();
            std::mem::take(&mut routes.chats)
        };
        let n = chats.len();
        for entry in chats.into_values() {
            let _ = entry.tx.try_send(Err(error.clone()));
        }
        n
    }

    /// The connection is gone: tell every chat and caller, refuse new registrations.
    pub fn end_all(&self, reason: ClientError) {
        let (pending, chats) = {
            let mut routes = self.routes.lock();
            routes.ended = Some(reason.clone());
            routes.sessions.clear();
            (
                std::mem::take(&mut routes.pending),
                std::mem::take(&mut routes.chats),
            )
        };
        for tx in pending.into_values() {
            let _ = tx.send(Err(reason.clone()));
        }
        for entry in chats.into_values() {
            let _ = entry.tx.try_send(Err(reason.clone()));
        }
    }

    pub fn open_chats(&self) -> usize {
        self.routes.lock().chats.len()
    }

    pub fn pending_calls(&self) -> usize {
        self.routes.lock().pending.len()
    }

    /// Queue a request whose answer nobody waits for (`chat/stop` from a drop). Never
    /// blocks: when the queue is full it is sent from a spawned task if a runtime exists.
    pub fn send_detached<P: serde::Serialize + ?Sized>(&self, method: &str, params: &P) {
        let Ok(frame) = super::codec::request_frame(self.next_id(), method, params) else {
            return;
        };
        match self.outbound.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(frame)) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let outbound = self.outbound.clone();
                    rt.spawn(async move {
                        let _ = outbound.send(frame).await;
                    });
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Frees a pending call's entry on every path (response, timeout, drop of the future).
pub(crate) struct PendingCallGuard<'a> {
    pub state: &'a ConnectionState,
    pub id: i64,
    /// Cleared once the reader has taken the entry out (an answer or a disconnect arrived),
    /// which saves a lock per call.
    pub armed: bool,
}

impl Drop for PendingCallGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state.forget_call(self.id);
        }
    }
}
