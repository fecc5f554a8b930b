//! The simulator's shared state: what every connection, chat and HTTP handler reads.

use crate::config::SimConfig;
use crate::fault::FaultSlot;
use crate::login::LoginStore;
use crate::sessions::SessionStore;
use crate::stats::{Stats, StatsSnapshot};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

pub(crate) struct Sim {
    pub config: SimConfig,
    pub stats: Arc<Stats>,
    pub fault: FaultSlot,
    pub login: LoginStore,
    pub sessions: SessionStore,
    /// Chats in flight by requestId, for `chat/stop` and duplicate detection.
    pub chats: Mutex<HashMap<String, CancellationToken>>,
    pub models: Value,
    pub shutdown: CancellationToken,
    pub ws_port: u16,
    pub http_port: u16,
    pub next_conn_id: AtomicU64,
}

impl Sim {
    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot(
            self.login.phase().name().to_owned(),
            self.fault.current().0.name(),
            self.sessions.len(),
        )
    }

    /// The `crash` fault: the binary exits; in a library the servers stop.
    pub fn crash(&self) {
        tracing::error!("lingma-sim: simulated crash (fault crash)");
        if self.config.crash_exits_process {
            if let Err(e) = self.sessions.flush() {
                tracing::warn!(error = %e, "cannot write sessions before the crash");
            }
            std::process::exit(101);
        }
        self.shutdown.cancel();
    }
}
