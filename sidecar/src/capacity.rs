//! Upstream chat slots (LINGMA_MAX_CONCURRENT_CHATS), shared by every gateway connection,
//! with a bounded FIFO wait (tokio's semaphore is fair). A request waits at most its own
//! `queue_timeout_ms`; when the queue is full or the wait runs out it is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Most chats waiting for a slot; beyond it requests are refused at once.
pub const MAX_QUEUED: usize = 4096;
/// Capacity advertised when the limit is 0 (unlimited): big, but safe to sum.
pub const UNLIMITED_ADVERTISED: u32 = 65_536;

pub struct ChatSlots {
    semaphore: Arc<Semaphore>,
    limit: u32,
    counts: Arc<Counts>,
}

/// In-flight and queued counts, and a signal that fires whenever either changes (the mux
/// connections push it to the gateways as `load`).
struct Counts {
    in_flight: AtomicUsize,
    queued: AtomicUsize,
    changed: watch::Sender<()>,
}

impl Counts {
    fn add(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::AcqRel);
        self.changed.send_replace(());
    }

    fn sub(&self, counter: &AtomicUsize) {
        counter.fetch_sub(1, Ordering::AcqRel);
        self.changed.send_replace(());
    }
}

/// A held slot; dropping it frees the slot.
pub struct ChatSlot {
    _permit: Option<OwnedSemaphorePermit>,
    counts: Arc<Counts>,
}

impl Drop for ChatSlot {
    fn drop(&mut self) {
        self.counts.sub(&self.counts.in_flight);
    }
}

struct Decrement<'a>(&'a Counts);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.sub(&self.0.queued);
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("at capacity")]
    Overloaded,
}

impl ChatSlots {
    /// `limit` 0 = unlimited. In-flight and queued counts change at every chat: readers
    /// poll them, or follow [`ChatSlots::subscribe`] and coalesce.
    pub fn new(limit: u32) -> Self {
        let permits = if limit == 0 {
            Semaphore::MAX_PERMITS
        } else {
            limit as usize
        };
        Self {
            semaphore: Arc::new(Semaphore::new(permits)),
            limit,
            counts: Arc::new(Counts {
                in_flight: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                changed: watch::Sender::new(()),
            }),
        }
    }

    /// Take a slot, waiting up to `wait` behind earlier requests.
    pub async fn acquire(&self, wait: Duration) -> Result<ChatSlot, SlotError> {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Ok(self.slot(permit));
        }
        if wait.is_zero() {
            return Err(SlotError::Overloaded);
        }
        if self.counts.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            self.counts.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SlotError::Overloaded);
        }
        self.counts.changed.send_replace(());
        // A guard, so a waiter that is dropped (its chat cancelled) leaves the count too.
        let _queued = Decrement(&self.counts);
        let waited = tokio::time::timeout(wait, self.semaphore.clone().acquire_owned()).await;
        match waited {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            _ => Err(SlotError::Overloaded),
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> ChatSlot {
        self.counts.add(&self.counts.in_flight);
        ChatSlot {
            _permit: Some(permit),
            counts: self.counts.clone(),
        }
    }

    /// Fires (marks changed) whenever the in-flight or queued count changes.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.counts.changed.subscribe()
    }

    /// The advertised capacity.
    pub fn capacity(&self) -> u32 {
        if self.limit == 0 {
            UNLIMITED_ADVERTISED
        } else {
            self.limit
        }
    }

    pub fn in_flight(&self) -> usize {
        self.counts.in_flight.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> usize {
        self.counts.queued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_in_order_and_times_out() {
        let slots = Arc::new(ChatSlots::new(1));
        let first = slots.acquire(Duration::ZERO).await.expect("free slot");
        assert_eq!(slots.in_flight(), 1);
        assert_eq!(
            slots.acquire(Duration::ZERO).await.err(),
            Some(SlotError::Overloaded)
        );
        assert_eq!(
            slots.acquire(Duration::from_millis(20)).await.err(),
            Some(SlotError::Overloaded)
        );
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(Duration::from_secs(5)).await.is_ok() })
        };
        test_wait(|| slots.queued() == 1).await;
        drop(first);
        assert!(waiter.await.expect("join"));
        assert_eq!(slots.in_flight(), 0);
        assert_eq!(slots.queued(), 0);
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let slots = ChatSlots::new(0);
        let mut held = Vec::new();
        for _ in 0..1000 {
            held.push(slots.acquire(Duration::ZERO).await.expect("unlimited"));
        }
        assert_eq!(slots.in_flight(), 1000);
        assert_eq!(slots.capacity(), UNLIMITED_ADVERTISED);
    }

    async fn test_wait(cond: impl Fn() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("condition not met");
    }
}
