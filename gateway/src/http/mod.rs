//! The HTTP edge: the router, its route groups and the layers around them, in one place;
//! one module per surface (`chat`, `models`, `ops`) and the helpers they share (`request`,
//! `response`).
//!
//! Routes are deny-by-default: each belongs to exactly one group, and the group's route
//! layer decides who may call it. No handler checks auth itself.
//!
//! | group | routes | guard |
//! |---|---|---|
//! | client | `POST /v1/chat/completions`, `POST /v1/responses`, `GET /v1/responses/{id}`, `POST /v1/messages`, `POST /v1/messages/count_tokens`, `GET /v1/models`, `GET /v1/models/{id}` | API key, as `Authorization: Bearer` or `x-api-key` (`guards::client`; Anthropic-shaped 401 on `/v1/messages*`) |
//! | admin | `GET /metrics`, `GET /internal/stats`, `GET /internal/auto-login/status`, `POST /internal/auto-login/start` | METRICS_TOKEN or ADMIN_TOKEN, never a client key (403) (`guards::admin`) |
//! | probes | `GET /healthz`, `GET /readyz` | open |
//!
//! Unknown routes and wrong methods answer with OpenAI error bodies.

pub mod anthropic;
pub mod chat;
pub mod guards;
pub mod layers;
pub mod models;
pub mod ops;
pub mod request;
pub mod response;
pub mod responses;
pub mod serve;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::auth::ApiKeys;
use crate::chat::ChatService;
use crate::errors::GatewayError;
use crate::observability::metrics::Metrics;
use crate::pool::LoginCooldown;
use crate::responses::ResponseStore;

#[derive(Clone)]
pub struct AppState {
    pub chat: Arc<ChatService>,
    pub keys: ApiKeys,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub started_unix: u64,
    /// Finished responses for `previous_response_id` (per API key, bounded, with TTL).
    pub responses: Arc<ResponseStore>,
    /// Forced logins (`POST /internal/auto-login/start`) per instance.
    pub forced_logins: Arc<LoginCooldown>,
    /// True once discovery has delivered its first complete view (at once for a static
    /// list); `/readyz` waits for it, not for a logged-in sidecar.
    pub discovery_synced: watch::Receiver<bool>,
}

impl AppState {
    pub fn new(
        chat: Arc<ChatService>,
        keys: ApiKeys,
        metrics: Arc<Metrics>,
        max_body_bytes: usize,
        login_cooldown: Duration,
    ) -> Self {
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            chat,
            keys,
            metrics,
            max_body_bytes,
            started_unix,
            responses: Arc::new(ResponseStore::memory(
                crate::responses::STORE_CAPACITY,
                crate::responses::STORE_TTL,
            )),
            forced_logins: Arc::new(LoginCooldown::new(login_cooldown)),
            discovery_synced: watch::channel(true).1,
        }
    }
}

/// The whole surface: the three route groups, the fallbacks, and the layer stack of
/// [`layers::around`].
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(client_routes(&state))
        .merge(admin_routes(&state))
        .merge(probe_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    layers::around(routes)
}

/// What clients call: an API key when keys are configured; the request gets the caller's
/// `ClientIdentity`.
fn client_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/responses", post(responses::create_response))
        .route("/v1/responses/{id}", get(responses::get_response))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{*id}", get(models::get_model))
        .route_layer(middleware::from_fn_with_state(
            state.keys.clone(),
            guards::client,
        ))
}

/// What operators call: metrics, stats and login control.
fn admin_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/internal/stats", get(ops::stats))
        .route("/internal/auto-login/status", get(ops::auto_login_status))
        .route("/internal/auto-login/start", post(ops::auto_login_start))
        .route_layer(middleware::from_fn_with_state(
            state.keys.clone(),
            guards::admin,
        ))
}

/// Kubernetes probes: open, cheap, no request data.
fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
}

async fn not_found() -> GatewayError {
    GatewayError::NotFound {
        message: "Unknown request URL. Please check the URL and the HTTP method.".to_owned(),
        param: None,
        code: "unknown_url",
    }
}

async fn method_not_allowed() -> GatewayError {
    GatewayError::MethodNotAllowed
}

#[cfg(test)]
mod tests;
