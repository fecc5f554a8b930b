//! Admission: a global in-flight limit (FIFO semaphore) and the per-sidecar capacity,
//! behind one bounded wait queue with a deadline. What a request gets is an owned RAII
//! [`Admission`] that moves into the response stream: dropping it (finish, error, client
//! disconnect) frees both slots.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::errors::GatewayError;
use crate::pool::{Pool, Sidecar, SidecarSlot};

/// Seconds a refused client is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    QueueFull,
    QueueTimeout,
    NoSidecar,
}

impl Refusal {
    pub fn into_error(self) -> GatewayError {
        match self {
            Self::QueueFull => GatewayError::RateLimited {
                message: "Too many requests are waiting; retry later.",
                code: "queue_full",
                retry_after_secs: RETRY_AFTER_SECS,
            },
            Self::QueueTimeout => GatewayError::RateLimited {
                message: "No capacity became free in time; retry later.",
                code: "queue_timeout",
                retry_after_secs: RETRY_AFTER_SECS,
            },
            Self::NoSidecar => GatewayError::Unavailable {
                message: "No upstream Lingma instance is ready to take requests.",
            },
        }
    }
}

/// The global limit and the wait queue's bound.
pub struct InFlightLimiter {
    global: Option<Arc<Semaphore>>,
    max_queued: usize,
    queued: AtomicUsize,
    in_flight_gauge: IntGauge,
    queued_gauge: IntGauge,
}

/// A request's right to run: the global permit (if limited) and its sidecar slot.
pub struct Admission {
    slot: SidecarSlot,
    global: Option<OwnedSemaphorePermit>,
    _in_flight: GaugeGuard,
}

impl Admission {
    pub fn sidecar(&self) -> &Arc<Sidecar> {
        self.slot.sidecar()
    }

    /// Give the sidecar slot back and keep the global permit (to retry elsewhere).
    pub fn into_global(self) -> GlobalPermit {
        GlobalPermit {
            permit: self.global,
        }
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(g: &IntGauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts a waiting request in the queue bound and the gauge.
struct QueueTicket<'a> {
    limiter: &'a InFlightLimiter,
    _gauge: GaugeGuard,
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.limiter.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A global permit, held while the request looks for a sidecar slot. `gateway_in_flight`
/// counts a request only once it also has its sidecar slot.
pub struct GlobalPermit {
    permit: Option<OwnedSemaphorePermit>,
}

impl InFlightLimiter {
    pub fn new(
        limit: Option<usize>,
        max_queued: usize,
        in_flight: IntGauge,
        queued: IntGauge,
    ) -> Self {
        Self {
            global: limit.map(|n| Arc::new(Semaphore::new(n))),
            max_queued,
            queued: AtomicUsize::new(0),
            in_flight_gauge: in_flight,
            queued_gauge: queued,
        }
    }

    fn enqueue(&self) -> Result<QueueTicket<'_>, Refusal> {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::QueueFull);
        }
        Ok(QueueTicket {
            limiter: self,
            _gauge: GaugeGuard::new(&self.queued_gauge),
        })
    }

    /// Wait (FIFO) for a global slot until `deadline`.
    pub async fn acquire_global(&self, deadline: Instant) -> Result<GlobalPermit, Refusal> {
        let Some(sem) = &self.global else {
            return Ok(GlobalPermit { permit: None });
        };
        // A free permit is taken at once only when nobody waits (tokio's semaphore is fair).
        let permit = match sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _ticket = self.enqueue()?;
                match tokio::time::timeout_at(deadline, sem.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) | Err(_) => return Err(Refusal::QueueTimeout),
                }
            }
        };
        Ok(GlobalPermit {
            permit: Some(permit),
        })
    }

    /// With a global permit, take a slot on the first sidecar of `order()` that has one,
    /// waiting for a slot to free (or the pool to change) until `deadline`. `order` is
    /// called again after every change, so a sidecar that became usable is seen.
    pub async fn acquire_sidecar<F>(
        &self,
        global: GlobalPermit,
        pool: &Pool,
        deadline: Instant,
        mut order: F,
    ) -> Result<Admission, Refusal>
    where
        F: FnMut() -> Vec<Arc<Sidecar>>,
    {
        let mut ticket = None;
        loop {
            let notified = pool.slot_freed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let candidates = order();
            if candidates.is_empty() {
                return Err(Refusal::NoSidecar);
            }
            if let Some(slot) = candidates.iter().find_map(|s| s.try_reserve()) {
                return Ok(Admission {
                    slot,
                    global: global.permit,
                    _in_flight: GaugeGuard::new(&self.in_flight_gauge),
                });
            }
            if ticket.is_none() {
                ticket = Some(self.enqueue()?);
            }
            wait_until(notified, deadline).await?;
        }
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn available(&self) -> Option<usize> {
        self.global.as_ref().map(|s| s.available_permits())
    }
}

async fn wait_until(notified: impl Future<Output = ()>, deadline: Instant) -> Result<(), Refusal> {
    // Ejections end by time, not by an event: look again at least every 250 ms.
    let tick = Instant::now() + Duration::from_millis(250);
    match tokio::time::timeout_at(deadline.min(tick), notified).await {
        Ok(()) => Ok(()),
        Err(_) if Instant::now() >= deadline => Err(Refusal::QueueTimeout),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: Option<usize>, max_queued: usize) -> InFlightLimiter {
        InFlightLimiter::new(
            limit,
            max_queued,
            IntGauge::new("f", "f").expect("gauge"),
            IntGauge::new("q", "q").expect("gauge"),
        )
    }

    #[tokio::test]
    async fn global_limit_times_out_then_frees() {
        let l = limiter(Some(1), 10);
        let soon = || Instant::now() + Duration::from_millis(50);
        let first = l.acquire_global(soon()).await.expect("first admitted");
        assert_eq!(
            l.acquire_global(soon()).await.err(),
            Some(Refusal::QueueTimeout)
        );
        assert_eq!(l.queued(), 0, "a timed-out waiter leaves the queue");
        drop(first);
        assert!(l.acquire_global(soon()).await.is_ok());
    }

    #[tokio::test]
    async fn waiters_are_served_in_order() {
        let l = Arc::new(limiter(Some(1), 10));
        let far = Instant::now() + Duration::from_secs(5);
        let held = l.acquire_global(far).await.expect("held");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let waiter = l.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let p = waiter.acquire_global(far).await;
                let _ = tx.send(i);
                drop(p);
            });
            // Let each waiter enqueue before the next.
            tokio::time::timeout(Duration::from_secs(1), async {
                while l.queued() <= i {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("waiter enqueued");
        }
        drop(held);
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(rx.recv().await.expect("served"));
        }
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn queue_bound_refuses_at_once() {
        let l = Arc::new(limiter(Some(1), 1));
        let far = Instant::now() + Duration::from_secs(5);
        let _held = l.acquire_global(far).await.expect("held");
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire_global(far).await.map(|_| ()) })
        };
        tokio::time::timeout(Duration::from_secs(1), async {
            while l.queued() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("waiter enqueued");
        let started = std::time::Instant::now();
        assert_eq!(l.acquire_global(far).await.err(), Some(Refusal::QueueFull));
        assert!(started.elapsed() < Duration::from_millis(100));
        waiter.abort();
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let l = limiter(None, 0);
        let now = Instant::now();
        let permits: Vec<_> =
            futures_util::future::join_all((0..100).map(|_| l.acquire_global(now))).await;
        assert!(permits.iter().all(Result::is_ok));
    }

    fn usable_sidecar(pool: &Pool, capacity: u32) -> Arc<Sidecar> {
        use mux_protocol::{ConnectionState, LoginState, SidecarEndpoint, SidecarStatus};
        let metrics = crate::observability::metrics::Metrics::new().expect("metrics");
        let sidecar = Arc::new(Sidecar::new(
            SidecarEndpoint {
                name: "s".into(),
                url: "ws://127.0.0.1:1".into(),
                token: None,
            },
            std::time::Instant::now(),
            pool.slot_freed_handle(),
            Arc::new(std::sync::atomic::AtomicU64::new(0)),
            Arc::new(crate::pool::ejection::EjectionBudget::new(50)),
            &metrics,
        ));
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        sidecar.set_status(SidecarStatus {
            protocol_version: mux_protocol::PROTOCOL_VERSION,
            name: "s".into(),
            ready: true,
            connection: ConnectionState::Ready,
            login: LoginState::LoggedIn,
            capacity,
            in_flight: 0,
            queued: 0,
            draining: false,
            models: vec![],
            paused: None,
        });
        sidecar.set_link(Some(Arc::new(crate::pool::Link::new(
            tx,
            crate::pool::Deadlines::default(),
        ))));
        sidecar
    }

    fn empty_pool() -> Arc<Pool> {
        let (_tx, rx) = tokio::sync::watch::channel(Vec::new());
        Pool::start(
            rx,
            crate::pool::PoolSettings {
                default_token: Arc::new(mux_protocol::SidecarToken::fixed(None)),
                eject_failures: 3,
                eject_cooldown: Duration::from_secs(1),
                max_ejection_percent: 50,
                deadlines: crate::pool::Deadlines::default(),
            },
            Arc::new(crate::observability::metrics::Metrics::new().expect("metrics")),
            tokio_util::sync::CancellationToken::new(),
        )
    }

    #[tokio::test]
    async fn sidecar_capacity_queues_then_times_out_or_hands_over() {
        let pool = empty_pool();
        let sidecar = usable_sidecar(&pool, 1);
        let l = Arc::new(limiter(None, 10));
        let order = || vec![sidecar.clone()];
        let far = Instant::now() + Duration::from_secs(5);
        let global = l.acquire_global(far).await.expect("global");
        let first = l
            .acquire_sidecar(global, &pool, far, order)
            .await
            .expect("slot");
        assert_eq!(l.in_flight_gauge.get(), 1);

        // Full: a waiter times out with 429, counted as queued while it waits.
        let soon = Instant::now() + Duration::from_millis(60);
        let global = l.acquire_global(soon).await.expect("global");
        let refused = l.acquire_sidecar(global, &pool, soon, order).await.err();
        assert_eq!(refused, Some(Refusal::QueueTimeout));
        assert_eq!((l.queued(), l.in_flight_gauge.get()), (0, 1));

        // A waiter gets the slot as soon as it frees.
        let waiter = {
            let (l, pool, sidecar) = (l.clone(), pool.clone(), sidecar.clone());
            tokio::spawn(async move {
                let global = l.acquire_global(far).await.expect("global");
                l.acquire_sidecar(global, &pool, far, || vec![sidecar.clone()])
                    .await
                    .map(|a| a.sidecar().name.to_string())
            })
        };
        tokio::time::timeout(Duration::from_secs(1), async {
            while l.queued() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("waiter queued");
        let started = std::time::Instant::now();
        drop(first);
        let got = waiter.await.expect("join").expect("admitted");
        assert_eq!(got, "s");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "woken by the release"
        );
    }

    #[tokio::test]
    async fn no_usable_sidecar_is_refused_at_once() {
        let pool = empty_pool();
        let l = limiter(Some(4), 10);
        let far = Instant::now() + Duration::from_secs(5);
        let global = l.acquire_global(far).await.expect("global");
        let refused = l.acquire_sidecar(global, &pool, far, Vec::new).await.err();
        assert_eq!(refused, Some(Refusal::NoSidecar));
        assert_eq!(l.available(), Some(4), "the global permit went back");
    }
}
