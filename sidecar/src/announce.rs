//! What one mux connection tells its gateway besides chats: the session keys this
//! sidecar holds (`sessions`: a snapshot at the start, then changes) and its load over all
//! gateways (`load`), both coalesced by [`Coalescer`].
//!
//! Latency first: the first change after a quiet period goes out at once (a follow-up
//! turn may reach another gateway within a millisecond of its answer); changes that come
//! within the window after a send are batched and sent at the window's end, so a busy
//! sidecar sends at most one announcement per window and connection.

use crate::sessions::KeyChange;
use crate::state::SidecarState;
use mux_protocol::{KeyDigest, MAX_DIGESTS_PER_MESSAGE, ServerMessage, SessionKeys, SidecarLoad};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// When pending changes may go out: at once after a quiet window, else at the window's
/// end. Pure (times in, times out) so it is tested by value.
#[derive(Debug, Clone, Copy)]
pub struct Coalescer {
    window: Duration,
    last_sent: Option<Instant>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last_sent: None,
        }
    }

    /// The earliest time changes pending at `now` may be sent.
    pub fn due(&self, now: Instant) -> Instant {
        match self.last_sent {
            Some(t) if now < t + self.window => t + self.window,
            _ => now,
        }
    }

    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }
}

/// The announcements of one connection.
pub struct Announcer {
    state: Arc<SidecarState>,
    changes: broadcast::Receiver<KeyChange>,
    load: Option<watch::Receiver<()>>,
    /// Last change per key since the last send (a key stored then claimed is dropped).
    pending: HashMap<KeyDigest, bool>,
    load_dirty: bool,
    last_load: SidecarLoad,
    /// The change stream overflowed: start over from a snapshot.
    resync: bool,
    coalesce: Coalescer,
}

impl Announcer {
    /// Start announcing after `status` (the first status of the connection, whose load
    /// the gateway already knows); returns the snapshot frames to send now.
    pub fn start(
        state: Arc<SidecarState>,
        status: &mux_protocol::SidecarStatus,
    ) -> (Self, Vec<String>) {
        let (held, changes) = state.sessions.watch();
        let mut load = state.slots.subscribe();
        load.borrow_and_update();
        let coalesce = Coalescer::new(state.announce_window);
        let announcer = Self {
            state,
            changes,
            load: Some(load),
            pending: HashMap::new(),
            load_dirty: false,
            last_load: SidecarLoad {
                in_flight: status.in_flight,
                queued: status.queued,
            },
            resync: false,
            coalesce,
        };
        (announcer, snapshot_frames(held))
    }

    /// Wait for changes and their coalescing deadline; the frames to send. Cancel-safe:
    /// what was received stays pending in `self`.
    pub async fn next_frames(&mut self) -> Vec<String> {
        loop {
            self.drain_ready();
            if self.has_pending() {
                let now = Instant::now();
                let due = self.coalesce.due(now);
                if due <= now {
                    let frames = self.take_frames();
                    if !frames.is_empty() {
                        return frames;
                    }
                    continue;
                }
                tokio::select! {
                    biased;
                    change = self.changes.recv() => self.on_change(change),
                    changed = changed(&mut self.load) => self.on_load(changed),
                    _ = tokio::time::sleep_until(due.into()) => {
                        let frames = self.take_frames();
                        if !frames.is_empty() {
                            return frames;
                        }
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    change = self.changes.recv() => self.on_change(change),
                    changed = changed(&mut self.load) => self.on_load(changed),
                }
            }
        }
    }

    /// Everything pending now, whatever the window. Called before a chat's `finish` goes
    /// out, so the state change that came before the finish (its session stored, its slot
    /// freed) never trails it, even within a coalescing window.
    pub fn flush_now(&mut self) -> Vec<String> {
        self.drain_ready();
        if self.has_pending() {
            self.take_frames()
        } else {
            Vec::new()
        }
    }

    fn has_pending(&self) -> bool {
        self.resync || self.load_dirty || !self.pending.is_empty()
    }

    /// Take in everything that is already waiting, without waiting.
    fn drain_ready(&mut self) {
        loop {
            match self.changes.try_recv() {
                Ok(c) => {
                    self.pending.insert(c.digest, c.held);
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.resync = true,
                Err(_) => break,
            }
        }
        if let Some(load) = &mut self.load
            && load.has_changed().unwrap_or(false)
        {
            load.borrow_and_update();
            self.load_dirty = true;
        }
    }

    fn on_change(&mut self, change: Result<KeyChange, broadcast::error::RecvError>) {
        match change {
            Ok(c) => {
                self.pending.insert(c.digest, c.held);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => self.resync = true,
            // The map outlives every connection; nothing more will come.
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    fn on_load(&mut self, changed: Result<(), watch::error::RecvError>) {
        match changed {
            Ok(()) => {
                if let Some(load) = &mut self.load {
                    load.borrow_and_update();
                }
                self.load_dirty = true;
            }
            Err(_) => self.load = None,
        }
    }

    /// The frames for everything pending; marks the send.
    fn take_frames(&mut self) -> Vec<String> {
        let mut frames = Vec::new();
        if self.resync {
            self.resync = false;
            self.pending.clear();
            let (held, changes) = self.state.sessions.watch();
            self.changes = changes;
            tracing::debug!(
                keys = held.len(),
                "session announcements fell behind; sending a snapshot"
            );
            frames.extend(snapshot_frames(held));
        } else if !self.pending.is_empty() {
            let mut held = Vec::new();
            let mut dropped = Vec::new();
            for (digest, is_held) in self.pending.drain() {
                if is_held {
                    held.push(digest);
                } else {
                    dropped.push(digest);
                }
            }
            frames.extend(delta_frames(held, dropped));
        }
        if std::mem::take(&mut self.load_dirty) {
            let now = SidecarLoad {
                in_flight: u32::try_from(self.state.slots.in_flight()).unwrap_or(u32::MAX),
                queued: u32::try_from(self.state.slots.queued()).unwrap_or(u32::MAX),
            };
            if now != self.last_load {
                self.last_load = now;
                frames.extend(frame(&ServerMessage::Load(now)));
            }
        }
        if !frames.is_empty() {
            self.coalesce.sent(Instant::now());
        }
        frames
    }
}

/// `changed()` of a receiver that may be gone (then never ready).
async fn changed(load: &mut Option<watch::Receiver<()>>) -> Result<(), watch::error::RecvError> {
    match load {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

/// A snapshot: the first message replaces what the gateway knew; the rest add to it.
pub fn snapshot_frames(held: Vec<KeyDigest>) -> Vec<String> {
    let mut frames = Vec::new();
    let mut chunks = held.chunks(MAX_DIGESTS_PER_MESSAGE);
    let first = chunks.next().unwrap_or_default();
    frames.extend(frame(&ServerMessage::Sessions(SessionKeys {
        snapshot: true,
        held: first.to_vec(),
        dropped: Vec::new(),
    })));
    for chunk in chunks {
        frames.extend(frame(&ServerMessage::Sessions(SessionKeys {
            snapshot: false,
            held: chunk.to_vec(),
            dropped: Vec::new(),
        })));
    }
    frames
}

/// Changes, dropped ones first within each message, chunked.
fn delta_frames(mut held: Vec<KeyDigest>, mut dropped: Vec<KeyDigest>) -> Vec<String> {
    held.sort_unstable();
    dropped.sort_unstable();
    let mut frames = Vec::new();
    while !held.is_empty() || !dropped.is_empty() {
        let d = dropped.len().min(MAX_DIGESTS_PER_MESSAGE);
        let h = held.len().min(MAX_DIGESTS_PER_MESSAGE - d);
        frames.extend(frame(&ServerMessage::Sessions(SessionKeys {
            snapshot: false,
            held: held.drain(..h).collect(),
            dropped: dropped.drain(..d).collect(),
        })));
    }
    frames
}

fn frame(msg: &ServerMessage) -> Option<String> {
    serde_json::to_string(msg).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_change_goes_at_once_then_one_send_per_window() {
        let window = Duration::from_millis(5);
        let mut c = Coalescer::new(window);
        let t0 = Instant::now();
        assert_eq!(c.due(t0), t0, "quiet: at once");
        c.sent(t0);
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(c.due(t1), t0 + window, "within the window: at its end");
        let t2 = t0 + Duration::from_millis(7);
        assert_eq!(c.due(t2), t2, "window over: at once again");
        let zero = Coalescer::new(Duration::ZERO);
        assert_eq!(zero.due(t1), t1);
    }

    fn parse(frames: &[String]) -> Vec<ServerMessage> {
        frames
            .iter()
            .map(|f| serde_json::from_str(f).expect("valid frame"))
            .collect()
    }

    #[test]
    fn large_snapshots_and_deltas_are_chunked() {
        let n = MAX_DIGESTS_PER_MESSAGE + 10;
        let held: Vec<KeyDigest> = (0..n as u64).map(KeyDigest).collect();
        let msgs = parse(&snapshot_frames(held));
        assert_eq!(msgs.len(), 2);
        let ServerMessage::Sessions(first) = &msgs[0] else {
            panic!("sessions expected")
        };
        let ServerMessage::Sessions(rest) = &msgs[1] else {
            panic!("sessions expected")
        };
        assert!(first.snapshot && !rest.snapshot);
        assert_eq!(first.held.len() + rest.held.len(), n);

        let empty = parse(&snapshot_frames(Vec::new()));
        assert_eq!(
            empty,
            vec![ServerMessage::Sessions(SessionKeys {
                snapshot: true,
                ..SessionKeys::default()
            })],
            "an empty map still says so (the gateway forgets what it knew)"
        );

        let held: Vec<KeyDigest> = (0..n as u64).map(KeyDigest).collect();
        let msgs = parse(&delta_frames(held, vec![KeyDigest(u64::MAX)]));
        assert_eq!(msgs.len(), 2);
        let total: usize = msgs
            .iter()
            .map(|m| match m {
                ServerMessage::Sessions(k) => {
                    assert!(!k.snapshot);
                    k.held.len() + k.dropped.len()
                }
                _ => 0,
            })
            .sum();
        assert_eq!(total, n + 1);
    }
}
