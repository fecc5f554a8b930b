//! One sidecar as this gateway sees it: last `Status`, connection, local in-flight count,
//! passive ejection. All fields are atomics or swap cells: routing reads them without locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use mux_protocol::{LoginState, SidecarEndpoint, SidecarLoad, SidecarStatus};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use super::ejection::EjectionBudget;
use super::link::Link;
use super::reported_load::ReportedLoad;
use crate::observability::metrics::Metrics;

pub struct Sidecar {
    pub name: Arc<str>,
    pub name_hash: u64,
    pub(crate) endpoint: SidecarEndpoint,
    status: ArcSwapOption<SidecarStatus>,
    pub(crate) link: ArcSwapOption<Link>,
    in_flight: AtomicU32,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the sidecar is ejected (0 = not ejected).
    ejected_until_ms: AtomicU64,
    removed: AtomicBool,
    epoch: Instant,
    slot_freed: Arc<Notify>,
    /// Bumped on every status or connection change (the pool's model cache key).
    generation: Arc<AtomicU64>,
    /// The pool's share of members that may be ejected at once.
    budget: Arc<EjectionBudget>,
    gauge_in_flight: IntGauge,
    gauge_ready: IntGauge,
    gauge_connected: IntGauge,
    ejections: IntCounter,
    /// The sidecar's own load over all gateways (in flight + queued), from its last
    /// `load` or `status`, with its idle time and refusal hold.
    reported: ReportedLoad,
    /// `gateway_pool_instance_paused{name, reason}`, one per reason (`PauseReason::ALL`).
    gauge_paused: [IntGauge; 2],
    /// Milliseconds since `epoch` when its account pause should end, as the last Status
    /// estimated it (0 = not paused): the pause's `retry_after_ms` counts from receipt.
    paused_until_ms: AtomicU64,
}

/// Why a sidecar takes no chats right now (for /internal/stats and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SidecarState {
    Usable,
    Connecting,
    NotReady,
    LoggedOut,
    Draining,
    Ejected,
    Removed,
    /// Its account is rate limited or out of quota (`SidecarStatus.paused`): out of
    /// rotation until the sidecar says the pause is over.
    Paused,
}

impl Sidecar {
    pub(crate) fn new(
        endpoint: SidecarEndpoint,
        epoch: Instant,
        slot_freed: Arc<Notify>,
        generation: Arc<AtomicU64>,
        budget: Arc<EjectionBudget>,
        metrics: &Metrics,
    ) -> Self {
        let name: Arc<str> = Arc::from(endpoint.name.as_str());
        let label = [endpoint.name.as_str()];
        Self {
            name_hash: crate::hash::name_hash(&name),
            gauge_in_flight: metrics.pool_in_flight.with_label_values(&label),
            gauge_ready: metrics.pool_ready.with_label_values(&label),
            gauge_connected: metrics.pool_connected.with_label_values(&label),
            ejections: metrics.pool_ejections.with_label_values(&label),
            gauge_paused: mux_protocol::PauseReason::ALL.map(|r| {
                metrics
                    .pool_paused
                    .with_label_values(&[endpoint.name.as_str(), r.as_str()])
            }),
            name,
            endpoint,
            status: ArcSwapOption::empty(),
            link: ArcSwapOption::empty(),
            in_flight: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            epoch,
            slot_freed,
            generation,
            budget,
            reported: ReportedLoad::default(),
            paused_until_ms: AtomicU64::new(0),
        }
    }

    pub fn status(&self) -> Option<Arc<SidecarStatus>> {
        self.status.load_full()
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn connected(&self) -> bool {
        self.link.load().is_some()
    }

    pub fn state(&self) -> SidecarState {
        if self.removed.load(Ordering::Relaxed) {
            return SidecarState::Removed;
        }
        let link = self.link.load();
        let status = self.status.load();
        let (Some(_), Some(status)) = (link.as_ref(), status.as_ref()) else {
            return SidecarState::Connecting;
        };
        if status.draining {
            return SidecarState::Draining;
        }
        if status.login != LoginState::LoggedIn {
            return SidecarState::LoggedOut;
        }
        if status.paused.is_some() {
            return SidecarState::Paused;
        }
        if !status.ready {
            return SidecarState::NotReady;
        }
        if self.is_ejected() {
            return SidecarState::Ejected;
        }
        SidecarState::Usable
    }

    pub fn usable(&self) -> bool {
        self.state() == SidecarState::Usable
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Chats it runs at once as advertised (0 = no limit).
    fn capacity(&self) -> u32 {
        self.status.load().as_ref().map_or(0, |s| s.capacity)
    }

    /// Take a slot if one is free: [`Sidecar::load`] (what this gateway runs there, or
    /// what the sidecar reports over all gateways, whichever is more) < advertised
    /// capacity, and no refusal for want of a slot since its last report.
    pub fn try_reserve(self: &Arc<Self>) -> Option<SidecarSlot> {
        let capacity = self.capacity();
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            let reported = self.reported.load();
            if capacity != 0
                && (current.max(reported) >= capacity || self.reported.held_full(self.now_ms()))
            {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.gauge_in_flight.inc();
                    return Some(SidecarSlot {
                        sidecar: self.clone(),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn set_status(&self, status: SidecarStatus) {
        self.reported.set(
            self.now_ms(),
            status.in_flight.saturating_add(status.queued),
        );
        let paused_until = status
            .paused
            .as_ref()
            .map_or(0, |p| self.now_ms().saturating_add(p.retry_after_ms).max(1));
        self.paused_until_ms.store(paused_until, Ordering::Relaxed);
        self.status.store(Some(Arc::new(status)));
        self.generation.fetch_add(1, Ordering::Release);
        self.refresh_gauges();
        // Capacity or readiness may have grown: let waiters look again.
        self.slot_freed.notify_waiters();
    }

    pub(crate) fn set_link(&self, link: Option<Arc<Link>>) {
        if link.is_none() {
            self.status.store(None);
            self.reported.clear();
        }
        self.link.store(link);
        self.generation.fetch_add(1, Ordering::Release);
        self.refresh_gauges();
        self.slot_freed.notify_waiters();
    }

    /// The load routing judges this sidecar by: the larger of this gateway's own in-flight
    /// count and the sidecar's reported in flight + queued over all gateways.
    ///
    /// Why the larger and not the sum: the sidecar's count already includes this
    /// gateway's chats that reached it, so a sum would count them twice and leave slots
    /// idle. The local count alone (what routing used before) misses every other
    /// replica's chats, so replicas piled onto a sidecar that looked free to each. The
    /// reported count lags by one hop and the coalescing window, and misses this
    /// gateway's chats still on the wire, which the local count covers. The max is thus a
    /// lower bound of the true load that is exact when one gateway uses the sidecar; what
    /// it misses (another replica's chat in transit) is settled by the sidecar itself: a
    /// chat that may not wait for a slot is refused there, and the loser re-queues here
    /// (see [`Sidecar::saw_full`]).
    /// Queued chats count because a chat sent there now would wait behind them.
    pub fn load(&self) -> u32 {
        self.in_flight().max(self.reported.load())
    }

    /// The load the sidecar reported (in flight + queued over all gateways).
    pub fn reported_load(&self) -> u32 {
        self.reported.load()
    }

    /// The sidecar refused a chat that could not wait for a slot: another gateway
    /// replica's chat took its last one first. Nothing ran; this gateway holds it as full
    /// until the sidecar's next `load` (which follows) or a short hold.
    pub fn saw_full(&self) {
        self.reported.saw_full(self.now_ms());
    }

    /// Whether nothing has run or waited on it, over all gateways, for at least `after`:
    /// vacant, not merely between two turns of its own conversations.
    pub fn vacant_for(&self, after: Duration) -> bool {
        self.in_flight() == 0
            && self
                .reported
                .idle_for(self.now_ms())
                .is_some_and(|idle| idle >= after)
    }

    /// A `load` message: the sidecar's in flight and queued over all gateways.
    pub(crate) fn set_load(&self, load: SidecarLoad) {
        let now = load.in_flight.saturating_add(load.queued);
        let before = self.reported.set(self.now_ms(), now);
        if now < before {
            // Room on it for a request that waits (possibly for this very sidecar).
            self.slot_freed.notify_waiters();
        }
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Relaxed);
        self.budget.forget(&self.name);
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    pub fn refresh_gauges(&self) {
        self.gauge_ready.set(i64::from(self.usable()));
        self.gauge_connected.set(i64::from(self.connected()));
        self.refresh_paused_gauges();
    }

    /// Why its account is paused, as the last Status said (all 0 when it is not).
    fn refresh_paused_gauges(&self) {
        let reason = self.paused().map(|p| p.reason);
        for (gauge, r) in self.gauge_paused.iter().zip(mux_protocol::PauseReason::ALL) {
            gauge.set(i64::from(reason == Some(r)));
        }
    }

    /// How long its account pause should still last (by the sidecar's estimate), while
    /// it is paused.
    pub fn paused_for(&self) -> Option<Duration> {
        if self.state() != SidecarState::Paused {
            return None;
        }
        let until = self.paused_until_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(until.saturating_sub(self.now_ms())))
    }

    /// The account pause of the last Status, while connected.
    pub fn paused(&self) -> Option<mux_protocol::AccountPause> {
        self.status.load().as_ref().and_then(|s| s.paused.clone())
    }

    /// A chat on it succeeded: the failure streak ends.
    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// A chat failed because of the sidecar; `threshold` consecutive ones eject it for
    /// `cooldown`, unless the pool's ejection share is used up (then it stays in rotation
    /// with its streak kept, so its next failure tries again). Returns whether this
    /// failure ejected it.
    pub fn record_failure(&self, threshold: u32, cooldown: Duration) -> bool {
        let streak = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold == 0 || streak < threshold {
            return false;
        }
        let now = self.now_ms();
        let until = (now + u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX / 2)).max(1);
        if !self.budget.try_eject(&self.name, now, until) {
            self.failures.store(threshold, Ordering::Relaxed);
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.ejections.inc();
        self.refresh_gauges();
        true
    }

    /// Consecutive failures blamed on it so far (for /internal/stats).
    pub fn failure_streak(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        (until != 0 && now < until).then(|| Duration::from_millis(until - now))
    }

    pub fn open_streams(&self) -> usize {
        self.link.load().as_ref().map_or(0, |l| l.open_streams())
    }
}

/// A slot on one sidecar, owned by one request; dropping it frees the slot.
pub struct SidecarSlot {
    sidecar: Arc<Sidecar>,
}

impl SidecarSlot {
    pub fn sidecar(&self) -> &Arc<Sidecar> {
        &self.sidecar
    }
}

impl Drop for SidecarSlot {
    fn drop(&mut self) {
        self.sidecar.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.sidecar.gauge_in_flight.dec();
        self.sidecar.slot_freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar() -> Arc<Sidecar> {
        let budget = Arc::new(EjectionBudget::new(100));
        budget.set_members(1);
        named("s", budget)
    }

    fn named(name: &str, budget: Arc<EjectionBudget>) -> Arc<Sidecar> {
        named_with(name, budget, &Metrics::new().expect("metrics"))
    }

    /// [`named`], with its gauges in `metrics`.
    fn named_with(name: &str, budget: Arc<EjectionBudget>, metrics: &Metrics) -> Arc<Sidecar> {
        let ep = SidecarEndpoint {
            name: name.into(),
            url: "ws://127.0.0.1:1".into(),
            token: None,
        };
        Arc::new(Sidecar::new(
            ep,
            Instant::now(),
            Arc::new(Notify::new()),
            Arc::new(AtomicU64::new(0)),
            budget,
            metrics,
        ))
    }

    fn status(capacity: u32) -> SidecarStatus {
        crate::pool::fixtures::ready_status("s", capacity)
    }

    #[test]
    fn slots_follow_capacity_and_free_on_drop() {
        let s = sidecar();
        s.set_status(status(2));
        let a = s.try_reserve().expect("first");
        let _b = s.try_reserve().expect("second");
        assert!(s.try_reserve().is_none());
        drop(a);
        assert_eq!(s.in_flight(), 1);
        assert!(s.try_reserve().is_some());
        s.set_status(status(0));
        let many: Vec<_> = (0..10).filter_map(|_| s.try_reserve()).collect();
        assert_eq!(many.len(), 10, "capacity 0 = unlimited");
    }

    #[test]
    fn the_reported_global_load_counts_and_a_lower_one_wakes_waiters() {
        let s = sidecar();
        s.set_status(status(2));
        s.set_load(SidecarLoad {
            in_flight: 1,
            queued: 1,
        });
        assert_eq!(s.load(), 2, "other gateways filled it");
        assert!(s.try_reserve().is_none());
        let woken = {
            let notify = s.slot_freed.clone();
            let mut fut = Box::pin(notify.notified_owned());
            fut.as_mut().enable();
            fut
        };
        s.set_load(SidecarLoad {
            in_flight: 1,
            queued: 0,
        });
        assert!(
            futures_util::FutureExt::now_or_never(woken).is_some(),
            "a lower load wakes waiters"
        );
        let mine = s.try_reserve().expect("one slot left");
        assert_eq!(
            s.load(),
            1,
            "max, not sum: the sidecar may count this one too"
        );
        s.set_load(SidecarLoad {
            in_flight: 2,
            queued: 0,
        });
        assert!(s.try_reserve().is_none());
        drop(mine);
        s.set_link(None);
        assert_eq!(s.reported_load(), 0, "a dropped connection reports nothing");
    }

    #[test]
    fn consecutive_failures_eject_and_success_resets() {
        let s = sidecar();
        let cooldown = Duration::from_secs(30);
        assert!(!s.record_failure(3, cooldown));
        assert!(!s.record_failure(3, cooldown));
        s.record_success();
        assert!(!s.record_failure(3, cooldown));
        assert!(!s.record_failure(3, cooldown));
        assert!(s.record_failure(3, cooldown));
        assert!(s.ejected_for().is_some());
        let short = sidecar();
        assert!(short.record_failure(1, Duration::ZERO));
        std::thread::sleep(Duration::from_millis(3));
        assert!(short.ejected_for().is_none(), "cooldown over");
    }

    #[test]
    fn the_ejection_share_keeps_the_last_instances_in_rotation() {
        let budget = Arc::new(EjectionBudget::new(50));
        budget.set_members(2);
        let (a, b) = (named("a", budget.clone()), named("b", budget));
        let cooldown = Duration::from_secs(30);
        assert!(!a.record_failure(2, cooldown));
        assert!(a.record_failure(2, cooldown), "half of two may go");
        for _ in 0..5 {
            assert!(!b.record_failure(2, cooldown), "the last one stays");
        }
        assert!(b.ejected_for().is_none());
        assert_eq!(b.failure_streak(), 2, "the streak is kept, not forgotten");
    }

    #[test]
    fn a_paused_account_leaves_the_rotation_with_its_reason() {
        let metrics = Metrics::new().expect("metrics");
        let s = named_with("p", Arc::new(EjectionBudget::new(100)), &metrics);
        // A connected sidecar: a link is needed for any state past Connecting.
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        s.set_link(Some(Arc::new(Link::new(
            tx,
            crate::pool::Deadlines::default(),
        ))));
        s.set_status(status(1));
        assert_eq!(s.state(), SidecarState::Usable);
        let mut paused = status(1);
        paused.ready = false;
        paused.paused = Some(mux_protocol::AccountPause {
            reason: mux_protocol::PauseReason::QuotaExhausted,
            retry_after_ms: 5000,
            pauses: 1,
        });
        s.set_status(paused);
        assert_eq!(s.state(), SidecarState::Paused);
        assert!(!s.usable());
        let left = s.paused_for().expect("paused");
        assert!(
            left <= Duration::from_millis(5000) && left > Duration::from_millis(4000),
            "{left:?}"
        );
        assert_eq!(
            s.paused().map(|p| p.reason),
            Some(mux_protocol::PauseReason::QuotaExhausted)
        );
        let text = String::from_utf8(metrics.render()).expect("utf8");
        assert!(
            text.contains("gateway_pool_instance_paused{name=\"p\",reason=\"quota_exhausted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_pool_instance_paused{name=\"p\",reason=\"rate_limited\"} 0"),
            "{text}"
        );
        s.set_status(status(1));
        assert_eq!(s.state(), SidecarState::Usable, "back in rotation");
        let text = String::from_utf8(metrics.render()).expect("utf8");
        assert!(
            text.contains("gateway_pool_instance_paused{name=\"p\",reason=\"quota_exhausted\"} 0"),
            "the pause is over: {text}"
        );
    }

    #[test]
    fn without_connection_it_is_not_usable() {
        let s = sidecar();
        s.set_status(status(1));
        assert_eq!(s.state(), SidecarState::Connecting);
    }
}
