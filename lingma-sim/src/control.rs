//! The control API (needs `Authorization: Bearer <--control-token>`; off without a token):
//! switch faults, drive the login state and read the stats at run time.

use crate::fault::Fault;
use crate::state::Sim;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/control/fault", post(set_fault).get(get_fault))
        .route("/control/login", post(login))
        .route("/control/logout", post(logout))
        .route("/control/expire-login", post(expire_login))
        .route("/control/stats", get(stats))
}

#[derive(Debug, thiserror::Error)]
enum ControlError {
    #[error("the control API is off (no --control-token)")]
    Disabled,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            ControlError::Disabled => StatusCode::NOT_FOUND,
            ControlError::Unauthorized => StatusCode::UNAUTHORIZED,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

fn authorize(sim: &Sim, headers: &HeaderMap) -> Result<(), ControlError> {
    let Some(expected) = sim
        .config
        .control_token
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return Err(ControlError::Disabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ControlError::Unauthorized)
    }
}

#[derive(Deserialize)]
struct FaultRequest {
    fault: String,
    #[serde(default)]
    times: Option<u32>,
    /// The fault ends by itself after this many milliseconds (an account rate limited or
    /// out of quota for a while, then recovered).
    #[serde(default)]
    for_ms: Option<u64>,
}

async fn set_fault(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Result<Json<FaultRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ControlError> {
    authorize(&sim, &headers)?;
    let Json(req) = body.map_err(|e| ControlError::BadRequest(e.body_text()))?;
    let fault = Fault::parse(&req.fault).ok_or_else(|| {
        ControlError::BadRequest(format!(
            "unknown fault {:?}; known: {}",
            req.fault,
            Fault::all_names().join(", ")
        ))
    })?;
    sim.fault
        .set_for(fault, req.times, req.for_ms.map(Duration::from_millis));
    tracing::info!(fault = %fault.name(), times = ?req.times, for_ms = ?req.for_ms, "fault set through the control API");
    Ok(fault_json(&sim).into_response())
}

async fn get_fault(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
) -> Result<Response, ControlError> {
    authorize(&sim, &headers)?;
    Ok(fault_json(&sim).into_response())
}

fn fault_json(sim: &Sim) -> Json<serde_json::Value> {
    let (fault, times) = sim.fault.current();
    let remaining_ms = sim
        .fault
        .remaining()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Json(json!({"fault": fault.name(), "times": times, "remaining_ms": remaining_ms}))
}

fn login_json(sim: &Sim) -> Json<serde_json::Value> {
    let user = sim.login.user();
    Json(json!({"login_state": user.phase.name(), "username": user.username}))
}

async fn login(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Result<Response, ControlError> {
    authorize(&sim, &headers)?;
    sim.login
        .log_in(None)
        .map_err(|e| ControlError::Internal(e.to_string()))?;
    tracing::info!("logged in through the control API");
    Ok(login_json(&sim).into_response())
}

async fn logout(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Result<Response, ControlError> {
    authorize(&sim, &headers)?;
    sim.login
        .log_out()
        .map_err(|e| ControlError::Internal(e.to_string()))?;
    tracing::info!("logged out through the control API");
    Ok(login_json(&sim).into_response())
}

async fn expire_login(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
) -> Result<Response, ControlError> {
    authorize(&sim, &headers)?;
    sim.login
        .expire()
        .map_err(|e| ControlError::Internal(e.to_string()))?;
    tracing::info!("login expired through the control API");
    Ok(login_json(&sim).into_response())
}

async fn stats(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Result<Response, ControlError> {
    authorize(&sim, &headers)?;
    Ok(Json(sim.snapshot()).into_response())
}
