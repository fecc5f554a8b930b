//! A login site on 127.0.0.1 built to behave like the real one where the login loop depends
//! on it: a form that POSTs and 302s to `/auth/callback?state=...&auth=...&token=...`,
//! an error re-render on a wrong password, captcha and MFA pages, a slow page, the form in a
//! cross-origin iframe, and an account-then-password two-step form.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

pub const TOKEN: &str = "tok-0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The login form on the page itself.
    Form,
    /// The login form in an iframe served from `localhost` (another site than `127.0.0.1`,
    /// so Chromium runs it out of process, like Alibaba's passport frame).
    Iframe,
    /// Account name first, then the password on a second page.
    TwoStep,
    /// A slider captcha instead of the form.
    CaptchaPage,
    /// The form, then a slider captcha after submitting.
    CaptchaAfterSubmit,
    /// The form, then a verification-code prompt after submitting the right password.
    Mfa,
    /// The login page never answers.
    Slow,
    /// The form; the callback page then redirects onwards at once (a server-side 302), so
    /// the address bar never shows the callback URL.
    CallbackRedirectsOnward,
    /// The login page 302s to the same form served from `localhost` (another host than
    /// `127.0.0.1`), like a login URL that sends the browser off to a phishing page.
    RedirectsToOtherHost,
}

pub struct Site {
    pub addr: SocketAddr,
    pub variant: Variant,
    username: String,
    password: String,
    callbacks: Mutex<Vec<HashMap<String, String>>>,
    posts: Mutex<usize>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Site {
    pub async fn start(variant: Variant, username: &str, password: &str) -> Arc<Site> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the login site");
        let addr = listener.local_addr().expect("login site address");
        let site = Arc::new(Site {
            addr,
            variant,
            username: username.to_string(),
            password: password.to_string(),
            callbacks: Mutex::new(Vec::new()),
            posts: Mutex::new(0),
            server: Mutex::new(None),
        });
        let app = Router::new()
            .route("/login", get(login_page).post(login_post))
            .route("/login-frame", get(login_frame))
            .route("/login/password", get(password_page))
            .route("/auth/callback", get(callback))
            .route("/welcome", get(welcome))
            .with_state(site.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *site.server.lock().expect("server slot") = Some(server);
        site
    }

    /// The URL Lingma's `auth/login` would hand out.
    pub fn login_url(&self, state: &str) -> String {
        format!("http://127.0.0.1:{}/login?state={state}", self.addr.port())
    }

    pub fn callbacks(&self) -> Vec<HashMap<String, String>> {
        self.callbacks.lock().expect("callbacks lock").clone()
    }

    pub fn posts(&self) -> usize {
        *self.posts.lock().expect("posts lock")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().ok().and_then(|mut slot| slot.take()) {
            server.abort();
        }
    }
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(rename = "loginId")]
    login_id: String,
    password: String,
    state: String,
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title>\
         <style>body{{font-family:sans-serif}} .error-msg{{color:#c00}}</style></head>\
         <body>{body}</body></html>"
    ))
}

/// The form as Alibaba's page lays it out: an account field, a password field, a button.
/// `action` is absolute so the same markup works inside the cross-site iframe.
fn form_html(site: &Site, state: &str, error: bool) -> String {
    let error = if error {
        r#"<div class="login-error"><div class="error-msg" role="alert">Incorrect account name or password.</div></div>"#
    } else {
        ""
    };
    format!(
        r#"<form method="post" action="http://127.0.0.1:{port}/login" target="_top">
             {error}
             <input type="text" name="loginId" placeholder="Account name">
             <input type="password" name="password" placeholder="Password">
             <input type="hidden" name="state" value="{state}">
             <button type="submit" class="fm-button fm-submit">Sign In</button>
           </form>"#,
        port = site.addr.port()
    )
}

fn captcha_html() -> &'static str {
    r#"<div id="nc_1_wrapper" class="nc-container">
         <div id="nc_1_n1t" class="nc_scale"><span id="nc_1_n1z" class="nc_iconfont btn_slide">&gt;&gt;</span>
         <div class="scale_text">Please slide to verify</div></div>
       </div>"#
}

async fn login_page(State(site): State<Arc<Site>>, Query(q): Query<StateQuery>) -> Response {
    let state = q.state.unwrap_or_default();
    match site.variant {
        Variant::Form
        | Variant::CaptchaAfterSubmit
        | Variant::Mfa
        | Variant::CallbackRedirectsOnward => {
            page("Sign in", &form_html(&site, &state, false)).into_response()
        }
        Variant::Iframe => page(
            "Sign in",
            &format!(
                r#"<h1>Account</h1><iframe id="alibaba-login-box" width="400" height="300"
                     src="http://localhost:{}/login-frame?state={state}"></iframe>"#,
                site.addr.port()
            ),
        )
        .into_response(),
        Variant::TwoStep => page(
            "Sign in",
            &format!(
                r#"<form method="get" action="/login/password">
                     <input type="text" name="loginId" placeholder="Account name">
                     <input type="hidden" name="state" value="{state}">
                     <button type="submit">Next</button>
                   </form>"#
            ),
        )
        .into_response(),
        Variant::CaptchaPage => page("Verify", captcha_html()).into_response(),
        Variant::RedirectsToOtherHost => {
            let location = format!(
                "http://localhost:{}/login-frame?state={state}",
                site.addr.port()
            );
            (StatusCode::FOUND, [(LOCATION, location)]).into_response()
        }
        Variant::Slow => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

async fn login_frame(State(site): State<Arc<Site>>, Query(q): Query<StateQuery>) -> Response {
    page(
        "login box",
        &form_html(&site, &q.state.unwrap_or_default(), false),
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
struct AccountStep {
    #[serde(rename = "loginId")]
    login_id: String,
    state: String,
}

async fn password_page(Query(q): Query<AccountStep>) -> Response {
    page(
        "Password",
        &format!(
            r#"<form method="post" action="/login">
                 <p>Account: <input type="hidden" name="loginId" value="{}"></p>
                 <input type="password" name="password" placeholder="Password">
                 <input type="hidden" name="state" value="{}">
                 <button type="submit">Sign In</button>
               </form>"#,
            html_escape(&q.login_id),
            html_escape(&q.state)
        ),
    )
    .into_response()
}

async fn login_post(State(site): State<Arc<Site>>, Form(form): Form<LoginForm>) -> Response {
    *site.posts.lock().expect("posts lock") += 1;
    let right = form.login_id == site.username && form.password == site.password;
    match site.variant {
        Variant::CaptchaAfterSubmit => page("Verify", captcha_html()).into_response(),
        Variant::Mfa if right => page(
            "Verify",
            r#"<form><label>Enter the verification code sent to your phone</label>
                 <input type="text" name="verifyCode" autocomplete="one-time-code">
                 <button type="submit">Verify</button></form>"#,
        )
        .into_response(),
        _ if right => {
            let location = format!(
                "/auth/callback?state={}&auth=auth-blob&token={TOKEN}",
                form.state
            );
            (StatusCode::FOUND, [(LOCATION, location)]).into_response()
        }
        _ => page("Sign in", &form_html(&site, &form.state, true)).into_response(),
    }
}

async fn callback(
    State(site): State<Arc<Site>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    site.callbacks.lock().expect("callbacks lock").push(params);
    if site.variant == Variant::CallbackRedirectsOnward {
        return (StatusCode::FOUND, [(LOCATION, "/welcome")]).into_response();
    }
    Html("<html><body><h1>Login successful</h1>You can close this page.</body></html>")
        .into_response()
}

async fn welcome() -> Html<&'static str> {
    Html("<html><body><h1>Welcome</h1></body></html>")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
