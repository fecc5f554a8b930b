//! lingma-gateway's gateway: the OpenAI-compatible front door of a pool of Lingma sidecars.
//!
//! `main.rs` parses [`config::GatewayConfig`] and calls [`serve`]; tests and the local
//! stack can build the same thing with [`Gateway::build`] and any discovery receiver.

pub mod anthropic;
pub mod auth;
pub mod backpressure;
pub mod chat;
pub mod config;
pub mod discovery;
pub mod errors;
pub mod hash;
pub mod http;
pub mod keys;
pub mod models;
pub mod observability;
pub mod openai;
pub mod pool;
pub mod quote;
pub mod responses;
pub mod routing;
pub mod ttl_cache;

use std::sync::Arc;
use std::time::Duration;

use mux_protocol::SidecarEndpoint;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::backpressure::InFlightLimiter;
use crate::chat::{ChatService, ChatSettings};
use crate::config::{ConfigError, GatewayConfig};
use crate::observability::metrics::{Metrics, MetricsError};
use crate::pool::{Pool, PoolSettings};
use crate::routing::PinMap;
use crate::routing::router::Router;

/// Conversation pins kept per gateway process.
const PIN_CAPACITY: usize = 100_000;
/// How long a pin lives (the sidecars' SESSION_CACHE_TTL_SEC default).
const PIN_TTL: Duration = Duration::from_secs(1800);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    ResponseStore(#[from] responses::StoreError),
}

/// A wired gateway: the HTTP router and the pool behind it.
pub struct Gateway {
    pub router: axum::Router,
    pub state: http::AppState,
    pub stop: CancellationToken,
    /// GATEWAY_SHUTDOWN_GRACE_SEC.
    pub shutdown_grace: Duration,
    /// Header-read deadline and connection cap of the listener.
    pub serve: http::serve::ServeSettings,
}

/// After the grace period, how long the open responses get to write their error event.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

impl Gateway {
    /// Wire everything; must be called inside a Tokio runtime (the pool starts its
    /// connections). `endpoints` is any discovery source's receiver.
    pub fn build(
        config: &GatewayConfig,
        endpoints: watch::Receiver<Vec<SidecarEndpoint>>,
    ) -> Result<Self, BuildError> {
        Self::build_with_sync(config, endpoints, watch::channel(true).1)
    }

    /// [`Gateway::build`] for a discovery source that needs time to see the pool (the
    /// Kubernetes watch): `/readyz` answers 503 until `synced` turns true.
    pub fn build_with_sync(
        config: &GatewayConfig,
        endpoints: watch::Receiver<Vec<SidecarEndpoint>>,
        synced: watch::Receiver<bool>,
    ) -> Result<Self, BuildError> {
        config.validate()?;
        // A bad API_KEYS_FILE stops the start before anything connects.
        let key_specs = config.key_specs()?;
        if config.anonymous_on_public_host() {
            tracing::warn!(
                host = %config.host,
                "GATEWAY_ALLOW_ANONYMOUS=true: serving WITHOUT API keys on a non-loopback address; anyone who can reach it can use every account"
            );
        }
        let metrics = Arc::new(Metrics::new()?);
        let limit = config.global_limit();
        metrics
            .max_in_flight
            .set(limit.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)));
        let stop = CancellationToken::new();
        let pool = Pool::start(
            endpoints,
            PoolSettings {
                default_token: Arc::new(config.sidecar_token()?),
                eject_failures: config.eject_failures,
                eject_cooldown: config.eject_cooldown(),
                max_ejection_percent: config.max_ejection_percent,
                deadlines: config.deadlines(),
            },
            metrics.clone(),
            stop.clone(),
        );
        let chat = Arc::new(ChatService {
            pool,
            router: Router::new(config.routing, config.load_factor)
                .with_sticky_wait(config.sticky_wait()),
            limiter: InFlightLimiter::new(limit, config.max_queued, metrics.clone()),
            pins: PinMap::new(PIN_CAPACITY, PIN_TTL),
            metrics: metrics.clone(),
            settings: ChatSettings {
                default_model: config.default_model.clone(),
                session_reuse: config.session_reuse_enabled,
                queue_timeout: config.queue_timeout(),
            },
        });
        let keys = ApiKeys::from_specs(
            &key_specs,
            &[&config.metrics_token, &config.admin_token],
            config.replicas,
        );
        let mut state = http::AppState::new(
            chat,
            keys,
            metrics,
            config.max_body_bytes,
            config.login_cooldown(),
        );
        state.discovery_synced = synced;
        if !config.responses_redis_url.is_empty() {
            state.responses = Arc::new(responses::ResponseStore::redis(
                &config.responses_redis_url,
                responses::STORE_TTL,
            )?);
        }
        tracing::info!(store = state.responses.kind(), "Responses API store");
        Ok(Self {
            router: http::router(state.clone()),
            state,
            stop,
            shutdown_grace: config.shutdown_grace(),
            serve: http::serve::ServeSettings {
                header_read_timeout: config.header_read_timeout(),
                max_connections: config.max_connections,
                http1_max_buf_bytes: config.http1_max_buf_bytes,
            },
        })
    }
}

/// Serve on `listener` until `shutdown` completes, then shut down gracefully with a
/// deadline: readiness flips first (`/readyz` 503) and no new connection is taken; open
/// chats get the grace period; then the pool's connections close and every chat still
/// open ends with an error event (SSE) or error body, rather than a cut socket.
pub async fn serve(
    gateway: Gateway,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = gateway.stop.clone();
    let grace = gateway.shutdown_grace;
    let pool = gateway.state.chat.pool.clone();
    let signalled = CancellationToken::new();
    let on_signal = signalled.clone();
    let shutdown = async move {
        shutdown.await;
        pool.begin_shutdown();
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "shutting down: not ready, open chats get the grace period"
        );
        on_signal.cancel();
    };
    let server = http::serve::serve(listener, gateway.router, gateway.serve, shutdown);
    let mut server = std::pin::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        _ = async { signalled.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over: ending the open chats with an error");
            stop.cancel();
            tokio::time::timeout(FINAL_FLUSH, &mut server)
                .await
                .unwrap_or(Ok(()))
        }
    };
    stop.cancel();
    result
}
