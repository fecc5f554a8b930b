//! Admission: one scheduler for the global in-flight limit (GATEWAY_MAX_IN_FLIGHT) and
//! the sidecars' slots, behind a bounded wait queue with a deadline.
//!
//! Waiters queue per virtual key and are served in deficit round-robin between keys
//! ([`drr`]), so one key's backlog cannot starve another's. Binding is late: a waiter
//! publishes the sidecars its `order()` closure ranks (refreshed on every pool change and
//! every 250 ms, as `order()` may depend on time), and whenever a slot frees the scheduler
//! hands it to the next waiter in DRR order that can use it. What a request gets is an
//! owned RAII [`Admission`] that moves into the response stream: dropping it (finish,
//! error, client disconnect) frees the slot and the global permit, records the service
//! time for the wait [`estimate`], and passes the slot on.

pub mod drr;
pub mod estimate;
mod keys;
mod permits;
mod refusal;

use permits::GaugeGuard;
pub use permits::{Admission, GlobalPermit};
pub use refusal::Refusal;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::keys::VirtualKey;
use crate::observability::metrics::Metrics;
use crate::pool::{Pool, Sidecar, SidecarSlot};
use drr::Drr;
use estimate::{Estimator, Server};

/// How often a waiter looks at its `order()` again without a pool event (ejections end
/// by time, and `order()` may prefer an instance only for a while).
const REFRESH: Duration = Duration::from_millis(250);

/// The admission scheduler; cheap to share (one `Arc` inside).
pub struct InFlightLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    limit: Option<usize>,
    max_queued: usize,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    in_flight_gauge: IntGauge,
    queued_gauge: IntGauge,
}

#[derive(Default)]
struct State {
    /// Requests holding the global permit (admitted, or between two attempts).
    global: usize,
    waiters: Drr<Waiter>,
    next_id: u64,
    estimator: Estimator,
}

/// A queued request as the scheduler sees it.
struct Waiter {
    id: u64,
    key: Arc<VirtualKey>,
    holds_global: bool,
    /// The sidecars its `order()` ranked last time, best first.
    candidates: Vec<Arc<Sidecar>>,
    enqueued: Instant,
    queued_before: Duration,
    retry: bool,
    grant: oneshot::Sender<Admission>,
}

/// Takes the waiter out of the queue if it gives up (timeout, no sidecar, cancelled).
struct Queued<'a> {
    shared: &'a Arc<Shared>,
    pool: &'a Pool,
    key: Arc<VirtualKey>,
    id: u64,
    rx: oneshot::Receiver<Admission>,
}

impl Queued<'_> {
    /// Leave the queue. The grant may have been sent meanwhile: then it is the answer.
    /// Else the estimated wait from the position it had.
    fn leave(&mut self) -> Result<Admission, Duration> {
        let left = {
            let mut st = self.shared.state.lock();
            let retry_after = self
                .shared
                .position_wait(&st, self.pool, &self.key, Some(self.id));
            let left = st.waiters.remove(&self.key.name, |w| w.id == self.id);
            self.shared.queued_gauge.set(gauge(st.waiters.len()));
            left.map(|w| (w, retry_after))
        };
        match left {
            Some((_waiter, retry_after)) => Err(retry_after),
            None => self.rx.try_recv().map_err(|_| Duration::ZERO),
        }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let left = {
            let mut st = self.shared.state.lock();
            let left = st.waiters.remove(&self.key.name, |w| w.id == self.id);
            self.shared.queued_gauge.set(gauge(st.waiters.len()));
            left
        };
        drop(left);
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Shared {
    /// Hand free slots to waiters in DRR order, while some waiter can use one. Returns
    /// the admissions whose waiter was gone: the caller drops them after unlocking.
    fn dispatch(self: &Arc<Self>, st: &mut State) -> Vec<Admission> {
        let mut undelivered = Vec::new();
        loop {
            let global_free = self.limit.is_none_or(|l| st.global < l);
            let mut slot = None;
            let picked = st.waiters.pop_next(|w| {
                if !(w.holds_global || global_free) {
                    return false;
                }
                slot = reserve(&w.candidates);
                slot.is_some()
            });
            let (Some(w), Some(slot)) = (picked, slot) else {
                break;
            };
            if !w.holds_global {
                st.global += 1;
            }
            let wait = w.queued_before + w.enqueued.elapsed();
            let admission = self.admission(w.key, slot, wait, w.retry);
            if let Err(mut gone) = w.grant.send(admission) {
                gone.record = false;
                undelivered.push(gone);
            }
        }
        self.queued_gauge.set(gauge(st.waiters.len()));
        undelivered
    }

    /// An admission holding the global permit and `slot`.
    fn admission(
        self: &Arc<Self>,
        key: Arc<VirtualKey>,
        slot: SidecarSlot,
        queue_wait: Duration,
        retry: bool,
    ) -> Admission {
        let name: &str = &key.name;
        if !retry {
            self.metrics.key_outcome(name, "admitted");
        }
        self.metrics
            .key_queue_wait
            .with_label_values(&[name])
            .observe(queue_wait.as_secs_f64());
        Admission {
            shared: self.clone(),
            sidecar: slot.sidecar().clone(),
            slot: Some(slot),
            holds_global: true,
            granted: Instant::now(),
            queue_wait,
            record: true,
            _in_flight: GaugeGuard::new(&self.in_flight_gauge),
            _key_in_flight: GaugeGuard::new(&self.metrics.key_in_flight.with_label_values(&[name])),
            key,
        }
    }

    /// Estimated wait of a waiter of `key`: its place (`id`), or a newcomer's.
    fn position_wait(
        &self,
        st: &State,
        pool: &Pool,
        key: &VirtualKey,
        id: Option<u64>,
    ) -> Duration {
        let ahead = id
            .and_then(|id| st.waiters.index_in_lane(&key.name, |w| w.id == id))
            .unwrap_or_else(|| st.waiters.queued_of(&key.name));
        let position = st.waiters.position(&key.name, key.weight, ahead);
        self.wait_at(st, pool, position)
    }

    fn wait_at(&self, st: &State, pool: &Pool, position: usize) -> Duration {
        let members = pool.members();
        let servers: Vec<Server<'_>> = members
            .iter()
            .filter(|s| s.usable())
            .map(|s| Server {
                name: &s.name,
                capacity: s.status().map_or(1, |st| st.capacity),
            })
            .collect();
        st.estimator.wait(&servers, self.limit, position)
    }
}

/// Whether a usable candidate has a free slot now (a look, nothing taken).
fn has_free_slot(candidates: &[Arc<Sidecar>]) -> bool {
    candidates.iter().any(|s| {
        s.usable()
            && s.status()
                .is_some_and(|st| st.capacity == 0 || s.in_flight() < st.capacity)
    })
}

/// A slot on the first usable candidate that has one.
fn reserve(candidates: &[Arc<Sidecar>]) -> Option<SidecarSlot> {
    candidates
        .iter()
        .filter(|s| s.usable())
        .find_map(|s| s.try_reserve())
}

/// What admission of a newcomer came to, decided under the lock.
enum Entry {
    Admitted(Admission),
    Queued(u64, oneshot::Receiver<Admission>),
}

impl InFlightLimiter {
    pub fn new(limit: Option<usize>, max_queued: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            shared: Arc::new(Shared {
                limit,
                max_queued,
                state: Mutex::new(State::default()),
                in_flight_gauge: metrics.in_flight.clone(),
                queued_gauge: metrics.queued.clone(),
                metrics,
            }),
        }
    }

    /// Start the admission of a request of `key`. Nothing is taken yet: the global permit
    /// comes with a slot, from [`InFlightLimiter::acquire_sidecar`], so the global limit
    /// and the slots are one queue in DRR order. (Async and fallible to keep the shape
    /// of the two-step admission the chat core runs.)
    pub async fn acquire_global(
        &self,
        key: &Arc<VirtualKey>,
        _deadline: Instant,
    ) -> Result<GlobalPermit, Refusal> {
        Ok(GlobalPermit {
            shared: self.shared.clone(),
            key: key.clone(),
            holds: false,
            queued: Duration::ZERO,
            retry: false,
        })
    }

    /// A slot on the first sidecar of `order()` that has one, with the global permit,
    /// waiting in the key's queue until `deadline`. `order` is called again after every
    /// pool change and every 250 ms while waiting, so a sidecar that became usable, or
    /// one `order()` ranks only after a while, is seen.
    pub async fn acquire_sidecar<F>(
        &self,
        mut global: GlobalPermit,
        pool: &Pool,
        deadline: Instant,
        mut order: F,
    ) -> Result<Admission, Refusal>
    where
        F: FnMut() -> Vec<Arc<Sidecar>>,
    {
        let shared = &self.shared;
        let notified = pool.slot_freed().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let candidates = order();
        if candidates.is_empty() {
            return Err(self.refused(
                &global.key,
                Refusal::NoSidecar {
                    paused_for: pool.all_paused_for(),
                },
            ));
        }
        let (id, rx) = match self.enter(&global, pool, candidates) {
            Ok(Entry::Admitted(a)) => {
                global.holds = false;
                return Ok(a);
            }
            Ok(Entry::Queued(id, rx)) => (id, rx),
            Err(r) => return Err(self.refused(&global.key, r)),
        };
        let mut queued = Queued {
            shared,
            pool,
            key: global.key.clone(),
            id,
            rx,
        };
        loop {
            tokio::select! {
                biased;
                granted = &mut queued.rx => {
                    // The sender is only dropped with the waiter, which only this task removes.
                    let Ok(admission) = granted else { break };
                    global.holds = false;
                    return Ok(admission);
                }
                woke = wait_until(notified.as_mut(), deadline) => {
                    if woke.is_err() {
                        return match queued.leave() {
                            Ok(admission) => {
                                global.holds = false;
                                Ok(admission)
                            }
                            Err(retry_after) => Err(self.refused(
                                &global.key,
                                Refusal::QueueTimeout { retry_after },
                            )),
                        };
                    }
                }
            }
            notified.set(pool.slot_freed().notified());
            notified.as_mut().enable();
            let candidates = order();
            if candidates.is_empty() {
                return match queued.leave() {
                    Ok(admission) => {
                        global.holds = false;
                        Ok(admission)
                    }
                    Err(_) => Err(self.refused(
                        &global.key,
                        Refusal::NoSidecar {
                            paused_for: pool.all_paused_for(),
                        },
                    )),
                };
            }
            self.refresh(&queued.key, id, candidates);
        }
        Err(self.refused(
            &global.key,
            Refusal::QueueTimeout {
                retry_after: Duration::ZERO,
            },
        ))
    }

    /// Admit at once when this request is the one DRR serves next, else queue it (or
    /// refuse it when the queue is full and nothing is free for it).
    fn enter(
        &self,
        global: &GlobalPermit,
        pool: &Pool,
        candidates: Vec<Arc<Sidecar>>,
    ) -> Result<Entry, Refusal> {
        let shared = &self.shared;
        let (tx, mut rx) = oneshot::channel();
        let mut st = shared.state.lock();
        // Whatever a pool change freed goes to those already waiting first.
        let mut undelivered = shared.dispatch(&mut st);
        let entry = if st.waiters.len() < shared.max_queued {
            st.next_id += 1;
            let id = st.next_id;
            st.waiters.push(
                &global.key.name,
                global.key.weight,
                Waiter {
                    id,
                    key: global.key.clone(),
                    holds_global: global.holds,
                    candidates,
                    enqueued: Instant::now(),
                    queued_before: global.queued,
                    retry: global.retry,
                    grant: tx,
                },
            );
            undelivered.extend(shared.dispatch(&mut st));
            match rx.try_recv() {
                Ok(admission) => Ok(Entry::Admitted(admission)),
                Err(_) => Ok(Entry::Queued(id, rx)),
            }
        } else {
            let global_free = global.holds || shared.limit.is_none_or(|l| st.global < l);
            match reserve(&candidates).filter(|_| global_free) {
                Some(slot) => {
                    if !global.holds {
                        st.global += 1;
                    }
                    Ok(Entry::Admitted(shared.admission(
                        global.key.clone(),
                        slot,
                        global.queued,
                        global.retry,
                    )))
                }
                None => Err(Refusal::QueueFull {
                    retry_after: shared.position_wait(&st, pool, &global.key, None),
                }),
            }
        };
        drop(st);
        drop(undelivered);
        entry
    }

    /// A waiter's fresh `order()`: store it and, when one of its sidecars has a free slot
    /// (a status change, not a release, freed it: releases dispatch themselves), let the
    /// scheduler hand that slot out in DRR order. Waiters that see no free slot skip the
    /// dispatch, so a pool event costs one look per waiter, not one pass over the queue each.
    fn refresh(&self, key: &VirtualKey, id: u64, candidates: Vec<Arc<Sidecar>>) {
        let free = has_free_slot(&candidates);
        let undelivered = {
            let mut st = self.shared.state.lock();
            if let Some(w) = st.waiters.find_mut(&key.name, |w| w.id == id) {
                w.candidates = candidates;
            }
            if !free {
                return;
            }
            self.shared.dispatch(&mut st)
        };
        drop(undelivered);
    }

    fn refused(&self, key: &VirtualKey, refusal: Refusal) -> Refusal {
        let metrics = &self.shared.metrics;
        match refusal {
            Refusal::QueueFull { .. } => metrics.key_limited(&key.name, "queue_full"),
            Refusal::QueueTimeout { .. } => metrics.key_limited(&key.name, "queue_timeout"),
            Refusal::NoSidecar { .. } => metrics.key_outcome(&key.name, "unavailable"),
        }
        refusal
    }

    pub fn queued(&self) -> usize {
        self.shared.state.lock().waiters.len()
    }

    /// Free global permits (`None` = unlimited).
    pub fn available(&self) -> Option<usize> {
        let global = self.shared.state.lock().global;
        self.shared.limit.map(|l| l.saturating_sub(global))
    }

    /// The estimated wait of a request at `position` in the queue (1 = next).
    pub fn estimated_wait(&self, pool: &Pool, position: usize) -> Duration {
        let st = self.shared.state.lock();
        self.shared.wait_at(&st, pool, position)
    }

    /// The estimated wait of a request of `key` arriving now.
    pub fn estimated_wait_for(&self, pool: &Pool, key: &VirtualKey) -> Duration {
        let st = self.shared.state.lock();
        self.shared.position_wait(&st, pool, key, None)
    }

    /// Mean service time over the usable sidecars (for a key's concurrency limit).
    fn mean_service(&self, pool: &Pool) -> Duration {
        let st = self.shared.state.lock();
        let members = pool.members();
        let usable: Vec<f64> = members
            .iter()
            .filter(|s| s.usable())
            .map(|s| st.estimator.service_secs(&s.name))
            .collect();
        let mean = if usable.is_empty() {
            st.estimator.service_secs("")
        } else {
            usable.iter().sum::<f64>() / usable.len() as f64
        };
        Duration::from_secs_f64(mean)
    }
}

async fn wait_until(notified: impl Future<Output = ()>, deadline: Instant) -> Result<(), ()> {
    let tick = Instant::now() + REFRESH;
    match tokio::time::timeout_at(deadline.min(tick), notified).await {
        Ok(()) => Ok(()),
        Err(_) if Instant::now() >= deadline => Err(()),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
