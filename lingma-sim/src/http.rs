//! The HTTP port: Lingma's login callback, a login form like Alibaba Cloud's account page
//! (or a captcha page that defeats any driver), and the control API (control.rs).

use crate::config::{LoginChallenge, LoginMode};
use crate::login::LoginError;
use crate::state::Sim;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;
use tokio::net::TcpListener;

pub(crate) async fn serve(sim: Arc<Sim>, listener: TcpListener) {
    let shutdown = sim.shutdown.clone();
    let app = Router::new()
        .route("/auth/callback", get(callback))
        .route("/login", get(login_page).post(login_submit))
        .route("/healthz", get(|| async { "ok (lingma-sim)" }))
        .merge(crate::control::routes())
        .with_state(sim);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| drop(tcp.set_nodelay(true)));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    state: String,
    /// The authorization code the form minted (form mode).
    #[serde(default)]
    auth: Option<String>,
}

async fn callback(State(sim): State<Arc<Sim>>, Query(q): Query<CallbackQuery>) -> Response {
    let code_required = sim.config.login_mode == LoginMode::Form;
    match sim
        .login
        .complete_callback(&q.state, q.auth.as_deref(), code_required)
    {
        Ok(()) => {
            tracing::info!("logged in through the login callback");
            page(
                StatusCode::OK,
                "Login successful",
                "<p id=\"login-success\">You are logged in to lingma-sim. You can close this page.</p>",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "login callback refused");
            page(
                StatusCode::BAD_REQUEST,
                "Login failed",
                &format!("<p id=\"login-error\">{}</p>", escape(&e.to_string())),
            )
        }
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    state: String,
}

async fn login_page(State(sim): State<Arc<Sim>>, Query(q): Query<LoginQuery>) -> Response {
    if sim.config.login_challenge == LoginChallenge::Captcha {
        return captcha_page();
    }
    if !sim.login.is_pending(&q.state) {
        return page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "<p id=\"login-error\">unknown or expired login state</p>",
        );
    }
    form_page(StatusCode::OK, &q.state, None)
}

#[derive(Deserialize)]
struct LoginSubmit {
    #[serde(default)]
    state: String,
    #[serde(default)]
    username: String,
    /// Alibaba's form names the account field `loginId`; both are accepted.
    #[serde(default, rename = "loginId")]
    login_id: String,
    #[serde(default)]
    password: String,
}

async fn login_submit(State(sim): State<Arc<Sim>>, Form(f): Form<LoginSubmit>) -> Response {
    if sim.config.login_challenge == LoginChallenge::Captcha {
        return captcha_page();
    }
    let username = if f.username.is_empty() {
        &f.login_id
    } else {
        &f.username
    };
    match sim.login.check_credentials(&f.state, username, &f.password) {
        Ok(code) => {
            let location = format!(
                "http://127.0.0.1:{}/auth/callback?state={}&auth={code}&token=sim",
                sim.http_port, f.state
            );
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        Err(LoginError::BadCredentials) => {
            tracing::warn!("login form: wrong username or password");
            form_page(
                StatusCode::UNAUTHORIZED,
                &f.state,
                Some("Incorrect account name or password."),
            )
        }
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            &format!("<p id=\"login-error\">{}</p>", escape(&e.to_string())),
        ),
    }
}

fn form_page(status: StatusCode, state: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| {
            format!(
                "<div class=\"fm-error\" id=\"login-error\">{}</div>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"{error}<form id="login-form" method="post" action="/login">
  <input type="hidden" name="state" value="{state}">
  <label for="fm-login-id">Account</label>
  <input id="fm-login-id" name="username" type="text" autocomplete="username">
  <label for="fm-login-password">Password</label>
  <input id="fm-login-password" name="password" type="password" autocomplete="current-password">
  <button id="fm-login-submit" class="fm-submit" type="submit">Sign In</button>
</form>"#,
        state = escape(state),
    );
    page(status, "Sign in (lingma-sim)", &body)
}

fn captcha_page() -> Response {
    page(
        StatusCode::OK,
        "Security verification (lingma-sim)",
        r#"<div id="nocaptcha" class="captcha">
  <p>Please slide to verify (captcha).</p>
  <span id="nc_1_n1z" class="nc_iconfont btn_slide"></span>
</div>"#,
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><p class=\"sim-banner\">lingma-sim: a test double of Lingma's login, not Alibaba Cloud.</p>\
         <h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
