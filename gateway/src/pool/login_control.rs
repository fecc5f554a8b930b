//! Asking a sidecar about its login: `GET /login/status` and `POST /login/start` on the
//! sidecar's HTTP surface (same host:port as its mux WebSocket, same bearer token). The
//! answers are parsed into [`LoginState`], so nothing but a state and a short reason (never
//! a password, token or upstream text) comes back.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mux_protocol::LoginState;

use super::Pool;
use super::sidecar::Sidecar;

/// Deadline of one call to a sidecar's login endpoints.
const SIDECAR_CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(SIDECAR_CALL_TIMEOUT)
            // Sidecars are addressed directly; a proxy from the environment must not apply.
            .no_proxy()
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default()
    })
}

/// Why a sidecar's login endpoint gave no state. Short and fixed: never upstream text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCallError {
    BadUrl,
    Unreachable,
    Unauthorized,
    BadResponse,
}

impl LoginCallError {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginCallError::BadUrl => "bad_sidecar_url",
            LoginCallError::Unreachable => "unreachable",
            LoginCallError::Unauthorized => "sidecar_refused_token",
            LoginCallError::BadResponse => "bad_response",
        }
    }
}

pub type LoginAnswer = Result<LoginState, LoginCallError>;

/// At most one forced login per instance per cooldown (GATEWAY_LOGIN_COOLDOWN_SEC): each
/// one submits the account's password, and repeated submissions lock accounts.
pub struct LoginCooldown {
    every: Duration,
    last: parking_lot::Mutex<HashMap<Arc<str>, Instant>>,
}

impl LoginCooldown {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Take the turn of `name` at `now`, or say how long until its next one.
    pub fn try_take(&self, name: &Arc<str>, now: Instant) -> Result<(), Duration> {
        let mut last = self.last.lock();
        if let Some(at) = last.get(name) {
            let since = now.saturating_duration_since(*at);
            if since < self.every {
                return Err(self.every - since);
            }
        }
        // Entries whose cooldown is over say nothing any more.
        last.retain(|_, at| now.saturating_duration_since(*at) < self.every);
        last.insert(name.clone(), now);
        Ok(())
    }
}

impl Pool {
    /// Every member's login as its sidecar reports it, asked in parallel, in member order.
    pub async fn login_states(&self) -> Vec<(Arc<str>, LoginAnswer)> {
        let members = self.members();
        let calls = members.iter().map(|s| async move {
            let answer = call(s, reqwest::Method::GET, "/login/status", self.token_for(s)).await;
            (s.name.clone(), answer)
        });
        join_all(calls).await
    }

    /// Ask one sidecar to log in now; its state right after.
    pub async fn start_login(&self, sidecar: &Sidecar) -> LoginAnswer {
        call(
            sidecar,
            reqwest::Method::POST,
            "/login/start",
            self.token_for(sidecar),
        )
        .await
    }
}

async fn call(
    sidecar: &Sidecar,
    method: reqwest::Method,
    path: &str,
    token: Option<String>,
) -> LoginAnswer {
    let base = http_base(&sidecar.endpoint.url).ok_or(LoginCallError::BadUrl)?;
    let mut request = client().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|_| LoginCallError::Unreachable)?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(LoginCallError::Unauthorized);
    }
    if !response.status().is_success() {
        return Err(LoginCallError::BadResponse);
    }
    response
        .json::<LoginState>()
        .await
        .map_err(|_| LoginCallError::BadResponse)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_logins_wait_for_the_cooldown_per_instance() {
        let cooldown = LoginCooldown::new(Duration::from_secs(60));
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("inst-0"), Arc::from("inst-1"));
        let t0 = Instant::now();
        assert_eq!(cooldown.try_take(&a, t0), Ok(()));
        assert_eq!(
            cooldown.try_take(&a, t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert_eq!(cooldown.try_take(&b, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(cooldown.try_take(&a, t0 + Duration::from_secs(60)), Ok(()));
        let none = LoginCooldown::new(Duration::ZERO);
        assert_eq!(none.try_take(&a, t0), Ok(()));
        assert_eq!(none.try_take(&a, t0), Ok(()));
    }

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
}
