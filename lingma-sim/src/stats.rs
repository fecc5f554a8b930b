//! Counters a test or benchmark reads through `GET /control/stats` or `SimHandle::stats()`.

use lingma_protocol::wire::ChatAskParams;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many recent `chat/ask` params are kept.
pub const RECENT_ASKS: usize = 256;

#[derive(Debug, Default)]
pub struct Stats {
    pub chats_total: AtomicU64,
    pub chats_in_flight: AtomicUsize,
    pub chats_rejected: AtomicU64,
    pub connections: AtomicUsize,
    pub connections_total: AtomicU64,
    pub asks_received: AtomicU64,
    pub question_bytes_total: AtomicU64,
    pub events_sent: AtomicU64,
    pub acks_received: AtomicU64,
    pub unacked_events: AtomicU64,
    recent: Mutex<VecDeque<RecentAsk>>,
    /// Prefill delays applied (--prefill-us-per-kib): their sum and the latest one.
    pub prefill_us_total: AtomicU64,
    pub last_prefill_us: AtomicU64,
}

/// What reached "Lingma" in one `chat/ask` (camelCase, like the params).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentAsk {
    pub request_id: String,
    pub session_id: String,
    pub is_reply: bool,
    pub question_text: String,
    pub extra: RecentAskExtra,
    /// Same as `extra.modelConfig.key`, flat for convenience.
    pub model_key: String,
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentAskExtra {
    pub model_config: RecentModelConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentModelConfig {
    pub key: String,
}

/// A point-in-time copy of the counters (snake_case keys, as the control API serves them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub chats_total: u64,
    pub chats_in_flight: usize,
    pub chats_rejected: u64,
    pub connections: usize,
    pub connections_total: u64,
    pub asks_received: u64,
    pub question_bytes_total: u64,
    pub events_sent: u64,
    pub acks_received: u64,
    pub unacked_events: u64,
    pub login_state: String,
    pub fault: String,
    pub sessions: usize,
    pub recent_asks: Vec<RecentAsk>,
    /// Sum of the prefill delays applied so far, in microseconds.
    #[serde(default)]
    pub prefill_us_total: u64,
    /// The prefill delay of the latest answered chat, in microseconds.
    #[serde(default)]
    pub last_prefill_us: u64,
}

impl Stats {
    /// A prefill delay about to be applied to a chat's first token.
    pub fn record_prefill(&self, delay: std::time::Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.prefill_us_total.fetch_add(us, Ordering::Relaxed);
        self.last_prefill_us.store(us, Ordering::Relaxed);
    }

    pub fn record_ask(&self, params: &ChatAskParams) {
        self.asks_received.fetch_add(1, Ordering::Relaxed);
        self.question_bytes_total
            .fetch_add(params.question_text.len() as u64, Ordering::Relaxed);
        let key = params.extra.model_config.key.clone();
        let entry = RecentAsk {
            request_id: params.request_id.clone(),
            session_id: params.session_id.clone(),
            is_reply: params.is_reply,
            question_text: params.question_text.clone(),
            extra: RecentAskExtra {
                model_config: RecentModelConfig { key: key.clone() },
            },
            model_key: key,
            mode: params.mode.clone(),
        };
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_ASKS {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    pub fn snapshot(&self, login_state: String, fault: String, sessions: usize) -> StatsSnapshot {
        StatsSnapshot {
            chats_total: self.chats_total.load(Ordering::Relaxed),
            chats_in_flight: self.chats_in_flight.load(Ordering::Relaxed),
            chats_rejected: self.chats_rejected.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            asks_received: self.asks_received.load(Ordering::Relaxed),
            question_bytes_total: self.question_bytes_total.load(Ordering::Relaxed),
            events_sent: self.events_sent.load(Ordering::Relaxed),
            acks_received: self.acks_received.load(Ordering::Relaxed),
            unacked_events: self.unacked_events.load(Ordering::Relaxed),
            login_state,
            fault,
            sessions,
            recent_asks: self.recent.lock().iter().cloned().collect(),
            prefill_us_total: self.prefill_us_total.load(Ordering::Relaxed),
            last_prefill_us: self.last_prefill_us.load(Ordering::Relaxed),
        }
    }
}

/// A slot of the per-process concurrency cap, released on drop.
pub struct InFlightSlot {
    stats: Arc<Stats>,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.stats.chats_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Stats {
    /// Take a slot of the cap `max` (0 = unlimited); None when the cap is reached.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<InFlightSlot> {
        let counter = &self.chats_in_flight;
        let mut current = counter.load(Ordering::Acquire);
        loop {
            if max != 0 && current >= max {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(InFlightSlot {
                        stats: Arc::clone(self),
                    });
                }
                Err(now) => current = now,
            }
        }
    }
}
