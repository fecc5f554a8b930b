//! The typed core of a chat: admission, routing, the mux stream, retry before output, pin
//! learning, and timing. The HTTP edge turns [`AcceptedChat`] into SSE or one JSON body.
//!
//! [`ChatService::start`] runs named steps: the pin decision, global admission, then up to
//! two attempts (sidecar admission, open the mux stream, wait for `Started`), and on a
//! failure its classification (metrics, ejection, whether to try elsewhere). A chat sent
//! anywhere but to the instance holding its session may not wait there for a slot; when
//! another replica's chat took that slot first, the refusal is not a failed attempt: the
//! chat queues here again (late binding across replicas).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mux_protocol::{ChatMessage, ChatRequest, ErrorKind, ServerMessage, SessionOutcome};

pub use super::accepted::{AcceptedChat, ChatEvent, SessionHeader, Timing};
use crate::backpressure::{Admission, GlobalPermit, InFlightLimiter};
use crate::errors::GatewayError;
use crate::observability::metrics::Metrics;
use crate::pool::{ChatStream, Pool, Sidecar};
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
    /// The caller's virtual key: its queue in the fair scheduler.
    pub key: Arc<crate::keys::VirtualKey>,
}

/// Where a follow-up turn should go: the sidecar holding its session.
struct PinChoice {
    /// The pinned sidecar, when it can take the turn.
    sidecar: Option<Arc<str>>,
    /// The turn was pinned to a sidecar that cannot take it now.
    migrated: bool,
}

/// Time spent waiting so far: for slots (`queued`), and for slots or the sidecar
/// (`waited`, which the overhead metric leaves out).
#[derive(Default, Clone, Copy)]
pub(super) struct Waits {
    pub(super) queued: Duration,
    pub(super) waited: Duration,
}

impl Waits {
    fn add_queue(&mut self, since: Instant) {
        let d = since.elapsed();
        self.queued += d;
        self.waited += d;
    }
}

/// A chat the sidecar took: its stream, its admission and how its session came about.
pub(super) struct Opened {
    pub(super) stream: ChatStream,
    pub(super) admission: Admission,
    pub(super) outcome: SessionOutcome,
    /// The first message when it was not `Started` (served as a fresh session).
    pub(super) pending: Option<ServerMessage>,
}

/// How one attempt on one sidecar ended.
enum Attempt {
    Accepted(Opened),
    Failed {
        admission: Admission,
        kind: ErrorKind,
        message: String,
    },
}

pub(super) const CONNECTION_LOST: &str = "The connection to the upstream instance was lost.";

/// How many slots a request may lose to other gateway replicas' chats (each a refusal
/// before anything ran) before it is sent in a way that may wait in the sidecar's queue.
/// Every lost race is another chat admitted, so this only guards against a sidecar that
/// keeps refusing for another reason.
const MAX_SLOT_RACES: u32 = 8;

impl ChatService {
    /// Admit, route and start the chat; returns once the sidecar said `Started`. A failure
    /// before any output is retried once on another sidecar.
    pub async fn start(
        self: &Arc<Self>,
        chat: PreparedChat,
        arrival: Instant,
    ) -> Result<AcceptedChat, GatewayError> {
        let deadline = tokio::time::Instant::from_std(arrival + self.settings.queue_timeout);
        let mut pin = self.pin_choice(&chat);
        let mut waits = Waits::default();
        let queue_started = Instant::now();
        let mut global = self
            .limiter
            .acquire_global(&chat.key, deadline)
            .await
            .map_err(|r| self.refuse(r.into_error()))?;
        waits.add_queue(queue_started);
        let mut exclude: Option<Arc<str>> = None;
        let (mut attempt, mut races) = (0, 0);
        let last_error = loop {
            let admission = self
                .admit_sidecar(
                    global,
                    &chat,
                    (&mut pin, arrival),
                    exclude.as_deref(),
                    deadline,
                    &mut waits,
                )
                .await?;
            // Only the instance holding the session is worth queueing at: anywhere else
            // the chat takes a slot that is free now, or none (`wait_for_slot`).
            let at_owner = pin.sidecar.as_deref() == Some(&*admission.sidecar().name);
            let wait_for_slot = at_owner || races >= MAX_SLOT_RACES;
            match self
                .attempt(&chat, admission, deadline, &mut waits, wait_for_slot)
                .await
            {
                Attempt::Accepted(opened) => {
                    // Served elsewhere than the instance holding its session (the sticky
                    // wait ran out, or the owner failed): the session migrated.
                    let migrated = pin.migrated
                        || pin
                            .sidecar
                            .as_ref()
                            .is_some_and(|owner| *owner != opened.admission.sidecar().name);
                    return Ok(self.accepted(chat, arrival, waits, opened, migrated));
                }
                Attempt::Failed {
                    admission,
                    kind: ErrorKind::Overloaded,
                    ..
                } if !wait_for_slot => {
                    // Another replica's chat took the slot this one saw free; nothing ran.
                    // Held full before the slot is given back, so no waiter (this one
                    // included) is handed the same sidecar again before it reports.
                    admission.sidecar().saw_full();
                    self.metrics.slot_races.inc();
                    races += 1;
                    global = admission.into_global();
                }
                Attempt::Failed {
                    admission,
                    kind,
                    message,
                } => {
                    let sidecar = admission.sidecar().clone();
                    self.classify_failure(&chat, &sidecar, kind, attempt);
                    global = admission.into_global();
                    if attempt == 0 && kind.retriable_elsewhere() {
                        self.metrics.retries.inc();
                        exclude = Some(sidecar.name.clone());
                        attempt += 1;
                        continue;
                    }
                    drop(global);
                    break GatewayError::from_upstream(kind, &message);
                }
            }
        };
        Err(self.refuse(last_error))
    }

    /// Step 1: where the session of a follow-up turn is. First the pool's owner index
    /// (what the sidecars announce they hold: the source of truth, the same on every
    /// gateway replica); only when no sidecar announces the key, this gateway's own pin.
    /// Either is used only if its sidecar can take the turn.
    fn pin_choice(&self, chat: &PreparedChat) -> PinChoice {
        let Some(key) = chat.conversation_key.as_deref() else {
            return PinChoice {
                sidecar: None,
                migrated: false,
            };
        };
        let holders = self.pool.owners().holders(mux_protocol::KeyDigest::of(key));
        if !holders.is_empty() {
            // Usually one holder; of several, the least loaded usable one.
            let best = holders
                .iter()
                .filter_map(|name| self.pool.find(name))
                .filter(|s| s.usable())
                .min_by_key(|s| s.load());
            return PinChoice {
                migrated: best.is_none(),
                sidecar: best.map(|s| s.name.clone()),
            };
        }
        let pinned = self.pins.get(key);
        let decision = check_pin(pinned, |name| {
            self.pool.find(name).is_some_and(|s| s.usable())
        });
        match decision {
            PinDecision::Use(name) => PinChoice {
                sidecar: Some(name),
                migrated: false,
            },
            PinDecision::Migrate => PinChoice {
                sidecar: None,
                migrated: true,
            },
            PinDecision::Unpinned => PinChoice {
                sidecar: None,
                migrated: false,
            },
        }
    }

    /// Step 2: a slot on the first sidecar of the ranking that has one (waiting until
    /// `deadline`), skipping the one that just failed.
    /// `order` is evaluated again at every change, with the time since `arrival`: a
    /// follow-up waits for its own (full) instance up to the sticky wait bound. The owner
    /// is looked up again each time too (`pin` keeps the last answer), so a turn that
    /// arrived just before its sidecar's `sessions` announcement still finds its session.
    async fn admit_sidecar(
        &self,
        global: GlobalPermit,
        chat: &PreparedChat,
        (pin, arrival): (&mut PinChoice, Instant),
        exclude: Option<&str>,
        deadline: tokio::time::Instant,
        waits: &mut Waits,
    ) -> Result<Admission, GatewayError> {
        let queue_started = Instant::now();
        let admission = self
            .limiter
            .acquire_sidecar(global, &self.pool, deadline, || {
                let fresh = self.pin_choice(chat);
                if fresh.sidecar.is_some() || pin.sidecar.is_none() {
                    *pin = fresh;
                }
                self.router.order_for(
                    &self.pool,
                    chat.affinity,
                    pin.sidecar.as_deref(),
                    exclude,
                    arrival.elapsed(),
                )
            })
            .await
            .map_err(|r| self.refuse(r.into_error()))?;
        waits.add_queue(queue_started);
        Ok(admission)
    }

    /// Step 3: send the chat on the admitted sidecar's mux link and wait for its first
    /// message.
    async fn attempt(
        &self,
        chat: &PreparedChat,
        admission: Admission,
        deadline: tokio::time::Instant,
        waits: &mut Waits,
        wait_for_slot: bool,
    ) -> Attempt {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let request = ChatRequest {
            request_id: chat.request_id.to_string(),
            model: chat.lingma_model.clone(),
            messages: chat.messages.clone(),
            scope: chat.scope.to_string(),
            session_reuse: self.settings.session_reuse,
            queue_timeout_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
            wait_for_slot,
        };
        let link = admission.sidecar().link.load_full();
        let opened = match link {
            Some(link) => link.open(request).await.ok(),
            None => None,
        };
        let Some(mut stream) = opened else {
            // Never sent, so never run: another sidecar may take it.
            return Attempt::Failed {
                admission,
                kind: ErrorKind::Unavailable,
                message: "The upstream instance is not connected.".to_owned(),
            };
        };
        let t = Instant::now();
        let first = stream.next().await;
        waits.waited += t.elapsed();
        let (outcome, pending) = match first {
            Some(ServerMessage::Started { session, .. }) => {
                self.metrics.queue_wait.observe(waits.queued.as_secs_f64());
                (session, None)
            }
            // A sidecar that skipped `Started`: serve it as a fresh session.
            Some(m @ (ServerMessage::Delta { .. } | ServerMessage::Finish { .. })) => {
                (SessionOutcome::New, Some(m))
            }
            Some(ServerMessage::Error { kind, message, .. }) => {
                return Attempt::Failed {
                    admission,
                    kind,
                    message,
                };
            }
            Some(
                ServerMessage::Status(_) | ServerMessage::Sessions(_) | ServerMessage::Load(_),
            )
            | None => return lost(admission),
        };
        Attempt::Accepted(Opened {
            stream,
            admission,
            outcome,
            pending,
        })
    }

    /// Step 4: count a failure before output, and eject the sidecar when it was its fault.
    fn classify_failure(
        &self,
        chat: &PreparedChat,
        sidecar: &Sidecar,
        kind: ErrorKind,
        attempt: u32,
    ) {
        self.metrics
            .upstream_errors
            .with_label_values(&[kind.as_str()])
            .inc();
        if kind.blames_instance() {
            self.eject_check(sidecar);
        }
        tracing::warn!(request_id = %chat.request_id, sidecar = %sidecar.name, kind = kind.as_str(), attempt, "chat failed before output");
    }

    fn refuse(&self, e: GatewayError) -> GatewayError {
        self.metrics.rejected.with_label_values(&[e.reason()]).inc();
        e
    }

    pub(super) fn eject_check(&self, sidecar: &Sidecar) {
        let s = self.pool.settings();
        if sidecar.record_failure(s.eject_failures, s.eject_cooldown) {
            tracing::warn!(sidecar = %sidecar.name, cooldown_s = s.eject_cooldown.as_secs_f64(), "sidecar ejected after consecutive failures");
        }
    }

    fn accepted(
        self: &Arc<Self>,
        chat: PreparedChat,
        arrival: Instant,
        waits: Waits,
        opened: Opened,
        migrated: bool,
    ) -> AcceptedChat {
        self.metrics.accepted.inc();
        let session = match (migrated, opened.outcome) {
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
        AcceptedChat::new(
            self.clone(),
            session,
            Timing {
                arrival,
                waited: waits.waited,
                first_token: None,
            },
            opened,
            chat.continuation_key,
        )
    }
}

/// The connection went down after the chat was sent: it may have run, so it is not
/// retried elsewhere (at most once upstream).
fn lost(admission: Admission) -> Attempt {
    Attempt::Failed {
        admission,
        kind: ErrorKind::ConnectionLost,
        message: CONNECTION_LOST.to_owned(),
    }
}
