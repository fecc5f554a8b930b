//! What every part of the sidecar shares: the health of the Lingma link (connection,
//! login, draining, models) as a watch channel that mux connections and waiting chats
//! follow, the current client, the chat slots, the session map and the metrics.

use crate::capacity::ChatSlots;
use crate::config::AskMode;
use crate::metrics::Metrics;
use crate::quota::{PauseStreak, Paused, QuotaSettings};
use crate::sessions::SessionMap;
use lingma_protocol::LingmaClient;
use mux_protocol::{
    ConnectionState, LoginState, ModelInfo, PROTOCOL_VERSION, PauseReason, SidecarStatus,
};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// The part of the status that changes rarely; every change is pushed to the gateways.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub connection: ConnectionState,
    pub login: LoginState,
    pub draining: bool,
    pub models: Arc<Vec<ModelInfo>>,
    /// The account sits out a rate limit or an exhausted quota (`crate::quota`).
    pub paused: Option<Paused>,
}

impl Health {
    /// Takes chats: serving and not paused.
    pub fn ready(&self) -> bool {
        self.serving() && self.paused.is_none()
    }

    /// Connected, logged in and not draining: the pod is healthy (`/readyz`), even while
    /// its account is paused.
    pub fn serving(&self) -> bool {
        self.connection == ConnectionState::Ready
            && self.login == LoginState::LoggedIn
            && !self.draining
    }
}

/// Chat settings that do not change while running.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub default_model: String,
    pub ask_mode: AskMode,
    pub session_reuse: bool,
    pub auto_login: bool,
}

pub struct SidecarState {
    pub name: String,
    pub chat: ChatSettings,
    health: watch::Sender<Health>,
    client: RwLock<Option<LingmaClient>>,
    pub slots: ChatSlots,
    pub sessions: SessionMap,
    pub metrics: Metrics,
    /// Asks the login watcher to check now and log in when logged out (POST /login/start,
    /// an upstream 401/403).
    pub login_check: Notify,
    /// Set by POST /login/start: log in even when auto-login is off or has failed.
    pub login_forced: std::sync::atomic::AtomicBool,
    /// Cancelled at the end of shutdown: closes the gateway connections.
    pub closing: CancellationToken,
    /// Asks the process supervisor to restart Lingma (it stayed unreachable too long).
    pub lingma_restart: Notify,
    /// WebSocket ping period towards the gateways (SIDECAR_KEEPALIVE_SEC).
    pub keepalive: Duration,
    /// Coalescing window of the `sessions` and `load` announcements
    /// (SIDECAR_ANNOUNCE_COALESCE_MS).
    pub announce_window: Duration,
    /// The account's pauses in a row and their settings (`crate::quota`).
    pub quota: PauseStreak,
}

impl SidecarState {
    pub fn new(
        name: String,
        chat: ChatSettings,
        max_chats: u32,
        session_entries: usize,
        session_ttl: Duration,
    ) -> Self {
        let (health, _) = watch::channel(Health {
            connection: ConnectionState::Stopped,
            login: LoginState::Unknown,
            draining: false,
            models: Arc::new(Vec::new()),
            paused: None,
        });
        let slots = ChatSlots::new(max_chats);
        let metrics = Metrics::new();
        metrics.capacity.set(i64::from(slots.capacity()));
        Self {
            name,
            chat,
            health,
            client: RwLock::new(None),
            slots,
            sessions: SessionMap::new(session_entries, session_ttl),
            metrics,
            login_check: Notify::new(),
            login_forced: std::sync::atomic::AtomicBool::new(false),
            closing: CancellationToken::new(),
            lingma_restart: Notify::new(),
            keepalive: Duration::from_secs(15),
            announce_window: Duration::ZERO,
            quota: PauseStreak::new(QuotaSettings::default()),
        }
    }

    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        self.health.borrow().ready()
    }

    /// The client of the current connection, if connected.
    pub fn client(&self) -> Option<LingmaClient> {
        self.client.read().clone()
    }

    /// Record a connection state; `client` is the live client when `Ready`.
    pub fn set_connection(&self, state: ConnectionState, client: Option<LingmaClient>) {
        *self.client.write() = client;
        self.update(|h| h.connection = state);
        self.metrics.set_connection_state(state);
    }

    pub fn set_login(&self, login: LoginState) {
        self.metrics.set_login_state(&login);
        self.update(|h| h.login = login);
    }

    pub fn set_models(&self, models: Vec<ModelInfo>) {
        self.update(|h| h.models = Arc::new(models));
    }

    pub fn set_draining(&self) {
        self.metrics.draining.set(1);
        self.update(|h| h.draining = true);
    }

    fn update(&self, change: impl FnOnce(&mut Health)) {
        self.health.send_if_modified(|h| {
            let before = h.clone();
            change(h);
            *h != before
        });
        self.metrics.ready.set(i64::from(self.is_ready()));
    }

    /// The status message sent to the gateways.
    pub fn status(&self) -> SidecarStatus {
        let h = self.health();
        SidecarStatus {
            protocol_version: PROTOCOL_VERSION,
            name: self.name.clone(),
            ready: h.ready(),
            connection: h.connection,
            login: h.login,
            capacity: self.slots.capacity(),
            in_flight: u32::try_from(self.slots.in_flight()).unwrap_or(u32::MAX),
            queued: u32::try_from(self.slots.queued()).unwrap_or(u32::MAX),
            draining: h.draining,
            models: h.models.as_ref().clone(),
            paused: h.paused.map(|p| p.to_wire(tokio::time::Instant::now())),
        }
    }

    /// Lingma said the account is limited: pause it (the next pause of the streak), unless
    /// a pause is already running (chats in flight at once end with the same news) or
    /// pausing is off. A quota reason replaces a rate limit in a running pause.
    pub fn account_limited(&self, reason: PauseReason) {
        let mut streak = self.quota.lock();
        let now = tokio::time::Instant::now();
        let current = self.health.borrow().paused.filter(|p| p.until > now);
        if let Some(p) = current {
            if p.reason != reason && reason == PauseReason::QuotaExhausted {
                self.set_pause(Some(Paused { reason, ..p }));
            }
            return;
        }
        let Some((delay, pauses)) = streak.next(self.quota.settings()) else {
            return;
        };
        tracing::warn!(
            reason = reason.as_str(),
            pause_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            pauses,
            "Lingma account limited: taking no chats until the pause ends"
        );
        self.metrics
            .account_pauses
            .with_label_values(&[reason.as_str()])
            .inc();
        self.set_pause(Some(Paused {
            reason,
            until: now + delay,
            pauses,
        }));
    }

    /// A chat finished normally: the account works, the pause streak ends.
    pub fn account_ok(&self) {
        self.quota.reset();
    }

    /// End the pause when its time is up; the next chat probes the account.
    pub fn end_pause_if_due(&self) {
        let due = self
            .health
            .borrow()
            .paused
            .is_some_and(|p| p.until <= tokio::time::Instant::now());
        if due {
            tracing::info!("account pause over: taking chats again (the next one probes)");
            self.set_pause(None);
        }
    }

    fn set_pause(&self, paused: Option<Paused>) {
        self.metrics.set_paused(paused.map(|p| p.reason));
        self.update(|h| h.paused = paused);
    }

    /// Chats with live bookkeeping on any gateway connection.
    pub fn open_streams(&self) -> i64 {
        self.metrics.open_streams.get()
    }

    /// Refresh the gauges that are read rather than pushed.
    pub fn refresh_gauges(&self) {
        self.metrics.sync_sessions(self.sessions.stats());
        self.metrics
            .in_flight
            .set(i64::try_from(self.slots.in_flight()).unwrap_or(i64::MAX));
        self.metrics
            .queued
            .set(i64::try_from(self.slots.queued()).unwrap_or(i64::MAX));
    }
}
