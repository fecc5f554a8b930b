//! A chat the sidecar accepted, as a sequence of [`ChatEvent`]s: deltas, then a finish or
//! an error. It owns its admission and mux stream, so dropping it frees the slots and
//! cancels the chat upstream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux_protocol::{ErrorKind, FinishReason, ServerMessage, Usage};

use super::core::{CONNECTION_LOST, ChatService, Opened};
use crate::backpressure::Admission;
use crate::errors::GatewayError;
use crate::pool::ChatStream;

/// One event of an accepted chat.
#[derive(Debug)]
pub enum ChatEvent {
    Delta {
        content: Option<String>,
        reasoning: Option<String>,
    },
    Finish {
        finish_reason: FinishReason,
        usage: Usage,
    },
    Error(GatewayError),
}

/// How the upstream session of this turn came about (`x-lingma-session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionHeader {
    Reused,
    New,
    Migrated,
}

impl SessionHeader {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reused => "reused",
            Self::New => "new",
            Self::Migrated => "migrated",
        }
    }
}

/// Time bookkeeping for the overhead metric: total minus what was spent waiting.
pub struct Timing {
    pub arrival: Instant,
    pub waited: Duration,
    pub first_token: Option<Instant>,
}

impl Timing {
    pub fn overhead(&self) -> Duration {
        self.arrival.elapsed().saturating_sub(self.waited)
    }
}

/// A chat the sidecar accepted (`Started` received). Owns its admission: dropping it
/// frees the slots and cancels the chat upstream.
pub struct AcceptedChat {
    pub session: SessionHeader,
    pub sidecar: Arc<str>,
    pub timing: Timing,
    service: Arc<ChatService>,
    stream: ChatStream,
    admission: Admission,
    continuation_key: Option<String>,
    pending: Option<ServerMessage>,
    done: bool,
}

impl AcceptedChat {
    pub(super) fn new(
        service: Arc<ChatService>,
        session: SessionHeader,
        timing: Timing,
        opened: Opened,
        continuation_key: Option<String>,
    ) -> Self {
        Self {
            session,
            sidecar: opened.admission.sidecar().name.clone(),
            timing,
            service,
            stream: opened.stream,
            admission: opened.admission,
            continuation_key,
            pending: opened.pending,
            done: false,
        }
    }

    /// The next event; `None` after the end. `Started` or `Status` frames in the middle of
    /// a stream are not expected and are skipped (in a loop: a sidecar sending many of
    /// them costs time, never stack).
    pub async fn next(&mut self) -> Option<ChatEvent> {
        if self.done {
            return None;
        }
        loop {
            let message = match self.pending.take() {
                Some(m) => Some(m),
                None => self.receive().await,
            };
            if let Some(event) = self.event(message) {
                return Some(event);
            }
        }
    }

    async fn receive(&mut self) -> Option<ServerMessage> {
        let t = Instant::now();
        let m = self.stream.next().await;
        self.timing.waited += t.elapsed();
        m
    }

    /// The event a message makes, or `None` for a message to skip.
    fn event(&mut self, message: Option<ServerMessage>) -> Option<ChatEvent> {
        let event = match message {
            Some(ServerMessage::Delta {
                content,
                reasoning_content,
                ..
            }) => {
                if self.timing.first_token.is_none() {
                    self.timing.first_token = Some(Instant::now());
                    self.service
                        .metrics
                        .time_to_first_token
                        .observe(self.timing.arrival.elapsed().as_secs_f64());
                }
                ChatEvent::Delta {
                    content,
                    reasoning: reasoning_content,
                }
            }
            Some(ServerMessage::Finish {
                finish_reason,
                usage,
                ..
            }) => {
                self.done = true;
                self.admission.sidecar().record_success();
                if let Some(key) = self.continuation_key.take() {
                    self.service.pins.insert(key, self.sidecar.clone());
                }
                ChatEvent::Finish {
                    finish_reason,
                    usage,
                }
            }
            Some(ServerMessage::Error { kind, message, .. }) => {
                self.done = true;
                self.fail(kind);
                ChatEvent::Error(GatewayError::from_upstream(kind, &message))
            }
            Some(
                ServerMessage::Started { .. }
                | ServerMessage::Status(_)
                | ServerMessage::Sessions(_)
                | ServerMessage::Load(_),
            ) => return None,
            None => {
                self.done = true;
                self.fail(ErrorKind::ConnectionLost);
                ChatEvent::Error(GatewayError::from_upstream(
                    ErrorKind::ConnectionLost,
                    CONNECTION_LOST,
                ))
            }
        };
        Some(event)
    }

    fn fail(&self, kind: ErrorKind) {
        self.service
            .metrics
            .upstream_errors
            .with_label_values(&[kind.as_str()])
            .inc();
        if kind.blames_instance() {
            self.service.eject_check(self.admission.sidecar());
        }
    }

    /// Time this chat waited queued for a slot (`x-lingma-queue-wait-ms`).
    pub fn queue_wait(&self) -> Duration {
        self.admission.queue_wait()
    }

    pub fn finished(&self) -> bool {
        self.done
    }

    /// Record duration and overhead; call once at the end of the response.
    pub fn observe_end(&self, stream: bool) {
        let m = &self.service.metrics;
        let duration = if stream {
            &m.duration_stream
        } else {
            &m.duration_plain
        };
        duration.observe(self.timing.arrival.elapsed().as_secs_f64());
        m.overhead.observe(self.timing.overhead().as_secs_f64());
    }
}
