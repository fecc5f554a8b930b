//! One chat from the gateway to Lingma and back: wait (bounded) for a ready Lingma and a
//! free slot, continue the stored session or start a fresh one, stream the answer as mux
//! `Delta`s, and end with `Finish` or `Error`. A continued session Lingma refused (before
//! it accepted the ask, so before `Started`) is retried once as a fresh session; after
//! `Started` nothing is retried.

mod forward;
mod outcome;
mod output;
mod prompt;
mod think;

pub use outcome::{
    Failure, classify_ask_error, classify_client_error, classify_finish, classify_finish_event,
    estimated_usage,
};
pub use output::{Gone, Output};
pub use prompt::{flatten, may_continue};
pub use think::{Piece, ThinkSplitter};

use crate::capacity::ChatSlot;
use crate::state::SidecarState;
use lingma_protocol::{ChatStream, LingmaClient};
use mux_protocol::{
    ChatRequest, ConnectionState, ErrorKind, FinishReason, LoginState, SessionOutcome, StreamId,
    continuation_key, conversation_key,
};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
            Outcome::Failed(kind) => kind.as_str(),
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
        Ok(reason) => {
            state.account_ok();
            Outcome::Finished(reason)
        }
        Err(End::Failed(f)) => {
            if let Some(reason) = f.limit {
                state.account_limited(reason);
            }
            if f.kind.is_upstream_failure() {
                state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[f.kind.as_str()])
                    .inc();
            }
            if matches!(f.kind, ErrorKind::UpstreamAuth | ErrorKind::BadRequest) {
                // The account may have been logged out (a refused ask can mean that too):
                // check now rather than at the next tick.
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
    let new_turn = new_turn(req)?;
    let deadline = Instant::now() + Duration::from_millis(req.queue_timeout_ms);
    let client = wait_until_ready(state, deadline, cancel).await?;
    let model_key = model_key(state, req)?;
    // A chat that may not wait takes a slot only if one is free now (mux-protocol.md).
    let slot_deadline = if req.wait_for_slot {
        deadline
    } else {
        Instant::now()
    };
    let slot = acquire_slot(state, slot_deadline, cancel).await?;
    // The account may have been paused while this chat waited for its slot.
    if let Some(p) = state.health().paused {
        return Err(End::Failed(Failure::new(
            ErrorKind::Unavailable,
            p.message(),
        )));
    }

    let reuse = state.chat.session_reuse && req.session_reuse;
    let turn = Turn {
        state,
        req,
        client: &client,
        model_key: &model_key,
        new_turn: &new_turn,
        prompt_chars: req.messages.iter().map(|m| m.content.chars().count()).sum(),
    };
    let mut plan = match stored_session(state, req, reuse) {
        Some(session_id) => Plan::Continue(session_id),
        None => Plan::Fresh,
    };
    loop {
        match turn.ask(&plan, out, cancel).await {
            Ok((done, session_id)) => {
                // Store the session and free the slot BEFORE the finish goes out: the
                // `sessions` and `load` announcements then reach every gateway no later
                // than the client's answer, so its next turn finds the session from any
                // gateway replica (the turn ran to its end upstream either way).
                if done.reason == FinishReason::Stop
                    && reuse
                    && let Some(key) = continuation_key(&req.scope, &req.messages)
                {
                    state.sessions.store(key, session_id.clone());
                }
                drop(slot);
                let finish = forward::finish_message(out.id, &done, &session_id);
                out.send(&finish).await?;
                return Ok(done.reason);
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

/// The text of the newest user turn: what a continued session is sent.
/// What a continued session is asked: the request's new turn (`prompt::new_turn_text`).
fn new_turn(req: &ChatRequest) -> Result<String, End> {
    prompt::new_turn_text(&req.messages).ok_or(End::Failed(Failure::new(
        ErrorKind::BadRequest,
        "the conversation has no user message",
    )))
}

/// A chat slot of this Lingma, waiting until `deadline` at most.
async fn acquire_slot(
    state: &SidecarState,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<ChatSlot, End> {
    tokio::select! {
        slot = state.slots.acquire(deadline.saturating_duration_since(Instant::now())) => slot
            .map_err(|_| End::Failed(Failure::new(ErrorKind::Overloaded, "Lingma is at capacity"))),
        _ = cancel.cancelled() => Err(End::Cancelled),
    }
}

/// The stored upstream session this turn continues, claimed from the session map (a
/// claimed entry is gone: a failed turn never leaves a stale one behind).
fn stored_session(state: &SidecarState, req: &ChatRequest, reuse: bool) -> Option<String> {
    reuse
        .then(|| conversation_key(&req.scope, &req.messages))
        .flatten()
        .filter(|_| may_continue(&req.messages))
        .and_then(|key| state.sessions.claim(&key))
}

/// What one ask of this turn needs, whichever plan it follows.
struct Turn<'a> {
    state: &'a SidecarState,
    req: &'a ChatRequest,
    client: &'a LingmaClient,
    model_key: &'a str,
    new_turn: &'a str,
    prompt_chars: usize,
}

impl Turn<'_> {
    /// Ask Lingma once under `plan` and forward the answer; the finish reason and the
    /// upstream session id on success.
    async fn ask(
        &self,
        plan: &Plan,
        out: &mut Output,
        cancel: &CancellationToken,
    ) -> Result<(forward::Finished, String), End> {
        let (session_id, question, is_reply, session) = match plan {
            Plan::Continue(sid) => (
                sid.clone(),
                self.new_turn.to_owned(),
                true,
                SessionOutcome::Reused,
            ),
            Plan::Fresh => (
                uuid::Uuid::new_v4().to_string(),
                // Built only for fresh sessions: a continued one sends just the new message.
                flatten(&self.req.messages).unwrap_or_default(),
                false,
                SessionOutcome::New,
            ),
        };
        let params = prompt::ask_params(prompt::AskSpec {
            request_id: uuid::Uuid::new_v4().to_string(),
            session_id: &session_id,
            question_text: question,
            is_reply,
            model_key: self.model_key,
            ask_mode: self.state.chat.ask_mode,
        });
        tracing::debug!(
            request_id = %self.req.request_id,
            lingma_request_id = %params.request_id,
            session = ?session,
            "asking Lingma"
        );
        let stream = start_chat(self.client, params, cancel)
            .await?
            .map_err(End::Failed)?;
        let done = forward::forward(
            stream,
            &session_id,
            session,
            self.prompt_chars,
            self.state.quota.settings(),
            out,
            cancel,
        )
        .await?;
        Ok((done, session_id))
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
        r = client.chat(params) => Ok(r.map_err(|e| classify_ask_error(&e))),
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
            // A paused account fails at once, before Lingma sees the chat: the gateway
            // retries it on another instance.
            if let Some(p) = h.paused {
                return Err(unavailable(p.message()));
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
