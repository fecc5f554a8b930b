//! One chat from the gateway to Lingma and back: wait (bounded) for a ready Lingma and a
//! free slot, continue the stored session or start a fresh one, stream the answer as mux
//! `Delta`s, and end with `Finish` or `Error`. A failure on a continued session before
//! anything reached the gateway is retried once as a fresh session.

mod outcome;
mod prompt;
mod think;

pub use outcome::{Failure, classify_client_error, classify_finish, estimated_usage};
pub use prompt::{flatten, may_continue};
pub use think::{Piece, ThinkSplitter};

use crate::state::SidecarState;
use futures_util::StreamExt;
use lingma_protocol::{ChatEvent, ChatStream, LingmaClient};
use mux_protocol::{
    ChatRequest, ConnectionState, ErrorKind, FinishReason, LoginState, ServerMessage,
    SessionOutcome, StreamId, continuation_key, conversation_key,
};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The gateway connection this chat writes to (already serialised frames, so the JSON
/// work happens in the chat's task, not in the connection's single writer).
pub struct Output {
    tx: mpsc::Sender<String>,
    id: StreamId,
    /// Whether `Started` or a `Delta` went out (then no retry, and `before_output` false).
    sent_output: bool,
}

/// The gateway side is gone; stop work for it.
#[derive(Debug)]
pub struct Gone;

impl Output {
    pub fn new(tx: mpsc::Sender<String>, id: StreamId) -> Self {
        Self {
            tx,
            id,
            sent_output: false,
        }
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), Gone> {
        let text = serde_json::to_string(msg).map_err(|_| Gone)?;
        if matches!(
            msg,
            ServerMessage::Started { .. } | ServerMessage::Delta { .. }
        ) {
            self.sent_output = true;
        }
        self.tx.send(text).await.map_err(|_| Gone)
    }

    async fn error(&mut self, f: Failure) -> Result<(), Gone> {
        let msg = ServerMessage::Error {
            id: self.id,
            kind: f.kind,
            message: f.message.to_owned(),
            before_output: !self.sent_output,
        };
        self.send(&msg).await
    }
}

/// How a chat ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished(FinishReason),
    Failed(ErrorKind),
    /// The gateway cancelled or disconnected.
    Cancelled,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Finished(FinishReason::Stop) => "ok",
            Outcome::Finished(FinishReason::ContentFilter) => "content_filter",
            Outcome::Finished(FinishReason::Length) => "length",
            Outcome::Failed(kind) => crate::metrics::error_kind_label(kind),
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Run one chat to its end. Every path sends exactly one terminal message (`Finish` or
/// `Error`) unless the gateway is gone.
pub async fn run(
    state: &SidecarState,
    id: StreamId,
    req: ChatRequest,
    out: &mut Output,
    cancel: &CancellationToken,
) -> Outcome {
    let outcome = match drive(state, &req, out, cancel).await {
        Ok(reason) => Outcome::Finished(reason),
        Err(End::Failed(f)) => {
            if is_upstream(f.kind) {
                state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[crate::metrics::error_kind_label(f.kind)])
                    .inc();
            }
            if f.kind == ErrorKind::UpstreamAuth {
                // The account may have been logged out: check now rather than at the next tick.
                state.login_check.notify_one();
            }
            let _ = out.error(f).await;
            Outcome::Failed(f.kind)
        }
        Err(End::Cancelled) => {
            let _ = out
                .error(Failure::new(ErrorKind::Cancelled, "cancelled"))
                .await;
            Outcome::Cancelled
        }
        Err(End::Gone) => Outcome::Cancelled,
    };
    tracing::debug!(stream = id, request_id = %req.request_id, outcome = outcome.label(), "chat ended");
    outcome
}

fn is_upstream(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::RateLimited
            | ErrorKind::UpstreamAuth
            | ErrorKind::Timeout
            | ErrorKind::ConnectionLost
            | ErrorKind::Upstream
    )
}

enum End {
    Failed(Failure),
    Cancelled,
    Gone,
}

impl From<Gone> for End {
    fn from(_: Gone) -> Self {
        End::Gone
    }
}

async fn drive(
    state: &SidecarState,
    req: &ChatRequest,
    out: &mut Output,
    cancel: &CancellationToken,
) -> Result<FinishReason, End> {
    let Some(last_user) = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == mux_protocol::Role::User)
        .map(|m| m.content.clone())
    else {
        return Err(End::Failed(Failure::new(
            ErrorKind::BadRequest,
            "the conversation has no user message",
        )));
    };
    let deadline = Instant::now() + Duration::from_millis(req.queue_timeout_ms);
    let client = wait_until_ready(state, deadline, cancel).await?;
    let model_key = model_key(state, req)?;
    let _slot = tokio::select! {
        slot = state.slots.acquire(deadline.saturating_duration_since(Instant::now())) => slot
            .map_err(|_| End::Failed(Failure::new(ErrorKind::Overloaded, "Lingma is at capacity")))?,
        _ = cancel.cancelled() => return Err(End::Cancelled),
    };

    let reuse = state.chat.session_reuse && req.session_reuse;
    let stored = reuse
        .then(|| conversation_key(&req.scope, &req.messages))
        .flatten()
        .filter(|_| may_continue(&req.messages))
        .and_then(|key| state.sessions.claim(&key));
    let prompt_chars: usize = req.messages.iter().map(|m| m.content.chars().count()).sum();

    let mut plan = match stored {
        Some(session_id) => Plan::Continue(session_id),
        None => Plan::Fresh,
    };
    loop {
        let (session_id, question, is_reply, session) = match &plan {
            Plan::Continue(sid) => (sid.clone(), last_user.clone(), true, SessionOutcome::Reused),
            Plan::Fresh => (
                uuid::Uuid::new_v4().to_string(),
                // Built only for fresh sessions: a continued one sends just the new message.
                flatten(&req.messages).unwrap_or_default(),
                false,
                SessionOutcome::New,
            ),
        };
        let params = prompt::ask_params(prompt::AskSpec {
            request_id: uuid::Uuid::new_v4().to_string(),
            session_id: &session_id,
            question_text: question,
            is_reply,
            model_key: &model_key,
            ask_mode: state.chat.ask_mode,
        });
        tracing::debug!(
            request_id = %req.request_id,
            lingma_request_id = %params.request_id,
            session = ?session,
            "asking Lingma"
        );
        let result = match start_chat(&client, params, cancel).await? {
            Ok(stream) => pump(stream, &session_id, session, prompt_chars, out, cancel).await,
            Err(f) => Err(End::Failed(f)),
        };
        match result {
            Ok(reason) => {
                if reason == FinishReason::Stop
                    && reuse
                    && let Some(key) = continuation_key(&req.scope, &req.messages)
                {
                    state.sessions.store(key, session_id);
                }
                return Ok(reason);
            }
            Err(End::Failed(f))
                if matches!(plan, Plan::Continue(_)) && !out.sent_output && f.retry_fresh() =>
            {
                // The stored session was already claimed (dropped from the map); the retry
                // rebuilds the context from the transcript.
                state.metrics.session_invalidations.inc();
                tracing::info!(request_id = %req.request_id, kind = ?f.kind, "continued session failed; retrying as a fresh session");
                plan = Plan::Fresh;
            }
            Err(e) => return Err(e),
        }
    }
}

enum Plan {
    Continue(String),
    Fresh,
}

async fn start_chat(
    client: &LingmaClient,
    params: lingma_protocol::wire::ChatAskParams,
    cancel: &CancellationToken,
) -> Result<Result<ChatStream, Failure>, End> {
    tokio::select! {
        r = client.chat(params) => Ok(r.map_err(|e| classify_client_error(&e))),
        _ = cancel.cancelled() => Err(End::Cancelled),
    }
}

/// Wait until connected and logged in, up to `deadline`; fail at once when that cannot
/// happen by itself (failed connection or login, draining).
async fn wait_until_ready(
    state: &SidecarState,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<LingmaClient, End> {
    let unavailable = |m| End::Failed(Failure::new(ErrorKind::Unavailable, m));
    let mut health = state.subscribe();
    loop {
        {
            let h = health.borrow_and_update();
            if h.draining {
                return Err(unavailable("sidecar is draining"));
            }
            if h.ready()
                && let Some(client) = state.client()
            {
                return Ok(client);
            }
            if h.connection == ConnectionState::Failed || h.connection == ConnectionState::Closed {
                return Err(unavailable("Lingma is not running"));
            }
            let login_hopeless = match &h.login {
                LoginState::Failed { .. } => true,
                LoginState::LoggedOut => !state.chat.auto_login,
                _ => false,
            };
            if login_hopeless {
                return Err(unavailable("Lingma is not logged in"));
            }
        }
        tokio::select! {
            changed = health.changed() => if changed.is_err() {
                return Err(unavailable("sidecar is shutting down"));
            },
            _ = tokio::time::sleep_until(deadline) => return Err(unavailable("Lingma is not ready")),
            _ = cancel.cancelled() => return Err(End::Cancelled),
        }
    }
}

fn model_key(state: &SidecarState, req: &ChatRequest) -> Result<String, End> {
    let Some(model) = req
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    else {
        return Ok(state.chat.default_model.clone());
    };
    let health = state.health();
    if !health.models.is_empty() && !health.models.iter().any(|m| m.id == model) {
        return Err(End::Failed(Failure::new(
            ErrorKind::UnknownModel,
            "unknown model for this Lingma",
        )));
    }
    Ok(model.to_owned())
}

/// Forward one chat's events until its finish.
async fn pump(
    mut stream: ChatStream,
    session_id: &str,
    session: SessionOutcome,
    prompt_chars: usize,
    out: &mut Output,
    cancel: &CancellationToken,
) -> Result<FinishReason, End> {
    let mut splitter = ThinkSplitter::default();
    let mut pieces = Vec::new();
    let mut started = false;
    let mut content_chars = 0usize;
    let mut streamed = String::new();
    loop {
        let event = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                stream.stop().await;
                return Err(End::Cancelled);
            }
            event = stream.next() => event,
        };
        match event {
            Some(Ok(ChatEvent::Answer(a))) => {
                splitter.push(&a.text, &mut pieces);
                send_pieces(
                    &mut pieces,
                    session_id,
                    session,
                    &mut started,
                    &mut streamed,
                    out,
                )
                .await?;
            }
            Some(Ok(ChatEvent::Think(t))) => {
                if !t.text.is_empty() {
                    pieces.push(Piece::Reasoning(t.text));
                    send_pieces(
                        &mut pieces,
                        session_id,
                        session,
                        &mut started,
                        &mut streamed,
                        out,
                    )
                    .await?;
                }
            }
            Some(Ok(ChatEvent::Finish(f))) => {
                splitter.finish(&mut pieces);
                send_pieces(
                    &mut pieces,
                    session_id,
                    session,
                    &mut started,
                    &mut streamed,
                    out,
                )
                .await?;
                let reason = classify_finish(f.status_code).map_err(End::Failed)?;
                // Deltas can be lost or empty; fullAnswer is authoritative. Send what the
                // deltas missed when it extends them.
                if reason == FinishReason::Stop
                    && let Some(rest) = missing_tail(&streamed, &f.full_answer)
                {
                    pieces.push(Piece::Content(rest));
                    send_pieces(
                        &mut pieces,
                        session_id,
                        session,
                        &mut started,
                        &mut streamed,
                        out,
                    )
                    .await?;
                }
                content_chars += streamed.chars().count();
                ensure_started(session_id, session, &mut started, out).await?;
                out.send(&ServerMessage::Finish {
                    id: out.id,
                    finish_reason: reason,
                    usage: estimated_usage(prompt_chars, content_chars),
                    session_id: session_id.to_owned(),
                })
                .await?;
                return Ok(reason);
            }
            Some(Ok(ChatEvent::Step(_) | ChatEvent::Title(_))) => {}
            Some(Err(e)) => return Err(End::Failed(classify_client_error(&e))),
            None => {
                return Err(End::Failed(Failure::new(
                    ErrorKind::Upstream,
                    "Lingma ended the chat without a finish",
                )));
            }
        }
    }
}

/// The part of `full` that the streamed deltas did not carry, when `full` extends them.
fn missing_tail(streamed: &str, full: &str) -> Option<String> {
    if full.len() > streamed.len() && full.starts_with(streamed) {
        let tail = &full[streamed.len()..];
        // Inline think blocks are not part of the content: do not resend them raw.
        if !tail.contains("````think::") {
            return Some(tail.to_owned());
        }
    }
    None
}

async fn ensure_started(
    session_id: &str,
    session: SessionOutcome,
    started: &mut bool,
    out: &mut Output,
) -> Result<(), Gone> {
    if !*started {
        *started = true;
        let msg = ServerMessage::Started {
            id: out.id,
            session,
            session_id: session_id.to_owned(),
        };
        out.send(&msg).await?;
    }
    Ok(())
}

/// `Started` goes out with the first output, so a chat that fails before producing any
/// can still be retried (here or by the gateway).
async fn send_pieces(
    pieces: &mut Vec<Piece>,
    session_id: &str,
    session: SessionOutcome,
    started: &mut bool,
    streamed: &mut String,
    out: &mut Output,
) -> Result<(), Gone> {
    for piece in pieces.drain(..) {
        ensure_started(session_id, session, started, out).await?;
        let msg = match piece {
            Piece::Content(text) => {
                streamed.push_str(&text);
                ServerMessage::Delta {
                    id: out.id,
                    content: Some(text),
                    reasoning_content: None,
                }
            }
            Piece::Reasoning(text) => ServerMessage::Delta {
                id: out.id,
                content: None,
                reasoning_content: Some(text),
            },
        };
        out.send(&msg).await?;
    }
    Ok(())
}
