//! What admission hands out: an [`Admission`] (a sidecar slot and the global permit, owned
//! by the response stream) and a [`GlobalPermit`] (a request between two attempts). Both
//! give back what they hold when dropped and let the scheduler pass it on.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::time::Instant;

use super::Shared;
use crate::keys::VirtualKey;
use crate::pool::{Sidecar, SidecarSlot};

/// A request's right to run: its sidecar slot and the global permit.
pub struct Admission {
    pub(super) shared: Arc<Shared>,
    pub(super) key: Arc<VirtualKey>,
    pub(super) sidecar: Arc<Sidecar>,
    /// `None` only once given back (in `into_global` or `drop`).
    pub(super) slot: Option<SidecarSlot>,
    pub(super) holds_global: bool,
    pub(super) granted: Instant,
    pub(super) queue_wait: Duration,
    /// Whether the slot's holding time is a service time worth learning from.
    pub(super) record: bool,
    pub(super) _in_flight: GaugeGuard,
    pub(super) _key_in_flight: GaugeGuard,
}

impl Admission {
    pub fn sidecar(&self) -> &Arc<Sidecar> {
        &self.sidecar
    }

    /// Time spent queued for slots before this admission (all attempts).
    pub fn queue_wait(&self) -> Duration {
        self.queue_wait
    }

    /// Give the sidecar slot back and keep the global permit (to retry elsewhere).
    pub fn into_global(mut self) -> GlobalPermit {
        self.record = false;
        drop(self.slot.take());
        let holds = std::mem::replace(&mut self.holds_global, false);
        GlobalPermit {
            shared: self.shared.clone(),
            key: self.key.clone(),
            holds,
            queued: self.queue_wait,
            retry: true,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let held = self.granted.elapsed();
        // The slot frees first, so the dispatch below can hand it on.
        let freed = self.slot.take().is_some();
        let undelivered = {
            let mut st = self.shared.state.lock();
            if self.holds_global {
                st.global -= 1;
            }
            if freed && self.record {
                st.estimator.record(&self.sidecar.name, held);
            }
            self.shared.dispatch(&mut st)
        };
        drop(undelivered);
    }
}

/// Decrements a gauge when dropped.
pub(super) struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub(super) fn new(g: &IntGauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request on its way to a slot: who it is for, and whether it already holds the
/// global permit (only between two attempts). The global permit itself is taken together
/// with a slot, by the scheduler.
pub struct GlobalPermit {
    pub(super) shared: Arc<Shared>,
    pub(super) key: Arc<VirtualKey>,
    pub(super) holds: bool,
    pub(super) queued: Duration,
    pub(super) retry: bool,
}

impl Drop for GlobalPermit {
    fn drop(&mut self) {
        if self.holds {
            let undelivered = {
                let mut st = self.shared.state.lock();
                st.global -= 1;
                self.shared.dispatch(&mut st)
            };
            drop(undelivered);
        }
    }
}
