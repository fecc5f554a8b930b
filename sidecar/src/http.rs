//! The sidecar's HTTP surface: the mux WebSocket, probes, metrics and login control.
//!
//! | path | auth | what |
//! |------|------|------|
//! | `GET /v1/mux` | token | WebSocket upgrade, sub-protocol `lingma-mux.v1` |
//! | `GET /healthz` | - | the process is alive |
//! | `GET /readyz` | - | connected + logged in + not draining (503 otherwise); the JSON also says whether chats are taken and why not (`paused`) |
//! | `GET /metrics` | - | Prometheus text |
//! | `GET /login/status` | token | the login state, and the account pause while there is one |
//! | `POST /login/start` | token | log in now (even when auto-login is off or failed) |

use crate::state::SidecarState;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mux_protocol::{
    AccountPause, LoginState, MUX_PATH, PROTOCOL_VERSION, SUBPROTOCOL, SidecarToken,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use subtle::ConstantTimeEq;

/// Largest message the gateway may send (a whole conversation).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub sidecar: Arc<SidecarState>,
    /// The gateway token (re-read from SIDECAR_TOKEN_FILE at every check); none = no auth.
    token: Arc<SidecarToken>,
}

impl HttpState {
    pub fn new(sidecar: Arc<SidecarState>, token: Arc<SidecarToken>) -> Self {
        Self { sidecar, token }
    }

    /// Constant-time check of `Authorization: Bearer <token>`. Comparing digests keeps the
    /// comparison length-independent too.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = self.token.current().map(|t| digest(&t)) else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match presented {
            Some(token) => bool::from(digest(token).ct_eq(&expected)),
            None => false,
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Two route groups, deny-by-default: the gateway's routes (mux, login control) behind the
/// token layer, the probes and metrics open. No handler checks the token itself.
pub fn router(state: HttpState) -> Router {
    let gateway_routes = Router::new()
        .route(MUX_PATH, get(mux_upgrade))
        .route("/login/status", get(login_status))
        .route("/login/start", post(login_start))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let open_routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    Router::new()
        .merge(gateway_routes)
        .merge(open_routes)
        .with_state(state)
}

/// The route layer of the gateway's routes: the bearer token, or 401.
async fn require_token(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    if state.authorized(request.headers()) {
        next.run(request).await
    } else {
        HttpError::Unauthorized.into_response()
    }
}

/// The one error type of the HTTP layer; one JSON body shape.
enum HttpError {
    Unauthorized,
    BadVersion,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            HttpError::Unauthorized => (StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
            HttpError::BadVersion => (
                StatusCode::BAD_REQUEST,
                "unsupported lingma-mux protocol version",
            ),
        };
        let mut resp =
            (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

#[derive(Deserialize)]
struct MuxQuery {
    v: Option<u32>,
}

async fn mux_upgrade(
    State(state): State<HttpState>,
    Query(query): Query<MuxQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    if query.v.is_some_and(|v| v != PROTOCOL_VERSION) {
        return Err(HttpError::BadVersion);
    }
    let sidecar = state.sidecar.clone();
    Ok(ws
        .protocols([SUBPROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| crate::mux::serve(socket, sidecar)))
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 while serving, also while the account is paused: the pod is fine and keeping it in
/// its Service keeps the gateways connected, so they see the reason and the end of the
/// pause at once (they take it out of rotation from the mux Status, not from the probe).
async fn readyz(State(state): State<HttpState>) -> Response {
    let h = state.sidecar.health();
    let now = tokio::time::Instant::now();
    let body = axum::Json(serde_json::json!({
        "ready": h.ready(),
        "connection": h.connection.as_str(),
        "login": h.login.as_str(),
        "draining": h.draining,
        "paused": h.paused.map(|p| p.to_wire(now)),
    }));
    let status = if h.serving() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    state.sidecar.refresh_gauges();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.sidecar.metrics.render(),
    )
        .into_response()
}

/// The login state (`{"state":"failed","reason":"Expired"}`) and, while the account sits out a
/// limit, the pause next to it (`"paused":{"reason","retry_after_ms","pauses"}`, the mux
/// Status's words). The operator reads it for its status: a paused sidecar stays ready for
/// the kubelet, so this is where the operator learns why it takes no chats. Absent when not
/// paused, so the answer is what it was before pauses existed.
#[derive(Serialize)]
struct LoginStatus {
    #[serde(flatten)]
    login: LoginState,
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<AccountPause>,
}

impl LoginStatus {
    fn of(state: &HttpState) -> Self {
        let h = state.sidecar.health();
        Self {
            login: h.login,
            paused: h.paused.map(|p| p.to_wire(tokio::time::Instant::now())),
        }
    }
}

async fn login_status(State(state): State<HttpState>) -> Response {
    axum::Json(LoginStatus::of(&state)).into_response()
}

async fn login_start(State(state): State<HttpState>) -> Response {
    state.sidecar.login_forced.store(true, Ordering::Relaxed);
    state.sidecar.login_check.notify_one();
    (StatusCode::ACCEPTED, axum::Json(LoginStatus::of(&state))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AskMode;
    use crate::state::{ChatSettings, SidecarState};
    use mux_protocol::PauseReason;
    use std::time::Duration;

    /// A sidecar's HTTP surface on a free port (no Lingma behind it), with token `t0k`.
    async fn serve(sidecar: Arc<SidecarState>) -> (String, tokio::task::JoinHandle<()>) {
        let token = Arc::new(SidecarToken::fixed(Some("t0k")));
        let app = router(HttpState::new(sidecar, token));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (base, server)
    }

    async fn login_status(base: &str) -> serde_json::Value {
        let response = reqwest::Client::new()
            .get(format!("{base}/login/status"))
            .bearer_auth("t0k")
            .send()
            .await
            .expect("GET /login/status");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    #[tokio::test]
    async fn login_status_carries_the_account_pause() {
        let settings = ChatSettings {
            default_model: "org_auto".to_owned(),
            ask_mode: AskMode::Chat,
            session_reuse: true,
            auto_login: true,
        };
        let sidecar = Arc::new(SidecarState::new(
            "s-0".to_owned(),
            settings,
            1,
            8,
            Duration::from_secs(60),
        ));
        sidecar.set_login(LoginState::LoggedIn);
        let (base, server) = serve(sidecar.clone()).await;
        assert_eq!(
            login_status(&base).await,
            serde_json::json!({"state": "logged_in"}),
            "not paused: the answer is what it always was"
        );

        sidecar.account_limited(PauseReason::QuotaExhausted);
        let body = login_status(&base).await;
        assert_eq!(body["state"], "logged_in", "{body}");
        assert_eq!(body["paused"]["reason"], "quota_exhausted", "{body}");
        assert_eq!(body["paused"]["pauses"], 1, "{body}");
        let left = body["paused"]["retry_after_ms"].as_u64().expect("ms");
        assert!(
            left > 25_000 && left <= 30_000,
            "the default first pause: {body}"
        );
        server.abort();
    }
}
