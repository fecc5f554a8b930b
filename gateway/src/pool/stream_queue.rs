//! The unbounded queue from a mux connection's reader to one chat's handle.
//!
//! Not `tokio::sync::mpsc`: its channels allocate their first block of 32 slots when they
//! are made, about 2.3 KiB per chat here, most of the gateway's own memory per idle stream
//! (a chat waiting for its first token). This queue allocates nothing until an event
//! arrives (an empty `VecDeque`) and drops a large buffer once drained, so an idle stream
//! costs one small `Arc`. One sender, one receiver.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Slots an emptied queue keeps (a reader that keeps up needs a few).
const KEPT_CAPACITY: usize = 16;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver; holds a permit when nobody waits, so no wake-up is lost.
    ready: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    sender_gone: bool,
    receiver_gone: bool,
}

/// A connected sender and receiver.
pub fn stream_queue<T>() -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            sender_gone: false,
            receiver_gone: false,
        }),
        ready: Notify::new(),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiver is gone; the item comes back.
#[derive(Debug)]
pub struct Closed<T>(pub T);

impl<T> QueueSender<T> {
    /// Queue `item` (never waits).
    pub fn send(&self, item: T) -> Result<(), Closed<T>> {
        {
            let mut state = self.shared.state.lock();
            if state.receiver_gone {
                return Err(Closed(item));
            }
            state.items.push_back(item);
        }
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        self.shared.state.lock().sender_gone = true;
        self.shared.ready.notify_one();
    }
}

pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once the sender is gone and everything was taken.
    /// Cancel-safe: an item is only taken when this returns it.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.shared.state.lock();
                if let Some(item) = state.items.pop_front() {
                    if state.items.is_empty() && state.items.capacity() > KEPT_CAPACITY {
                        // A slow reader's backlog can be large; do not keep its buffer.
                        state.items = VecDeque::new();
                    }
                    return Some(item);
                }
                if state.sender_gone {
                    return None;
                }
            }
            self.shared.ready.notified().await;
        }
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.receiver_gone = true;
        state.items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn items_arrive_in_order_then_none_after_the_sender() {
        let (tx, mut rx) = stream_queue();
        for i in 0..100 {
            tx.send(i).expect("receiver alive");
        }
        drop(tx);
        for i in 0..100 {
            assert_eq!(rx.recv().await, Some(i));
        }
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = stream_queue();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send("x").expect("receiver alive");
        assert_eq!(waiter.await.expect("joined"), Some("x"));
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let (tx, mut rx) = stream_queue();
        assert!(
            tokio::time::timeout(Duration::from_millis(10), rx.recv())
                .await
                .is_err()
        );
        tx.send(1).expect("receiver alive");
        assert_eq!(rx.recv().await, Some(1));
    }

    #[test]
    fn sending_to_a_dropped_receiver_returns_the_item() {
        let (tx, rx) = stream_queue();
        drop(rx);
        assert!(matches!(tx.send(7), Err(Closed(7))));
    }
}
