//! Forwarding one Lingma chat stream to the gateway: answer text (think blocks split off)
//! as `Delta`s until `chat/finish`. `Started` goes out first, as soon as Lingma accepted
//! the ask: from then on the chat has run upstream and nobody retries it. The `Finish`
//! (built by [`finish_message`]) is the caller's to send, after it stored the session and
//! freed the slot, so every gateway can hear of both before the client has its answer.
//!
//! A slow gateway connection (its mux queue full) never makes the chat fall behind
//! Lingma: the forwarder keeps taking Lingma's events while it waits for room, and merges
//! the text that waits into one pending piece per kind. So the Lingma client's per-chat
//! buffer (`CHAT_EVENT_BUFFER` events) does not overflow because of the gateway or its
//! client (which would end the chat as the instance's fault); what waits is at most the
//! answer's text, and the gateway gets fewer, larger deltas while it is slow.

use super::output::{Gone, Output, Room};
use super::think::{Piece, ThinkSplitter, emit};
use super::{End, Failure, classify_client_error, classify_finish_event, estimated_usage};
use crate::quota::QuotaSettings;
use futures_util::{FutureExt, StreamExt};
use lingma_protocol::{ChatEvent, ChatStream};
use mux_protocol::{ErrorKind, FinishReason, ServerMessage, SessionOutcome, StreamId, Usage};
use tokio_util::sync::CancellationToken;

/// What the gateway has been sent for this chat so far.
struct Forwarder<'a> {
    out: &'a mut Output,
    session_id: &'a str,
    session: SessionOutcome,
    started: bool,
    /// Content sent so far (compared with `fullAnswer` at the end).
    streamed: String,
    splitter: ThinkSplitter,
    /// Text not sent yet, adjacent pieces of one kind merged.
    pieces: Vec<Piece>,
}

/// How a forwarded chat ended well: what its `Finish` will say.
pub(super) struct Finished {
    pub(super) reason: FinishReason,
    pub(super) usage: Usage,
}

/// Forward one chat's events up to its finish (or an error, or a cancel); the `Finish`
/// itself is not sent.
pub(super) async fn forward(
    mut stream: ChatStream,
    session_id: &str,
    session: SessionOutcome,
    prompt_chars: usize,
    quota: &QuotaSettings,
    out: &mut Output,
    cancel: &CancellationToken,
) -> Result<Finished, End> {
    let mut fwd = Forwarder {
        out,
        session_id,
        session,
        started: false,
        streamed: String::new(),
        splitter: ThinkSplitter::default(),
        pieces: Vec::new(),
    };
    // Lingma accepted the ask: tell the gateway now, not with the first text, so a failure
    // from here on is never taken for one that may be retried (at most once upstream).
    fwd.ensure_started().await?;
    loop {
        let event = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                stream.stop().await;
                return Err(End::Cancelled);
            }
            // Pending text goes out as soon as the connection has room; meanwhile
            // Lingma's events are still taken (below) and merged into it.
            room = fwd.out.reserve(), if !fwd.pieces.is_empty() => {
                fwd.send_first(room?)?;
                continue;
            }
            event = stream.next() => event,
        };
        // Take whatever else Lingma already sent before going back to the connection:
        // merging is cheap, a frame each is not, so a burst never outruns the forwarder
        // (a chat more than CHAT_EVENT_BUFFER events behind is ended by the client).
        let mut next = Some(event);
        let mut taken = 0;
        while let Some(event) = next.take() {
            if let Some(end) = fwd.take(event, prompt_chars, quota).await {
                return end;
            }
            taken += 1;
            if taken < BURST {
                next = stream.next().now_or_never();
            }
        }
    }
}

/// Events taken in a row (and merged into one delta) without a look at the cancel token
/// or the connection. Small enough that clients still see the answer arrive in small
/// pieces when the forwarder lags (30,000 pieces are at least 938 deltas), large enough
/// that a frame's cost is shared by many events.
const BURST: usize = 32;

impl Forwarder<'_> {
    /// One event from Lingma: text is merged into the pending pieces; a finish, an error
    /// or the end of the stream ends the chat (`Some`).
    async fn take(
        &mut self,
        event: Option<Result<ChatEvent, lingma_protocol::ClientError>>,
        prompt_chars: usize,
        quota: &QuotaSettings,
    ) -> Option<Result<Finished, End>> {
        match event {
            Some(Ok(ChatEvent::Answer(a))) => self.splitter.push(&a.text, &mut self.pieces),
            Some(Ok(ChatEvent::Think(t))) => emit(&mut self.pieces, Piece::Reasoning(t.text)),
            Some(Ok(ChatEvent::Finish(f))) => {
                return Some(self.finish(&f, prompt_chars, quota).await);
            }
            Some(Ok(ChatEvent::Step(_) | ChatEvent::Title(_))) => {}
            Some(Err(e)) => {
                // What Lingma did send reaches the gateway before the error.
                return Some(match self.flush().await {
                    Ok(()) => Err(End::Failed(classify_client_error(&e))),
                    Err(gone) => Err(gone.into()),
                });
            }
            None => {
                return Some(match self.flush().await {
                    Ok(()) => Err(End::Failed(Failure::new(
                        ErrorKind::Upstream,
                        "Lingma ended the chat without a finish",
                    ))),
                    Err(gone) => Err(gone.into()),
                });
            }
        }
        None
    }

    async fn finish(
        &mut self,
        f: &lingma_protocol::wire::ChatFinish,
        prompt_chars: usize,
        quota: &QuotaSettings,
    ) -> Result<Finished, End> {
        self.splitter.finish(&mut self.pieces);
        self.flush().await?;
        let reason = classify_finish_event(f, quota).map_err(End::Failed)?;
        // Deltas can be lost or empty; fullAnswer is authoritative. Send what the
        // deltas missed when it extends them.
        if reason == FinishReason::Stop
            && let Some(rest) = missing_tail(&self.streamed, &f.full_answer)
        {
            self.pieces.push(Piece::Content(rest));
            self.flush().await?;
        }
        self.ensure_started().await?;
        Ok(Finished {
            reason,
            usage: estimated_usage(prompt_chars, self.streamed.chars().count()),
        })
    }

    /// `Started`, once per chat.
    async fn ensure_started(&mut self) -> Result<(), Gone> {
        if !self.started {
            self.started = true;
            let msg = ServerMessage::Started {
                id: self.out.id,
                session: self.session,
                session_id: self.session_id.to_owned(),
            };
            self.out.send(&msg).await?;
        }
        Ok(())
    }

    /// Send every pending piece, waiting for room (the end of the chat: nothing more
    /// comes from Lingma that could pile up meanwhile).
    async fn flush(&mut self) -> Result<(), Gone> {
        self.ensure_started().await?;
        while !self.pieces.is_empty() {
            let room = self.out.reserve().await?;
            self.send_first(room)?;
        }
        Ok(())
    }

    /// Send the oldest pending piece into the room reserved for it.
    fn send_first(&mut self, room: Room) -> Result<(), Gone> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let id = self.out.id;
        let msg = match self.pieces.remove(0) {
            Piece::Content(text) => {
                self.streamed.push_str(&text);
                ServerMessage::Delta {
                    id,
                    content: Some(text),
                    reasoning_content: None,
                }
            }
            Piece::Reasoning(text) => ServerMessage::Delta {
                id,
                content: None,
                reasoning_content: Some(text),
            },
        };
        self.out.send_reserved(room, &msg)
    }
}

/// The `Finish` of a chat that ended well.
pub(super) fn finish_message(id: StreamId, done: &Finished, session_id: &str) -> ServerMessage {
    ServerMessage::Finish {
        id,
        finish_reason: done.reason,
        usage: done.usage,
        session_id: session_id.to_owned(),
    }
}

/// The part of `full` that the streamed deltas did not carry, when `full` extends them.
fn missing_tail(streamed: &str, full: &str) -> Option<String> {
    if full.len() > streamed.len() && full.starts_with(streamed) {
        let tail = &full[streamed.len()..];
        // Inline think blocks are not content: never resend them raw.
        if !tail.contains("````think::") {
            return Some(tail.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_answer_fills_in_what_the_deltas_missed() {
        assert_eq!(missing_tail("Hel", "Hello").as_deref(), Some("lo"));
        assert_eq!(missing_tail("", "Hello").as_deref(), Some("Hello"));
        assert_eq!(missing_tail("Hello", "Hello"), None);
        assert_eq!(
            missing_tail("Hi", "Hello"),
            None,
            "not an extension: keep what was sent"
        );
        assert_eq!(missing_tail("", "````think::1\nx\n````\nHi"), None);
    }
}
