//! The HTTP surface: routes and the layers around them, composed in one place.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde_json::json;

use crate::auth::{self, ApiKeys};
use crate::chat::ChatService;
use crate::errors::GatewayError;
use crate::observability::metrics::Metrics;
use crate::observability::request_id;
use crate::openai::response::{Model, ModelList};
use crate::responses::ResponseStore;
use crate::{instance_endpoints, models};

#[derive(Clone)]
pub struct AppState {
    pub chat: Arc<ChatService>,
    pub keys: ApiKeys,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub started_unix: u64,
    pub responses: Arc<ResponseStore>,
}

impl AppState {
    pub fn new(
        chat: Arc<ChatService>,
        keys: ApiKeys,
        metrics: Arc<Metrics>,
        max_body_bytes: usize,
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
            responses: Arc::new(ResponseStore::new(
                crate::responses::STORE_CAPACITY,
                crate::responses::STORE_TTL,
            )),
        }
    }
}

/// What wraps what:
/// - every route: request id (outermost, so even 404s and auth failures carry one);
/// - `/v1/*` and `/internal/*`: API key;
/// - `/metrics`, `/internal/auto-login/*`: METRICS_TOKEN or an API key (checked in the handler);
/// - probes: open.
///
/// Unknown routes and wrong methods answer with OpenAI error bodies.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/v1/chat/completions",
            post(crate::openai::chat::chat_completions),
        )
        .route("/v1/messages", post(crate::anthropic::handler::messages))
        .route(
            "/v1/messages/count_tokens",
            post(crate::anthropic::handler::count_tokens),
        )
        .route(
            "/v1/responses",
            post(crate::responses::handler::create_response),
        )
        .route(
            "/v1/responses/{id}",
            get(crate::responses::handler::get_response),
        )
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/internal/stats", get(stats))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.keys.clone(),
            auth::require_api_key,
        ));
    Router::new()
        .route("/healthz", get(instance_endpoints::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/internal/auto-login/status",
            get(instance_endpoints::auto_login_status),
        )
        .route(
            "/internal/auto-login/start",
            post(instance_endpoints::auto_login_start),
        )
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id::propagate))
        .with_state(state)
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

async fn readyz(State(state): State<AppState>) -> Response {
    if state.chat.pool.any_usable() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no ready sidecar").into_response()
    }
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = state.keys.check_metrics(&headers) {
        return e.into_response();
    }
    state.chat.pool.refresh_gauges();
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn list_models(State(state): State<AppState>) -> Response {
    let known = state.chat.pool.models();
    let default = &state.chat.settings.default_model;
    let mut data: Vec<Model<'_>> = known
        .iter()
        .map(|m| Model {
            id: &m.id,
            object: "model",
            created: state.started_unix,
            owned_by: "lingma",
        })
        .collect();
    if !known.iter().any(|m| &m.id == default) {
        data.insert(
            0,
            Model {
                id: default,
                object: "model",
                created: state.started_unix,
                owned_by: "lingma",
            },
        );
    }
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

async fn get_model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let known = state.chat.pool.models();
    let default = &state.chat.settings.default_model;
    match models::lookup(&id, &known, default) {
        Some(_) => Json(Model {
            id: &id,
            object: "model",
            created: state.started_unix,
            owned_by: "lingma",
        })
        .into_response(),
        None => models::model_not_found(&id).into_response(),
    }
}

async fn stats(State(state): State<AppState>) -> Response {
    let chat = &state.chat;
    let sidecars: Vec<_> = chat
        .pool
        .members()
        .iter()
        .map(|s| {
            let status = s.status();
            json!({
                "name": &*s.name,
                "url": s.endpoint.url,
                "state": s.state(),
                "connected": s.connected(),
                "in_flight": s.in_flight(),
                "open_streams": s.open_streams(),
                "ejected_for_ms": s.ejected_for().map(|d| d.as_millis() as u64),
                "status": status.as_deref().map(|st| json!({
                    "ready": st.ready,
                    "connection": st.connection,
                    "login": st.login,
                    "capacity": st.capacity,
                    "in_flight": st.in_flight,
                    "queued": st.queued,
                    "draining": st.draining,
                    "models": st.models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
                })),
            })
        })
        .collect();
    Json(json!({
        "concurrency": {
            "in_flight": state.metrics.in_flight.get(),
            "queued": chat.limiter.queued(),
            "max_in_flight": state.metrics.max_in_flight.get(),
            "available": chat.limiter.available(),
        },
        "routing": format!("{:?}", chat.router.policy()),
        "pool": sidecars,
        "sessions": {
            "pins": chat.pins.len(),
            "reused": state.metrics.sessions.with_label_values(&["reused"]).get(),
            "new": state.metrics.sessions.with_label_values(&["new"]).get(),
            "migrated": state.metrics.sessions.with_label_values(&["migrated"]).get(),
        },
    }))
    .into_response()
}
