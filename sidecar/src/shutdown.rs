//! Graceful shutdown: on SIGTERM (or Ctrl-C) the sidecar drains: it reports `draining` to
//! the gateways and `/readyz` turns 503, new chats are refused, open ones may finish for
//! up to SIDECAR_DRAIN_TIMEOUT_SEC; then the gateway connections are closed and Lingma is
//! stopped.

use crate::state::SidecarState;
use std::time::Duration;
use tokio::time::Instant;

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Mark draining and wait until no chat is open or `timeout` passes. Returns the number of
/// chats still open at the end.
pub async fn drain(state: &SidecarState, timeout: Duration) -> i64 {
    state.set_draining();
    let deadline = Instant::now() + timeout;
    tracing::info!(
        open = state.open_streams(),
        timeout_s = timeout.as_secs(),
        "draining"
    );
    loop {
        let open = state.open_streams();
        if open <= 0 {
            return 0;
        }
        if Instant::now() >= deadline {
            tracing::warn!(open, "drain deadline reached; closing open chats");
            return open;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
