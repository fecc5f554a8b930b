//! `chat/ask`: validation and admission on the reader, then one task per chat that pushes
//! the events of section 4 in order: the accept result, `step_start`, `session/title/update`
//! (new sessions), optional `chat/think`, N `chat/answer` deltas, `step_end`, `chat/finish`.
//! Faults change that sequence. With zero delays the task never sleeps.

use crate::answer::split_chunks;
use crate::compose::compose_answer;
use crate::config::OverLimit;
use crate::conn::{Closed, Conn};
use crate::events::{
    Accepted, Answer, EventSink, Finish, Pause, SessionTypeExtra, Step, Think, Title, Usage,
};
use crate::fault::Fault;
use crate::frames::{self, sim_codes};
use crate::login::LoginPhase;
use crate::persist::now_ms;
use crate::state::Sim;
use crate::stats::InFlightSlot;
use lingma_protocol::jsonrpc::{Id, codes};
use lingma_protocol::methods as m;
use lingma_protocol::wire::ChatAskParams;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Validate and admit a `chat/ask`. Returns the immediate reply when the ask is refused;
/// an accepted ask is answered by its chat task.
pub(crate) fn handle_ask(
    sim: &Arc<Sim>,
    conn: &Arc<Conn>,
    id: &Id,
    params: Value,
) -> Option<String> {
    let ask: ChatAskParams = match serde_json::from_value(params) {
        Ok(a) => a,
        Err(e) => {
            return Some(frames::error(
                id,
                codes::INVALID_PARAMS,
                &format!("invalid chat/ask params: {e}"),
            ));
        }
    };
    sim.stats.record_ask(&ask);
    if ask.request_id.is_empty() {
        return Some(frames::error(
            id,
            codes::INVALID_PARAMS,
            "requestId is empty",
        ));
    }
    let fault = sim.fault.take();
    if fault == Fault::NotLoggedIn || sim.login.phase() == LoginPhase::LoggedOut {
        return Some(frames::error(
            id,
            sim_codes::NOT_LOGGED_IN,
            "user not logged in",
        ));
    }
    match fault {
        Fault::Error => {
            return Some(frames::error(
                id,
                codes::INTERNAL_ERROR,
                "lingma-sim: simulated error (fault error)",
            ));
        }
        Fault::UnknownModel => {
            return Some(frames::error(
                id,
                codes::INVALID_PARAMS,
                &format!("unknown model: {}", ask.extra.model_config.key),
            ));
        }
        Fault::NoReply => {
            tracing::info!(conn = conn.id, request_id = %ask.request_id, "fault no_reply: chat/ask left unanswered");
            return None;
        }
        _ => {}
    }
    let slot = sim.stats.try_acquire(sim.config.max_concurrent_chats);
    if slot.is_none() && sim.config.over_limit == OverLimit::Error {
        sim.stats.chats_rejected.fetch_add(1, Ordering::Relaxed);
        return Some(frames::error(
            id,
            sim_codes::TOO_MANY_CHATS,
            &format!(
                "too many concurrent chats (limit {})",
                sim.config.max_concurrent_chats
            ),
        ));
    }
    let stop = CancellationToken::new();
    {
        let mut chats = sim.chats.lock();
        if chats.contains_key(&ask.request_id) {
            return Some(frames::error(
                id,
                codes::INVALID_PARAMS,
                "duplicate requestId: a chat with this requestId is in flight",
            ));
        }
        chats.insert(ask.request_id.clone(), stop.clone());
    }
    if slot.is_none() {
        sim.stats.chats_rejected.fetch_add(1, Ordering::Relaxed);
    } else {
        sim.stats.chats_total.fetch_add(1, Ordering::Relaxed);
    }
    let over_limit = slot.is_none();
    let session_id = if ask.session_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        ask.session_id.clone()
    };
    let chat = Chat {
        held: Mutex::new(Some(Held {
            _registration: Registration {
                sim: Arc::clone(sim),
                request_id: ask.request_id.clone(),
            },
            _slot: slot,
        })),
        over_limit,
        sim: Arc::clone(sim),
        conn: Arc::clone(conn),
        rpc_id: id.clone(),
        session_id,
        ask,
        fault,
        stop,
    };
    tokio::spawn(chat.run());
    None
}

/// Removes the chat from the in-flight map when it ends, however it ends.
struct Registration {
    sim: Arc<Sim>,
    request_id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sim.chats.lock().remove(&self.request_id);
    }
}

/// What a chat holds while in flight: its entry in the in-flight map and its slot of the cap.
struct Held {
    _registration: Registration,
    _slot: Option<InFlightSlot>,
}

struct Chat {
    /// Released just before `chat/finish` is queued, so a client that sends its next ask on
    /// receipt of the finish never meets its own previous chat in the cap.
    held: Mutex<Option<Held>>,
    /// Admitted over the cap with `--over-limit finish429`.
    over_limit: bool,
    sim: Arc<Sim>,
    conn: Arc<Conn>,
    rpc_id: Id,
    session_id: String,
    ask: ChatAskParams,
    fault: Fault,
    stop: CancellationToken,
}

/// How a chat that did not run to its normal end finishes.
struct Ending<'a> {
    status_code: i64,
    reason: &'a str,
    error_code: Option<i64>,
}

impl Chat {
    async fn run(self) {
        let mut out = EventSink {
            conn: &self.conn,
            sim: &self.sim,
            batch: self.sim.config.coalesce_frames.then(String::new),
        };
        let result = self.stream(&mut out).await;
        if result.is_ok() {
            let _ = out.flush().await;
        } else {
            tracing::debug!(conn = self.conn.id, request_id = %self.ask.request_id, "connection closed mid-chat");
        }
        self.release();
    }

    fn release(&self) {
        self.held.lock().take();
    }

    async fn stream(&self, out: &mut EventSink<'_>) -> Result<(), Closed> {
        let rid = self.ask.request_id.as_str();
        let sid = self.session_id.as_str();
        out.raw(frames::response(
            &self.rpc_id,
            &Accepted {
                success: true,
                is_success: true,
                request_id: rid,
                error_message: "",
            },
        ))
        .await?;
        tracing::debug!(conn = self.conn.id, request_id = rid, fault = ?self.fault, "chat accepted");

        if self.over_limit {
            return self
                .end_early(
                    out,
                    Ending {
                        status_code: 429,
                        reason: "rate_limited: too many concurrent chats",
                        error_code: None,
                    },
                )
                .await;
        }
        if self.sim.login.phase() == LoginPhase::Expired {
            return self
                .end_early(
                    out,
                    Ending {
                        status_code: 401,
                        reason: "login expired",
                        error_code: None,
                    },
                )
                .await;
        }
        if self.fault == Fault::Hang {
            out.flush().await?;
            tokio::select! {
                _ = self.stop.cancelled() => {}
                _ = self.conn.closed.cancelled() => return Err(Closed),
            }
            return self.finish(out, "cancelled", 200, "", None).await;
        }

        let continue_session = self.ask.is_reply && self.fault != Fault::ForgetSession;
        let ctx = self.sim.sessions.context(sid, continue_session);
        let (answer, tool_turn) = compose_answer(
            &self.sim.config,
            self.fault,
            &self.ask.question_text,
            sid,
            &ctx,
        );

        self.step(out, "step_start", "doing").await?;
        if ctx.is_new {
            let title = crate::answer::title_of(&self.ask.question_text);
            out.event(
                m::SESSION_TITLE_UPDATE,
                &Title {
                    session_id: sid,
                    session_title: &title,
                },
            )
            .await?;
        }
        let status_fault = self.fault.finish_status().map(|f| Ending {
            status_code: f.status_code,
            reason: f.reason,
            error_code: f.error_code,
        });
        if let Some(ending) = status_fault {
            self.step(out, "step_end", "error").await?;
            return self
                .finish(
                    out,
                    ending.reason,
                    ending.status_code,
                    "",
                    ending.error_code,
                )
                .await;
        }
        if self.sim.config.think {
            let text = format!("lingma-sim is thinking about turn {}", ctx.turn);
            for step in ["start", "done"] {
                let think = Think {
                    request_id: rid,
                    session_id: sid,
                    text: &text,
                    step,
                    timestamp: now_ms(),
                };
                out.event(m::CHAT_THINK, &think).await?;
            }
        }

        let (first_delay, chunk_delay) = if self.fault == Fault::Slow {
            (
                self.sim.config.slow_first_token_ms,
                self.sim.config.slow_chunk_delay_ms,
            )
        } else {
            (
                self.sim.config.first_token_delay_ms,
                self.sim.config.chunk_delay_ms,
            )
        };
        let chunks = match self.sim.config.answer_pieces {
            0 => self.sim.config.chunks,
            n => n,
        };
        let pieces = split_chunks(&answer, chunks);
        let mid = pieces.len() / 2;
        let mut sent = 0usize;
        // Prefill: the model reads the question before its first token, so the first
        // delay grows with what this ask sent (the whole history on a new session).
        let prefill = self.sim.config.prefill_delay(self.ask.question_text.len());
        self.sim.stats.record_prefill(prefill);
        for (i, piece) in pieces.iter().enumerate() {
            let delay = if i == 0 {
                Duration::from_millis(first_delay) + prefill
            } else {
                Duration::from_millis(chunk_delay)
            };
            if let Pause::Stopped = out.pause(delay, &self.stop).await? {
                return self
                    .finish(out, "cancelled", 200, &answer[..sent], None)
                    .await;
            }
            if i == mid && self.mid_stream_fault(out, &answer[..sent]).await? {
                return Ok(());
            }
            self.delta(
                out,
                piece,
                self.fault == Fault::DuplicateRequestId && i == 0,
            )
            .await?;
            sent += piece.len();
            if self.sim.config.empty_deltas && (i == 0 || i % 3 == 2) {
                self.delta(out, "", false).await?;
            }
        }
        self.step(out, "step_end", "done").await?;
        // Recorded before chat/finish leaves, so a follow-up sent on receipt sees this turn.
        self.sim.sessions.record_turn(
            sid,
            &self.ask.session_type,
            &ctx,
            rid,
            &self.ask.question_text,
            &answer,
        );
        self.sim.sessions.record_tools(sid, &tool_turn);
        self.finish(out, "success", 200, &answer, None).await?;
        if self.sim.config.usage_sync {
            let used = (self.ask.question_text.len() + answer.len()) / 4 + 1;
            let usage = Usage {
                used_tokens: used as u64,
                limit_tokens: 131_072,
            };
            out.raw(frames::notification(m::CONTEXT_USAGE_SYNC, &usage))
                .await?;
        }
        if self.fault == Fault::LateFrames {
            self.delta(out, " (late delta after chat/finish)", false)
                .await?;
            self.step(out, "step_end", "done").await?;
        }
        Ok(())
    }

    /// Faults that strike halfway through the deltas; true when the chat ends here.
    async fn mid_stream_fault(&self, out: &mut EventSink<'_>, sent: &str) -> Result<bool, Closed> {
        match self.fault {
            Fault::Crash => {
                out.flush().await?;
                self.wait_outbox_drained().await;
                self.sim.crash();
                Err(Closed)
            }
            Fault::Drop => {
                tracing::warn!(
                    conn = self.conn.id,
                    "fault drop: closing the WebSocket mid-stream"
                );
                out.flush().await?;
                self.conn.abort().await;
                Err(Closed)
            }
            Fault::TruncatedFrame => {
                tracing::warn!(
                    conn = self.conn.id,
                    "fault truncated_frame: short frame, then the connection is dropped"
                );
                out.raw("Content-Length: 4096\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":".to_owned())
                    .await?;
                out.flush().await?;
                self.conn.abort().await;
                Err(Closed)
            }
            Fault::MalformedFrame => {
                let body = "{\"jsonrpc\":\"2.0\",\"method\":\"chat/answer\",\"params\":{\"text\":";
                out.raw(lingma_protocol::framing::encode(body)).await?;
                Ok(false)
            }
            Fault::Filtered => {
                self.step(out, "step_end", "error").await?;
                self.finish(out, "filtered", 601, sent, None).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Give the writer a moment to put queued frames on the wire before a simulated crash.
    async fn wait_outbox_drained(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while !self.conn.outbox_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn end_early(&self, out: &mut EventSink<'_>, ending: Ending<'_>) -> Result<(), Closed> {
        self.step(out, "step_start", "doing").await?;
        self.step(out, "step_end", "error").await?;
        self.finish(
            out,
            ending.reason,
            ending.status_code,
            "",
            ending.error_code,
        )
        .await
    }

    async fn step(&self, out: &mut EventSink<'_>, step: &str, status: &str) -> Result<(), Closed> {
        let params = Step {
            request_id: &self.ask.request_id,
            session_id: &self.session_id,
            step,
            description: "",
            status,
            result: None,
            message: "",
        };
        out.event(m::CHAT_PROCESS_STEP_CALLBACK, &params).await
    }

    async fn delta(&self, out: &mut EventSink<'_>, text: &str, twice: bool) -> Result<(), Closed> {
        let params = Answer {
            request_id: &self.ask.request_id,
            session_id: &self.session_id,
            text,
            overwrite: false,
            is_filtered: false,
            timestamp: now_ms(),
            extra: SessionTypeExtra {
                session_type: &self.ask.session_type,
                error_code: None,
            },
        };
        if twice {
            out.event_twice(m::CHAT_ANSWER, &params).await
        } else {
            out.event(m::CHAT_ANSWER, &params).await
        }
    }

    async fn finish(
        &self,
        out: &mut EventSink<'_>,
        reason: &str,
        status_code: i64,
        full_answer: &str,
        error_code: Option<i64>,
    ) -> Result<(), Closed> {
        let params = Finish {
            request_id: &self.ask.request_id,
            session_id: &self.session_id,
            reason,
            status_code,
            full_answer,
            extra: SessionTypeExtra {
                session_type: &self.ask.session_type,
                error_code,
            },
        };
        tracing::debug!(conn = self.conn.id, request_id = %self.ask.request_id, status_code, reason, "chat finished");
        self.release();
        out.event(m::CHAT_FINISH, &params).await
    }
}
