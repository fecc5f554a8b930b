//! JSON-RPC dispatch: every method of section 3 the simulator knows, answered in order on
//! the connection's reader; `chat/ask` hands off to a chat task.

use crate::conn::Conn;
use crate::login::LoginPhase;
use crate::state::Sim;
use crate::{SERVER_NAME, VERSION, frames};
use lingma_protocol::jsonrpc::{Id, Message, codes};
use lingma_protocol::methods as m;
use lingma_protocol::wire::{ChatStopParams, DeviceLoginParams};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(crate) async fn dispatch(sim: &Arc<Sim>, conn: &Arc<Conn>, body: &str) {
    let message = match Message::decode(body) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::warn!(conn = conn.id, error = %e, "invalid JSON-RPC message dropped");
            return;
        }
    };
    match message {
        Message::Response { id, result } => {
            sim.stats.acks_received.fetch_add(1, Ordering::Relaxed);
            let known = match &id {
                Id::Num(n) => conn.acked(*n),
                Id::Str(s) => s.parse().map(|n| conn.acked(n)).unwrap_or(false),
            };
            if !known {
                tracing::debug!(conn = conn.id, %id, "response to no pending event");
            }
            if let Err(e) = result {
                tracing::debug!(conn = conn.id, %id, code = e.code, "client answered an event with an error");
            }
        }
        Message::Notification { method, .. } => {
            // Lingma does not implement `initialized` (or any notification from the client).
            tracing::warn!(conn = conn.id, "unknown method: {method}");
        }
        Message::Request { id, method, params } => {
            if let Some(frame) = handle_request(sim, conn, &id, &method, params).await
                && conn.send(frame).await.is_err()
            {
                tracing::debug!(conn = conn.id, "connection closed before the reply");
            }
        }
    }
}

/// The reply frame, or None when the reply is sent later (chat/ask) or never.
async fn handle_request(
    sim: &Arc<Sim>,
    conn: &Arc<Conn>,
    id: &Id,
    method: &str,
    params: Value,
) -> Option<String> {
    tracing::debug!(conn = conn.id, %id, method, "request");
    let reply = match method {
        m::CHAT_ASK => return crate::chat::handle_ask(sim, conn, id, params),
        m::INITIALIZE => {
            if sim.config.init_log_message {
                let note = json!({"type": 3, "message": "lingma-sim: initializing (test double)"});
                let frame = frames::notification(m::WINDOW_LOG_MESSAGE, &note);
                if conn.send(frame).await.is_err() {
                    return None;
                }
            }
            json!({
            "capabilities": {},
            "serverInfo": {"name": SERVER_NAME, "version": VERSION},
            })
        }
        m::PING => json!({"success": true}),
        m::AUTH_STATUS => sim.login.status_json(),
        m::AUTH_LOGIN => json!({"success": true, "url": login_url(sim)}),
        m::AUTH_DEVICE_LOGIN => {
            let p: DeviceLoginParams = match serde_json::from_value(params) {
                Ok(p) => p,
                Err(e) => return Some(invalid_params(id, &e.to_string())),
            };
            if let Err(e) = sim.login.device_login(&p.token, &p.username, &p.user_id) {
                return Some(invalid_params(id, &e.to_string()));
            }
            tracing::info!(conn = conn.id, "logged in through auth/device_login");
            json!({"success": true})
        }
        "auth/refreshToken" => {
            if sim.login.phase() == LoginPhase::LoggedIn {
                let user = sim.login.user();
                json!({"success": true, "errorCode": "", "errorMessage": "", "uid": user.user_id, "name": user.username})
            } else {
                json!({"success": false, "errorCode": "401", "errorMessage": "not logged in"})
            }
        }
        m::AUTH_LOGOUT => {
            if let Err(e) = sim.login.log_out() {
                return Some(frames::error(id, codes::INTERNAL_ERROR, &e.to_string()));
            }
            tracing::info!(conn = conn.id, "logged out through auth/logout");
            json!({"success": true})
        }
        m::CONFIG_QUERY_MODELS => {
            return Some(if sim.login.phase() == LoginPhase::LoggedIn {
                frames::response(id, &sim.models)
            } else {
                frames::response(id, &json!({}))
            });
        }
        "config/getEndpoint" => {
            json!({"endpoint": sim.config.endpoint.clone().unwrap_or_default()})
        }
        m::CONFIG_UPDATE_ENDPOINT => json!({"success": true}),
        m::CHAT_STOP => {
            let p: ChatStopParams = match serde_json::from_value(params) {
                Ok(p) => p,
                Err(e) => return Some(invalid_params(id, &e.to_string())),
            };
            let token = sim.chats.lock().get(&p.request_id).cloned();
            match token {
                Some(t) => t.cancel(),
                None => {
                    tracing::debug!(conn = conn.id, request_id = %p.request_id, "chat/stop for no chat in flight")
                }
            }
            json!({})
        }
        m::CHAT_LIST_ALL_SESSIONS => serde_json::to_value(sim.sessions.list()).unwrap_or_default(),
        m::CHAT_GET_SESSION_BY_ID => match sim.sessions.get(&session_id_param(&params)) {
            Some(s) => serde_json::to_value(s).unwrap_or_default(),
            None => return Some(invalid_params(id, "session not found")),
        },
        m::CHAT_DELETE_SESSION_BY_ID => {
            json!({"success": sim.sessions.delete(&session_id_param(&params))})
        }
        "chat/clearAllSessions" => {
            sim.sessions.clear();
            json!({"success": true})
        }
        "user/plan" => {
            return Some(frames::error(
                id,
                codes::INTERNAL_ERROR,
                "failed to get user plan info: HTTP status 404",
            ));
        }
        m::TOOL_INVOKE_RESULT => json!({}),
        other => {
            tracing::warn!(conn = conn.id, "unknown method: {other}");
            return Some(frames::error(
                id,
                codes::METHOD_NOT_FOUND,
                &format!("unknown method: {other}"),
            ));
        }
    };
    Some(frames::response(id, &reply))
}

fn invalid_params(id: &Id, detail: &str) -> String {
    frames::error(
        id,
        codes::INVALID_PARAMS,
        &format!("invalid params: {detail}"),
    )
}

/// `{sessionId}` (S4 falls back to `{id}`).
fn session_id_param(params: &Value) -> String {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct P {
        session_id: String,
        id: String,
    }
    let p: P = serde_json::from_value(params.clone()).unwrap_or_default();
    if p.session_id.is_empty() {
        p.id
    } else {
        p.session_id
    }
}

/// The URL `auth/login` returns, per login mode.
fn login_url(sim: &Sim) -> String {
    let state = sim.login.begin_login();
    let port = sim.http_port;
    match sim.config.login_mode {
        crate::LoginMode::Callback => {
            format!("http://127.0.0.1:{port}/auth/callback?state={state}")
        }
        crate::LoginMode::Form => format!(
            "http://127.0.0.1:{port}/login?state={state}&port={port}&machine_id={}",
            sim.login.machine_id()
        ),
    }
}
