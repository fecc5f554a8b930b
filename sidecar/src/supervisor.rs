//! The connection to Lingma: stopped -> starting -> ready -> reconnecting (exponential
//! backoff with jitter) -> ready ..., failed while attempts keep failing for longer than
//! the startup timeout (retries go on: a Lingma restart never needs a sidecar restart),
//! closed on shutdown. In supervised mode the process is run by [`crate::lingma_process`]
//! alongside; in attach mode someone else runs it.
//!
//! On every connect: `initialize`, `config/updateEndpoint` when a dedicated domain is set,
//! then the login watcher takes over (`auth/status`, models, auto-login).

use crate::login::{self, LoginSettings};
use crate::state::SidecarState;
use backon::{BackoffBuilder, ExponentialBuilder};
use lingma_protocol::{ClientOptions, LingmaClient, methods};
use mux_protocol::{ConnectionState, LoginState};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct ConnectionSettings {
    pub url: String,
    pub root_uri: String,
    pub client: ClientOptions,
    pub startup_timeout: Duration,
    pub dedicated_domain: Option<String>,
    pub login: LoginSettings,
}

fn connect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Keep one live connection to Lingma until `stop` is cancelled.
pub async fn run(settings: ConnectionSettings, state: Arc<SidecarState>, stop: CancellationToken) {
    state.set_connection(ConnectionState::Starting, None);
    let mut backoff = connect_backoff();
    let mut failing_since = Instant::now();
    let mut was_connected = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let attempt = tokio::select! {
            r = connect(&settings) => r,
            _ = stop.cancelled() => break,
        };
        match attempt {
            Ok(client) => {
                if was_connected {
                    state.metrics.reconnects.inc();
                }
                was_connected = true;
                tracing::info!("connected to Lingma");
                // A new connection (maybe a new process): find out the login afresh.
                state.set_login(LoginState::Unknown);
                state.set_connection(ConnectionState::Ready, Some(client.clone()));
                let watcher = tokio::spawn(login::watch(
                    state.clone(),
                    client.clone(),
                    settings.login.clone(),
                ));
                tokio::select! {
                    _ = client.closed() => {
                        tracing::warn!("connection to Lingma lost; reconnecting");
                    }
                    _ = stop.cancelled() => {
                        watcher.abort();
                        client.close();
                        break;
                    }
                }
                watcher.abort();
                state.set_connection(ConnectionState::Reconnecting, None);
                backoff = connect_backoff();
                failing_since = Instant::now();
            }
            Err(reason) => {
                let failing_for = failing_since.elapsed();
                tracing::debug!(
                    reason,
                    failing_ms = failing_for.as_millis() as u64,
                    "cannot connect to Lingma yet"
                );
                if failing_for >= settings.startup_timeout {
                    tracing::error!(
                        reason,
                        "Lingma unreachable for longer than the startup timeout; restarting it (supervised) and still retrying"
                    );
                    state.set_connection(ConnectionState::Failed, None);
                    // A process that runs but never answers is restarted; the next
                    // restart comes after another full startup timeout.
                    state.lingma_restart.notify_one();
                    failing_since = Instant::now();
                }
            }
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(2));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
    state.set_connection(ConnectionState::Closed, None);
}

/// Connect and initialise. Errors are short static reasons (logged by the caller).
async fn connect(settings: &ConnectionSettings) -> Result<LingmaClient, &'static str> {
    let client = LingmaClient::connect(&settings.url, settings.client.clone())
        .await
        .map_err(|_| "connect failed")?;
    if client.initialize(&settings.root_uri).await.is_err() {
        client.close();
        return Err("initialize failed");
    }
    if let Some(endpoint) = &settings.dedicated_domain {
        let params = serde_json::json!({ "endpoint": endpoint });
        let result: Result<serde_json::Value, _> =
            client.call(methods::CONFIG_UPDATE_ENDPOINT, &params).await;
        if result.is_err() {
            // Not fatal: the public cloud still works; the operator sees it in the log.
            tracing::warn!("config/updateEndpoint for DEDICATED_DOMAIN_URL failed");
        }
    }
    Ok(client)
}
