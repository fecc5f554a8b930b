//! The simulator's start-up (bind both ports, load workDir, spawn the servers) and the handle
//! a test or benchmark holds. The shared state is `state::Sim`.

use crate::config::SimConfig;
use crate::fault::{Fault, FaultSlot};
use crate::login::{LoginPhase, LoginStore};
use crate::sessions::SessionStore;
use crate::state::Sim;
use crate::stats::{Stats, StatsSnapshot};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often changed sessions are written to workDir.
const SESSION_FLUSH_PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind 127.0.0.1:{port} for the {what}: {source}")]
    Bind {
        what: &'static str,
        port: u16,
        source: std::io::Error,
    },
    #[error("cannot prepare workDir {path}: {source}")]
    WorkDir {
        path: String,
        source: std::io::Error,
    },
}

/// A running simulator. Dropping it does not stop it; call [`SimHandle::shutdown`].
pub struct SimHandle {
    sim: Arc<Sim>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    pub fn ws_port(&self) -> u16 {
        self.sim.ws_port
    }

    pub fn http_port(&self) -> u16 {
        self.sim.http_port
    }

    /// `ws://127.0.0.1:<port>/`
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.sim.ws_port)
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.sim.snapshot()
    }

    /// Arm `fault` for the next `times` chats (None = until cleared; `Fault::None` clears).
    pub fn set_fault(&self, fault: Fault, times: Option<u32>) {
        self.sim.fault.set(fault, times);
    }

    /// [`SimHandle::set_fault`] that ends by itself after `period` (an account rate
    /// limited or out of quota for a while).
    pub fn set_fault_for(&self, fault: Fault, times: Option<u32>, period: std::time::Duration) {
        self.sim.fault.set_for(fault, times, Some(period));
    }

    pub fn fault(&self) -> (Fault, Option<u32>) {
        self.sim.fault.current()
    }

    pub fn login_phase(&self) -> LoginPhase {
        self.sim.login.phase()
    }

    pub fn log_in(&self) -> std::io::Result<()> {
        self.sim.login.log_in(None)
    }

    pub fn log_out(&self) -> std::io::Result<()> {
        self.sim.login.log_out()
    }

    pub fn expire_login(&self) -> std::io::Result<()> {
        self.sim.login.expire()
    }

    /// Resolves when the simulator stops (shutdown, or a `crash` fault in library mode).
    pub async fn stopped(&self) {
        self.sim.shutdown.cancelled().await;
    }

    /// Stop accepting, close every connection, write the sessions.
    pub async fn shutdown(self) {
        self.sim.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Err(e) = self.sim.sessions.flush() {
            tracing::warn!(error = %e, "cannot write sessions at shutdown");
        }
        tracing::info!("lingma-sim stopped");
    }
}

/// Start a simulator: bind the WebSocket and HTTP ports on 127.0.0.1 (0 = any free port),
/// load login state and sessions from workDir, and serve until shutdown.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let work_dir = config.work_dir.clone();
    if let Some(dir) = &work_dir {
        for sub in ["logs", "cache"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|source| SimError::WorkDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    let login = LoginStore::open(
        work_dir.as_deref(),
        &config.accept_username,
        &config.accept_password,
        config.logged_in,
    )
    .map_err(|source| SimError::WorkDir {
        path: work_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        source,
    })?;
    let sessions = SessionStore::open(work_dir.as_deref(), config.max_sessions);

    let ws_listener = bind(config.socket_port, "WebSocket").await?;
    let http_listener = bind(config.http_port, "HTTP server").await?;
    let ws_port = local_port(&ws_listener, config.socket_port);
    let http_port = local_port(&http_listener, config.http_port);

    let sim = Arc::new(Sim {
        fault: FaultSlot::new(config.fault, config.fault_times),
        models: models_json(&config.model_keys()),
        config,
        stats: Arc::new(Stats::default()),
        login,
        sessions,
        chats: Mutex::new(HashMap::new()),
        shutdown: CancellationToken::new(),
        ws_port,
        http_port,
        next_conn_id: AtomicU64::new(1),
    });

    let tasks = vec![
        tokio::spawn(crate::connection::accept_loop(
            Arc::clone(&sim),
            ws_listener,
        )),
        tokio::spawn(crate::http::serve(Arc::clone(&sim), http_listener)),
        tokio::spawn(flush_sessions_periodically(Arc::clone(&sim))),
    ];
    tracing::info!(
        login_state = sim.login.phase().name(),
        login_mode = ?sim.config.login_mode,
        fault = %sim.fault.current().0.name(),
        "lingma-sim (a test double of Lingma, not Lingma) started"
    );
    tracing::info!(
        "Communication servers ready - WebSocket: {ws_port}, HTTP: {http_port}, IPC: none"
    );
    Ok(SimHandle { sim, tasks })
}

async fn bind(port: u16, what: &'static str) -> Result<TcpListener, SimError> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| SimError::Bind { what, port, source })
}

fn local_port(listener: &TcpListener, requested: u16) -> u16 {
    listener.local_addr().map(|a| a.port()).unwrap_or(requested)
}

async fn flush_sessions_periodically(sim: Arc<Sim>) {
    loop {
        tokio::select! {
            _ = sim.shutdown.cancelled() => break,
            _ = tokio::time::sleep(SESSION_FLUSH_PERIOD) => {}
        }
        if let Err(e) = sim.sessions.flush() {
            tracing::warn!(error = %e, "cannot write sessions");
        }
    }
}

/// `config/queryModels` result: scene -> model list.
fn models_json(keys: &[String]) -> Value {
    let items: Vec<Value> = keys
        .iter()
        .map(|key| {
            let display = if key.ends_with("_default") {
                "Auto".to_owned()
            } else {
                key.clone()
            };
            json!({
                "key": key,
                "displayName": display,
                "format": "openai",
                "isVl": false,
                "isReasoning": key.contains("thinking"),
                "source": "system",
                "url": "",
                "apiKey": "",
                "model": "",
            })
        })
        .collect();
    json!({
        "assistant": items,
        "chat": items,
        "developer": items,
        "inline": items,
    })
}
