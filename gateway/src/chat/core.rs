//! The typed core of a chat: admission, routing, the mux stream, retry before output, pin
//! learning, and timing. The HTTP edge turns [`AcceptedChat`] into SSE or one JSON body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux_protocol::{
    ChatMessage, ChatRequest, ErrorKind, FinishReason, ServerMessage, SessionOutcome, Usage,
};

use crate::backpressure::{Admission, InFlightLimiter};
use crate::errors::GatewayError;
use crate::observability::metrics::Metrics;
use crate::pool::{ChatStream, Pool};
use crate::routing::router::Router;
use crate::routing::{PinDecision, PinMap, check_pin};

pub struct ChatSettings {
    pub default_model: String,
    pub session_reuse: bool,
    pub queue_timeout: Duration,
}

/// Everything the core needs, shared by all requests.
pub struct ChatService {
    pub pool: Arc<Pool>,
    pub router: Router,
    pub limiter: InFlightLimiter,
    pub pins: PinMap,
    pub metrics: Arc<Metrics>,
    pub settings: ChatSettings,
}

/// A validated request, routed by its keys.
pub struct PreparedChat {
    pub request_id: Arc<str>,
    /// `None` = the sidecar's DEFAULT_MODEL.
    pub lingma_model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub scope: Arc<str>,
    pub affinity: u64,
    pub conversation_key: Option<String>,
    pub continuation_key: Option<String>,
    pub stream: bool,
}

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

impl ChatService {
    /// Admit, route and start the chat; returns once the sidecar said `Started`. A failure
    /// before any output is retried once on another sidecar.
    pub async fn start(
        self: &Arc<Self>,
        chat: PreparedChat,
        arrival: Instant,
    ) -> Result<AcceptedChat, GatewayError> {
        let deadline = tokio::time::Instant::from_std(arrival + self.settings.queue_timeout);
        let pinned = chat
            .conversation_key
            .as_deref()
            .and_then(|k| self.pins.get(k));
        let decision = check_pin(pinned, |name| {
            self.pool.find(name).is_some_and(|s| s.usable())
        });
        let (pinned, migrated) = match decision {
            PinDecision::Use(name) => (Some(name), false),
            PinDecision::Migrate => (None, true),
            PinDecision::Unpinned => (None, false),
        };

        let queue_started = Instant::now();
        let mut global = self
            .limiter
            .acquire_global(deadline)
            .await
            .map_err(|r| self.refuse(r.into_error()))?;
        let mut queued = queue_started.elapsed();
        let mut waited = queued;
        let mut exclude: Option<Arc<str>> = None;
        let mut last_error = GatewayError::Unavailable {
            message: "No upstream Lingma instance is ready to take requests.",
        };
        for attempt in 0..2 {
            let queue_started = Instant::now();
            let admission = self
                .limiter
                .acquire_sidecar(global, &self.pool, deadline, || {
                    self.router.order(
                        &self.pool,
                        chat.affinity,
                        pinned.as_deref(),
                        exclude.as_deref(),
                    )
                })
                .await
                .map_err(|r| self.refuse(r.into_error()))?;
            queued += queue_started.elapsed();
            waited += queue_started.elapsed();
            let sidecar = admission.sidecar().clone();
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let request = ChatRequest {
                request_id: chat.request_id.to_string(),
                model: chat.lingma_model.clone(),
                messages: chat.messages.clone(),
                scope: chat.scope.to_string(),
                session_reuse: self.settings.session_reuse,
                queue_timeout_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
            };
            let link = sidecar.link.load_full();
            let opened = match link {
                Some(link) => link.open(request).await.ok(),
                None => None,
            };
            let first = match opened {
                Some(mut stream) => {
                    let t = Instant::now();
                    let first = stream.next().await;
                    waited += t.elapsed();
                    first.map(|m| (stream, m))
                }
                None => None,
            };
            let failure = match first {
                Some((stream, ServerMessage::Started { session, .. })) => {
                    self.metrics.queue_wait.observe(queued.as_secs_f64());
                    return Ok(self.accepted(
                        chat,
                        arrival,
                        waited,
                        sidecar.name.clone(),
                        stream,
                        admission,
                        session,
                        migrated,
                        None,
                    ));
                }
                Some((
                    stream,
                    m @ (ServerMessage::Delta { .. } | ServerMessage::Finish { .. }),
                )) => {
                    // A sidecar that skipped `Started`: serve it as a fresh session.
                    return Ok(self.accepted(
                        chat,
                        arrival,
                        waited,
                        sidecar.name.clone(),
                        stream,
                        admission,
                        SessionOutcome::New,
                        migrated,
                        Some(m),
                    ));
                }
                Some((_, ServerMessage::Error { kind, message, .. })) => (kind, message),
                Some((_, ServerMessage::Status(_))) | None => (
                    ErrorKind::ConnectionLost,
                    "The connection to the upstream instance was lost.".to_owned(),
                ),
            };
            let (kind, message) = failure;
            self.metrics
                .upstream_errors
                .with_label_values(&[kind.as_str()])
                .inc();
            if kind.blames_instance() {
                self.eject_check(&sidecar);
            }
            tracing::warn!(request_id = %chat.request_id, sidecar = %sidecar.name, kind = kind.as_str(), attempt, "chat failed before output");
            last_error = GatewayError::from_upstream(kind, &message);
            global = admission.into_global();
            if attempt == 0 && kind.retriable_elsewhere() {
                self.metrics.retries.inc();
                exclude = Some(sidecar.name.clone());
                continue;
            }
            break;
        }
        self.metrics
            .rejected
            .with_label_values(&[last_error.reason()])
            .inc();
        Err(last_error)
    }

    fn refuse(&self, e: GatewayError) -> GatewayError {
        self.metrics.rejected.with_label_values(&[e.reason()]).inc();
        e
    }

    fn eject_check(&self, sidecar: &crate::pool::Sidecar) {
        let s = self.pool.settings();
        if sidecar.record_failure(s.eject_failures, s.eject_cooldown) {
            tracing::warn!(sidecar = %sidecar.name, cooldown_s = s.eject_cooldown.as_secs_f64(), "sidecar ejected after consecutive failures");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn accepted(
        self: &Arc<Self>,
        chat: PreparedChat,
        arrival: Instant,
        waited: Duration,
        sidecar: Arc<str>,
        stream: ChatStream,
        admission: Admission,
        outcome: SessionOutcome,
        migrated: bool,
        pending: Option<ServerMessage>,
    ) -> AcceptedChat {
        self.metrics.accepted.inc();
        let session = match (migrated, outcome) {
            (true, _) => SessionHeader::Migrated,
            (false, SessionOutcome::Reused) => SessionHeader::Reused,
            (false, SessionOutcome::New) => SessionHeader::New,
        };
        if chat.conversation_key.is_some() {
            self.metrics
                .sessions
                .with_label_values(&[session.as_str()])
                .inc();
        }
        AcceptedChat {
            session,
            sidecar,
            timing: Timing {
                arrival,
                waited,
                first_token: None,
            },
            service: self.clone(),
            stream,
            admission,
            continuation_key: chat.continuation_key,
            pending,
            done: false,
        }
    }
}

impl AcceptedChat {
    /// The next event; `None` after the end.
    pub async fn next(&mut self) -> Option<ChatEvent> {
        if self.done {
            return None;
        }
        let message = match self.pending.take() {
            Some(m) => Some(m),
            None => {
                let t = Instant::now();
                let m = self.stream.next().await;
                self.timing.waited += t.elapsed();
                m
            }
        };
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
            Some(ServerMessage::Started { .. } | ServerMessage::Status(_)) => {
                // Not expected mid-stream; skip it.
                return Box::pin(self.next()).await;
            }
            None => {
                self.done = true;
                self.fail(ErrorKind::ConnectionLost);
                ChatEvent::Error(GatewayError::from_upstream(
                    ErrorKind::ConnectionLost,
                    "The connection to the upstream instance was lost.",
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
