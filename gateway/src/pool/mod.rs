//! The sidecars this gateway talks to: one mux connection each, their last status, local
//! load and ejection; membership follows the discovery channel.

mod connection;
pub mod ejection;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod link;
pub mod login_control;
pub mod owners;
mod reported_load;
pub mod sidecar;
mod stream_queue;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ejection::EjectionBudget;
use mux_protocol::{ModelInfo, SidecarEndpoint, SidecarToken};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub use link::{ChatStream, Link, OpenError};
pub use login_control::{LoginAnswer, LoginCallError, LoginCooldown};
pub use owners::OwnerIndex;
pub use sidecar::{Sidecar, SidecarSlot, SidecarState};

use crate::observability::metrics::Metrics;

pub struct PoolSettings {
    /// SIDECAR_TOKEN(_FILE), for endpoints that carry none of their own.
    pub default_token: Arc<SidecarToken>,
    pub eject_failures: u32,
    pub eject_cooldown: Duration,
    /// GATEWAY_MAX_EJECTION_PERCENT: the most members ejected at once, in percent.
    pub max_ejection_percent: u8,
    pub deadlines: Deadlines,
}

/// The gateway's own deadlines on a sidecar, so no wait depends on the sidecar keeping
/// its word.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// GATEWAY_START_TIMEOUT_SEC: from the chat's queue deadline to `Started`.
    pub start: Duration,
    /// GATEWAY_IDLE_TIMEOUT_SEC: between events of an accepted chat; also how long a
    /// client may leave its stream's buffer full before the stream is given up.
    pub idle: Duration,
    /// GATEWAY_SIDECAR_WRITE_TIMEOUT_SEC: one write to the sidecar's socket.
    pub write: Duration,
    /// GATEWAY_MUX_KEEPALIVE_SEC: ping period; silence for `SILENT_PERIODS` of them closes
    /// the connection (a partitioned sidecar is noticed within 4 periods).
    pub keepalive: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            start: Duration::from_secs(60),
            idle: Duration::from_secs(180),
            write: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
        }
    }
}

pub struct Pool {
    members: ArcSwap<Vec<Arc<Sidecar>>>,
    /// Fired whenever a slot frees or a sidecar's status changes.
    slot_freed: Arc<Notify>,
    /// Bumped by any status, connection or membership change.
    generation: Arc<AtomicU64>,
    budget: Arc<EjectionBudget>,
    shutting_down: AtomicBool,
    /// The union of models, recomputed only when `generation` moved (it is read on every
    /// chat request).
    models: ArcSwap<(u64, Arc<Vec<ModelInfo>>)>,
    settings: PoolSettings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    epoch: Instant,
    /// Which sidecar holds which conversation key, as the sidecars announce it.
    owners: Arc<OwnerIndex>,
}

impl Pool {
    /// Start following `endpoints`; connections run until `stop` fires.
    pub fn start(
        mut endpoints: watch::Receiver<Vec<SidecarEndpoint>>,
        settings: PoolSettings,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            members: ArcSwap::from_pointee(Vec::new()),
            slot_freed: Arc::new(Notify::new()),
            generation: Arc::new(AtomicU64::new(1)),
            budget: Arc::new(EjectionBudget::new(settings.max_ejection_percent)),
            shutting_down: AtomicBool::new(false),
            models: ArcSwap::from_pointee((0, Arc::new(Vec::new()))),
            settings,
            metrics,
            stop,
            epoch: Instant::now(),
            owners: Arc::new(OwnerIndex::new()),
        });
        let initial = endpoints.borrow_and_update().clone();
        pool.apply(initial);
        let watcher = pool.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = watcher.stop.cancelled() => break,
                    changed = endpoints.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let list = endpoints.borrow_and_update().clone();
                        watcher.apply(list);
                    }
                }
            }
        });
        pool
    }

    /// Make membership match `list`: new endpoints get a connection; endpoints that left
    /// stop taking chats and disconnect once their open chats are done.
    fn apply(&self, list: Vec<SidecarEndpoint>) {
        let current = self.members.load_full();
        let mut by_name: HashMap<&str, &Arc<Sidecar>> =
            current.iter().map(|s| (&*s.name, s)).collect();
        let mut next = Vec::with_capacity(list.len());
        for endpoint in list {
            match by_name.remove(endpoint.name.as_str()) {
                Some(existing) if existing.endpoint == endpoint => next.push(existing.clone()),
                other => {
                    if let Some(old) = other {
                        old.mark_removed();
                        // Before the successor connects: what the old one announced goes.
                        self.owners.clear_sidecar(&old.name);
                    }
                    let sidecar = Arc::new(Sidecar::new(
                        endpoint,
                        self.epoch,
                        self.slot_freed.clone(),
                        self.generation.clone(),
                        self.budget.clone(),
                        &self.metrics,
                    ));
                    tracing::info!(sidecar = %sidecar.name, url = %sidecar.endpoint.url, "sidecar joined the pool");
                    tokio::spawn(connection::run(
                        sidecar.clone(),
                        self.owners.clone(),
                        self.settings.default_token.clone(),
                        self.settings.deadlines,
                        self.stop.child_token(),
                    ));
                    next.push(sidecar);
                }
            }
        }
        for gone in by_name.into_values() {
            tracing::info!(sidecar = %gone.name, "sidecar left the pool");
            gone.mark_removed();
            self.owners.clear_sidecar(&gone.name);
            if !next.iter().any(|s| s.name == gone.name) {
                self.metrics.remove_sidecar(&gone.name);
            }
        }
        self.budget.set_members(next.len());
        self.members.store(Arc::new(next));
        self.generation.fetch_add(1, Ordering::Release);
        self.slot_freed.notify_waiters();
    }

    pub fn members(&self) -> Arc<Vec<Arc<Sidecar>>> {
        self.members.load_full()
    }

    /// The pool-wide owner index (conversation key -> the sidecars holding its session).
    pub fn owners(&self) -> &OwnerIndex {
        &self.owners
    }

    pub fn slot_freed(&self) -> &Notify {
        &self.slot_freed
    }

    #[cfg(test)]
    pub(crate) fn slot_freed_handle(&self) -> Arc<Notify> {
        self.slot_freed.clone()
    }

    /// Tests: make `members` the pool's members without connecting to them.
    #[cfg(test)]
    pub(crate) fn set_members_for_test(&self, members: Vec<Arc<Sidecar>>) {
        self.members.store(Arc::new(members));
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The bearer token for `sidecar`: its endpoint's own, else SIDECAR_TOKEN.
    pub fn token_for(&self, sidecar: &Sidecar) -> Option<String> {
        sidecar
            .endpoint
            .token
            .as_deref()
            .map(str::to_owned)
            .or_else(|| self.settings.default_token.current())
    }

    pub fn find(&self, name: &str) -> Option<Arc<Sidecar>> {
        self.members
            .load()
            .iter()
            .find(|s| &*s.name == name)
            .cloned()
    }

    /// Whether a chat could be served now: some sidecar is usable (or ejected, see below)
    /// and the gateway is not shutting down.
    pub fn any_usable(&self) -> bool {
        // An ejected instance still serves in panic mode (`Router::order`), so it keeps
        // the gateway ready: every replica leaving its Service helps nobody.
        !self.shutting_down.load(Ordering::Relaxed)
            && self
                .members
                .load()
                .iter()
                .any(|s| matches!(s.state(), SidecarState::Usable | SidecarState::Ejected))
    }

    /// When nothing is usable because every connected instance's account is paused: the
    /// soonest a pause should end (what a 503 tells the client in `Retry-After`).
    pub fn all_paused_for(&self) -> Option<Duration> {
        let members = self.members.load();
        let connected: Vec<_> = members.iter().filter(|s| s.connected()).collect();
        if connected.is_empty() {
            return None;
        }
        connected
            .iter()
            .map(|s| s.paused_for())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    /// Whether [`Pool::begin_shutdown`] was called.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Shutdown began: readiness flips to not ready at once; open chats go on until
    /// the grace period ends.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Union of the models the connected sidecars report, by id.
    pub fn models(&self) -> Arc<Vec<ModelInfo>> {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = self.models.load();
        if cached.0 == generation {
            return cached.1.clone();
        }
        let fresh = Arc::new(self.collect_models());
        self.models.store(Arc::new((generation, fresh.clone())));
        fresh
    }

    fn collect_models(&self) -> Vec<ModelInfo> {
        let mut seen: BTreeMap<String, ModelInfo> = BTreeMap::new();
        for s in self.members.load().iter() {
            if let Some(status) = s.status() {
                for m in &status.models {
                    seen.entry(m.id.clone()).or_insert_with(|| m.clone());
                }
            }
        }
        seen.into_values().collect()
    }

    /// Recompute the ready gauges (ejection ends by time, not by an event).
    pub fn refresh_gauges(&self) {
        for s in self.members.load().iter() {
            s.refresh_gauges();
        }
    }
}
