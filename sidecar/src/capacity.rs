//! Upstream chat slots (LINGMA_MAX_CONCURRENT_CHATS), shared by every gateway connection,
//! with a bounded FIFO wait (tokio's semaphore is fair). A request waits at most its own
//! `queue_timeout_ms`; when the queue is full or the wait runs out it is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most chats waiting for a slot; beyond it requests are refused at once.
pub const MAX_QUEUED: usize = 4096;
/// Capacity advertised when the limit is 0 (unlimited): big, but safe to sum.
pub const UNLIMITED_ADVERTISED: u32 = 65_536;

pub struct ChatSlots {
    semaphore: Arc<Semaphore>,
    limit: u32,
    queued: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
}

/// A held slot; dropping it frees the slot.
pub struct ChatSlot {
    _permit: Option<OwnedSemaphorePermit>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for ChatSlot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("at capacity")]
    Overloaded,
}

impl ChatSlots {
    /// `limit` 0 = unlimited. In-flight and queued counts change at every chat, so they are
    /// read (polled) rather than pushed.
    pub fn new(limit: u32) -> Self {
        let permits = if limit == 0 {
            Semaphore::MAX_PERMITS
        } else {
            limit as usize
        };
        Self {
            semaphore: Arc::new(Semaphore::new(permits)),
            limit,
            queued: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
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
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(SlotError::Overloaded);
        }
        // A guard, so a waiter that is dropped (its chat cancelled) leaves the count too.
        let _queued = Decrement(&self.queued);
        let waited = tokio::time::timeout(wait, self.semaphore.clone().acquire_owned()).await;
        match waited {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            _ => Err(SlotError::Overloaded),
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> ChatSlot {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        ChatSlot {
            _permit: Some(permit),
            in_flight: self.in_flight.clone(),
        }
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
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
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
