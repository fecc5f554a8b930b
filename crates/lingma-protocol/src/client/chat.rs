//! One chat's stream of events, and the guard that frees its bookkeeping on every path.

use super::LingmaClient;
use super::state::{ChatItem, ConnectionState};
use crate::error::ClientError;
use crate::methods::{CHAT_ASK, CHAT_STOP};
use crate::wire::{
    ChatAnswer, ChatFinish, ChatStopParams, ChatThink, ProcessStepCallback, SessionTitleUpdate,
};
use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

/// An event of one chat, routed by `requestId` (titles by `sessionId`).
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    Step(ProcessStepCallback),
    Title(SessionTitleUpdate),
    Think(ChatThink),
    Answer(ChatAnswer),
    Finish(ChatFinish),
}

impl ChatEvent {
    /// The chat's `requestId` (empty for `Title`, which names only the session).
    pub fn request_id(&self) -> &str {
        match self {
            ChatEvent::Step(e) => &e.request_id,
            ChatEvent::Title(_) => "",
            ChatEvent::Think(e) => &e.request_id,
            ChatEvent::Answer(e) => &e.request_id,
            ChatEvent::Finish(e) => &e.request_id,
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        let id = match self {
            ChatEvent::Step(e) => &e.session_id,
            ChatEvent::Title(e) => &e.session_id,
            ChatEvent::Think(e) => &e.session_id,
            ChatEvent::Answer(e) => &e.session_id,
            ChatEvent::Finish(e) => &e.session_id,
        };
        Some(id.as_str()).filter(|s| !s.is_empty())
    }
}

/// Frees a chat's routing entry when the chat ends or its stream is dropped, and asks
/// Lingma to stop a chat that was abandoned before `chat/finish`.
pub(crate) struct ChatGuard {
    state: Arc<ConnectionState>,
    request_id: String,
    session_id: String,
    /// True while Lingma may still be generating for this chat.
    pub stop_on_drop: bool,
    released: bool,
}

impl ChatGuard {
    pub fn new(state: Arc<ConnectionState>, request_id: String, session_id: String) -> Self {
        Self {
            state,
            request_id,
            session_id,
            stop_on_drop: false,
            released: false,
        }
    }

    fn release(&mut self) {
        if !self.released {
            self.released = true;
            self.state.forget_chat(&self.request_id);
        }
    }

    fn stop_params(&self) -> ChatStopParams {
        ChatStopParams {
            request_id: self.request_id.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

impl Drop for ChatGuard {
    fn drop(&mut self) {
        self.release();
        if self.stop_on_drop {
            self.state.send_detached(CHAT_STOP, &self.stop_params());
        }
    }
}

/// The events of one chat: a `Stream` of `Result<ChatEvent, ClientError>` that ends (`None`)
/// right after `Finish` or an error. It yields `Err(Timeout { method: "chat/ask" })` when no event arrives for
/// `chat_idle_timeout`. Dropping it before `Finish` frees the bookkeeping at once and sends
/// `chat/stop` in the background.
pub struct ChatStream {
    client: LingmaClient,
    guard: ChatGuard,
    rx: mpsc::Receiver<ChatItem>,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    last_event: Instant,
    done: bool,
}

impl ChatStream {
    pub(crate) fn new(
        client: LingmaClient,
        guard: ChatGuard,
        rx: mpsc::Receiver<ChatItem>,
    ) -> Self {
        let idle_timeout = client.state().opts.chat_idle_timeout;
        let now = Instant::now();
        Self {
            client,
            guard,
            rx,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            idle_timeout,
            last_event: now,
            done: false,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.guard.request_id
    }

    /// The session id sent in `chat/ask`, or, if that was empty, the one Lingma reported.
    pub fn session_id(&self) -> &str {
        &self.guard.session_id
    }

    /// Sends `chat/stop` (best effort, bounded by `rpc_timeout`) unless the chat already
    /// ended, and frees the bookkeeping.
    pub async fn stop(mut self) {
        self.guard.release();
        if std::mem::replace(&mut self.guard.stop_on_drop, false) {
            let params = self.guard.stop_params();
            if let Err(e) = self
                .client
                .call::<_, serde_json::Value>(CHAT_STOP, &params)
                .await
            {
                tracing::debug!(request_id = %params.request_id, error = %e, "chat/stop failed");
            }
        }
    }

    /// The chat is over for this stream; `stop` asks Lingma to stop generating it now.
    fn end(&mut self, stop: bool) {
        self.done = true;
        self.guard.stop_on_drop = false;
        self.guard.release();
        self.rx.close();
        if stop {
            let state = &self.guard.state;
            state.send_detached(CHAT_STOP, &self.guard.stop_params());
        }
    }
}

impl Stream for ChatStream {
    type Item = Result<ChatEvent, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    // Only a timestamp per event; the timer is re-armed lazily when it fires.
                    this.last_event = Instant::now();
                    if this.guard.session_id.is_empty()
                        && let Some(session) = event.session_id()
                    {
                        this.guard.session_id = session.to_owned();
                    }
                    if matches!(event, ChatEvent::Finish(_)) {
                        // The reader removed the entry when it queued the Finish.
                        this.guard.released = true;
                        this.end(false);
                    }
                    return Poll::Ready(Some(Ok(event)));
                }
                Poll::Ready(Some(Err(error))) => {
                    // A lost connection has no chat left to stop; anything else may still run.
                    let stop = !matches!(error, ClientError::ConnectionLost | ClientError::Closed);
                    // Every path that queues an error removes the entry first.
                    this.guard.released = true;
                    this.end(stop);
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    // Every path that drops the sender queues Finish or an error first, so
                    // this is only reachable if that invariant breaks: fail rather than hang.
                    this.end(false);
                    return Poll::Ready(Some(Err(this.client.state().end_reason())));
                }
                Poll::Pending => {}
            }
            match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let deadline = this.last_event + this.idle_timeout;
                    if Instant::now() >= deadline {
                        this.end(true);
                        return Poll::Ready(Some(Err(ClientError::timeout(CHAT_ASK))));
                    }
                    this.idle.as_mut().reset(deadline);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures_util::stream::FusedStream for ChatStream {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("request_id", &self.guard.request_id)
            .field("session_id", &self.guard.session_id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
