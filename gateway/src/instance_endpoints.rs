//! The original gateway's operator endpoints, now over the pool of instances:
//!
//! | path | auth | what |
//! |------|------|------|
//! | `GET /healthz` | - | liveness, with each instance's state and the ready count |
//! | `GET /internal/auto-login/status` | API key or metrics token | every instance's login, from its sidecar |
//! | `POST /internal/auto-login/start?instance=NAME` | API key or metrics token | log one instance in now |
//!
//! The login calls go to each sidecar's HTTP surface (`GET /login/status`, `POST
//! /login/start`; same host:port as its mux WebSocket, same bearer token). Their answers are
//! parsed into [`LoginState`] and re-serialized, so nothing but a state and a short reason
//! (never a password, token or upstream text) reaches the client.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use futures_util::future::join_all;
use mux_protocol::LoginState;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::errors::GatewayError;
use crate::pool::sidecar::Sidecar;
use crate::server::AppState;

/// Deadline of one call to a sidecar's login endpoints.
const SIDECAR_CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(SIDECAR_CALL_TIMEOUT)
            // Sidecars are addressed directly; a proxy from the environment must not apply.
            .no_proxy()
            .build()
            .unwrap_or_default()
    })
}

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

/// One instance's login as the sidecar reports it, or why it could not be read.
#[derive(Serialize)]
struct InstanceLogin {
    instance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    login: Option<LoginState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

/// `GET /internal/auto-login/status`: every instance, asked in parallel.
pub async fn auto_login_status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = state.keys.check_metrics(&headers) {
        return e.into_response();
    }
    let members = state.chat.pool.members();
    let default_token = state.chat.pool.settings().default_token.clone();
    let calls = members.iter().map(|s| {
        let token = sidecar_token(s, default_token.as_deref());
        async move {
            let result = call_sidecar(s, reqwest::Method::GET, "/login/status", token).await;
            instance_login(&s.name, result)
        }
    });
    let instances = join_all(calls).await;
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
    headers: HeaderMap,
    Query(query): Query<StartQuery>,
) -> Response {
    if let Err(e) = state.keys.check_metrics(&headers) {
        return e.into_response();
    }
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
    let default_token = state.chat.pool.settings().default_token.clone();
    let token = sidecar_token(&sidecar, default_token.as_deref());
    let result = call_sidecar(&sidecar, reqwest::Method::POST, "/login/start", token).await;
    let login = instance_login(&sidecar.name, result);
    if login.login.is_none() {
        tracing::warn!(sidecar = %sidecar.name, error = login.error.unwrap_or("unknown"), "login start failed");
        return GatewayError::Unavailable {
            message: "The instance's sidecar did not accept the login request.",
        }
        .into_response();
    }
    tracing::info!(sidecar = %sidecar.name, "login started on request");
    (StatusCode::ACCEPTED, Json(login)).into_response()
}

fn sidecar_token<'a>(sidecar: &'a Sidecar, default: Option<&'a str>) -> Option<String> {
    sidecar
        .endpoint
        .token
        .as_deref()
        .or(default)
        .map(str::to_owned)
}

/// Why a sidecar's login endpoint gave no state. Short and fixed: never upstream text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallError {
    BadUrl,
    Unreachable,
    Unauthorized,
    BadResponse,
}

impl CallError {
    fn as_str(self) -> &'static str {
        match self {
            CallError::BadUrl => "bad_sidecar_url",
            CallError::Unreachable => "unreachable",
            CallError::Unauthorized => "sidecar_refused_token",
            CallError::BadResponse => "bad_response",
        }
    }
}

async fn call_sidecar(
    sidecar: &Sidecar,
    method: reqwest::Method,
    path: &str,
    token: Option<String>,
) -> Result<LoginState, CallError> {
    let base = http_base(&sidecar.endpoint.url).ok_or(CallError::BadUrl)?;
    let mut request = client().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|_| CallError::Unreachable)?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(CallError::Unauthorized);
    }
    if !response.status().is_success() {
        return Err(CallError::BadResponse);
    }
    response
        .json::<LoginState>()
        .await
        .map_err(|_| CallError::BadResponse)
}

fn instance_login(name: &str, result: Result<LoginState, CallError>) -> InstanceLogin {
    match result {
        Ok(login) => InstanceLogin {
            instance: name.to_owned(),
            login: Some(login),
            error: None,
        },
        Err(e) => InstanceLogin {
            instance: name.to_owned(),
            login: None,
            error: Some(e.as_str()),
        },
    }
}

/// `ws://host:port[/...]` -> `http://host:port` (`wss` -> `https`): the sidecar serves its
/// login endpoints on the same listener as the mux WebSocket.
fn http_base(ws_url: &str) -> Option<String> {
    let (scheme, rest) = ws_url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}"))
}

/// The instance name as given, cut short and without control characters (it is echoed).
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_http_base_comes_from_the_ws_url() {
        assert_eq!(
            http_base("ws://127.0.0.1:8318").as_deref(),
            Some("http://127.0.0.1:8318")
        );
        assert_eq!(
            http_base("wss://lingma-0.lingma:8318/").as_deref(),
            Some("https://lingma-0.lingma:8318")
        );
        assert_eq!(http_base("127.0.0.1:8318"), None);
        assert_eq!(http_base("ftp://x"), None);
        assert_eq!(http_base("ws://"), None);
    }

    #[test]
    fn errors_are_fixed_words() {
        let i = instance_login("inst-0", Err(CallError::Unreachable));
        let v = serde_json::to_value(&i).expect("json");
        assert_eq!(v, json!({"instance": "inst-0", "error": "unreachable"}));
        let i = instance_login("inst-0", Ok(LoginState::LoggedIn));
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
