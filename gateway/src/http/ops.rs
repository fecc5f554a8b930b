//! The operator's endpoints: probes, metrics, stats and login control over the pool.
//!
//! | path | group | what |
//! |------|-------|------|
//! | `GET /healthz` | probes | liveness, with each instance's state and the ready count |
//! | `GET /readyz` | probes | 200 once discovery has synced, until shutdown begins; not about sidecars (no capacity is a JSON 503 on the chat, not a missing endpoint) |
//! | `GET /metrics` | admin | Prometheus text |
//! | `GET /internal/stats` | admin | concurrency, routing, every sidecar, session pins |
//! | `GET /internal/auto-login/status` | admin | every instance's login, from its sidecar |
//! | `POST /internal/auto-login/start?instance=NAME` | admin | log one instance in now (at most once per GATEWAY_LOGIN_COOLDOWN_SEC, else 429) |
//!
//! The login calls themselves are `pool::login_control`; here their answers become JSON.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use mux_protocol::LoginState;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use crate::errors::GatewayError;
use crate::pool::LoginAnswer;

/// `GET /healthz`: 200 while the process runs (liveness), with the pool's state.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let members = state.chat.pool.members();
    let pool: Vec<_> = members
        .iter()
        .map(|s| {
            json!({
                "name": &*s.name,
                "state": s.state(),
                "login": s.status().map(|st| st.login.clone()),
            })
        })
        .collect();
    let ready = members.iter().filter(|s| s.usable()).count();
    Json(json!({
        "status": "ok",
        "ready": ready,
        "instances": members.len(),
        "pool": pool,
    }))
    .into_response()
}

/// `GET /readyz`: the gateway serves and knows its pool. It does not wait for a logged-in
/// sidecar: a gateway without capacity must stay in its Service so that clients get our
/// JSON 503 (`no_upstream_available`), not a connection error, and `helm install --wait`
/// turns healthy before any account has logged in.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.chat.pool.shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if !*state.discovery_synced.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "discovery not synced yet").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state.chat.pool.refresh_gauges();
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub async fn stats(State(state): State<AppState>) -> Response {
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
                "reported_load": s.reported_load(),
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
                    "paused": st.paused,
                })),
            })
        })
        .collect();
    let sessions = |outcome: &str| state.metrics.sessions.with_label_values(&[outcome]).get();
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
            "owner_keys": chat.pool.owners().len(),
            "reused": sessions("reused"),
            "new": sessions("new"),
            "migrated": sessions("migrated"),
        },
    }))
    .into_response()
}

/// One instance's login as the sidecar reports it, or why it could not be read.
#[derive(Serialize)]
struct InstanceLogin {
    instance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    login: Option<LoginState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

impl InstanceLogin {
    fn new(name: &str, answer: LoginAnswer) -> Self {
        let (login, error) = match answer {
            Ok(login) => (Some(login), None),
            Err(e) => (None, Some(e.as_str())),
        };
        Self {
            instance: name.to_owned(),
            login,
            error,
        }
    }
}

/// `GET /internal/auto-login/status`: every instance, asked in parallel.
pub async fn auto_login_status(State(state): State<AppState>) -> Response {
    let instances: Vec<InstanceLogin> = state
        .chat
        .pool
        .login_states()
        .await
        .into_iter()
        .map(|(name, answer)| InstanceLogin::new(&name, answer))
        .collect();
    let logged_in = instances
        .iter()
        .filter(|i| i.login == Some(LoginState::LoggedIn))
        .count();
    Json(json!({
        "instances": instances,
        "logged_in": logged_in,
        "total": instances.len(),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct StartQuery {
    instance: Option<String>,
}

/// `POST /internal/auto-login/start?instance=NAME`: start the login of one instance.
pub async fn auto_login_start(
    State(state): State<AppState>,
    Query(query): Query<StartQuery>,
) -> Response {
    let Some(name) = query.instance.filter(|n| !n.trim().is_empty()) else {
        return GatewayError::invalid(
            "Missing query parameter 'instance' (e.g. ?instance=inst-0).",
            Some("instance"),
        )
        .into_response();
    };
    let Some(sidecar) = state.chat.pool.find(&name) else {
        return GatewayError::NotFound {
            message: format!("No instance named '{}'.", printable(&name)),
            param: Some("instance"),
            code: "instance_not_found",
        }
        .into_response();
    };
    if let Err(left) = state
        .forced_logins
        .try_take(&sidecar.name, std::time::Instant::now())
    {
        tracing::info!(sidecar = %sidecar.name, "forced login refused: cooldown");
        return GatewayError::RateLimited {
            message: "This instance was asked to log in recently; retry later.",
            code: "login_cooldown",
            retry_after_secs: left.as_secs_f64().ceil().max(1.0) as u64,
        }
        .into_response();
    }
    let answer = state.chat.pool.start_login(&sidecar).await;
    let login = InstanceLogin::new(&sidecar.name, answer);
    if login.login.is_none() {
        tracing::warn!(sidecar = %sidecar.name, error = login.error.unwrap_or("unknown"), "login start failed");
        return GatewayError::Unavailable {
            message: "The instance's sidecar did not accept the login request.",
            retry_after_secs: None,
        }
        .into_response();
    }
    tracing::info!(sidecar = %sidecar.name, "login started on request");
    (StatusCode::ACCEPTED, Json(login)).into_response()
}

/// The instance name as given, cut short and without control characters (it is echoed).
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::LoginCallError;

    #[test]
    fn errors_are_fixed_words() {
        let i = InstanceLogin::new("inst-0", Err(LoginCallError::Unreachable));
        let v = serde_json::to_value(&i).expect("json");
        assert_eq!(v, json!({"instance": "inst-0", "error": "unreachable"}));
        let i = InstanceLogin::new("inst-0", Ok(LoginState::LoggedIn));
        let v = serde_json::to_value(&i).expect("json");
        assert_eq!(
            v,
            json!({"instance": "inst-0", "login": {"state": "logged_in"}})
        );
    }

    #[test]
    fn echoed_names_are_printable_and_short() {
        assert_eq!(printable("inst-\u{1b}[31m1"), "inst-[31m1");
        assert_eq!(printable(&"x".repeat(500)).len(), 64);
    }
}
