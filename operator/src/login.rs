//! Asking a sidecar why it is not logged in or not taking chats (`GET /login/status`,
//! bearer-authenticated).

use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_discovery::names::SIDECAR_PORT;
use mux_protocol::{AccountPause, LoginState};
use serde::Deserialize;

/// A sidecar's answer: its login state and, while its account sits out a rate limit or an
/// exhausted quota, the pause (`{"state":"logged_in","paused":{"reason":"quota_exhausted",
/// "retry_after_ms":120000,"pauses":2}}`). A sidecar that predates pauses sends no `paused`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SidecarLogin {
    #[serde(flatten)]
    pub login: LoginState,
    #[serde(default)]
    pub paused: Option<AccountPause>,
}

impl From<LoginState> for SidecarLogin {
    fn from(login: LoginState) -> Self {
        Self {
            login,
            paused: None,
        }
    }
}

/// Reads a sidecar's login state. A trait so reconciler tests can stand in for the sidecars
/// (pods cannot run here).
pub trait LoginProbe: Send + Sync {
    /// `None` when the sidecar cannot be asked (not started, unreachable, bad answer).
    fn login_status<'a>(
        &'a self,
        pod_ip: IpAddr,
        token: &'a str,
    ) -> BoxFuture<'a, Option<SidecarLogin>>;
}

/// The real probe over HTTP.
pub struct HttpLoginProbe {
    client: reqwest::Client,
    port: u16,
}

impl HttpLoginProbe {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            port: u16::try_from(SIDECAR_PORT).unwrap_or(8318),
        })
    }

    /// For tests against a local server.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

impl LoginProbe for HttpLoginProbe {
    fn login_status<'a>(
        &'a self,
        pod_ip: IpAddr,
        token: &'a str,
    ) -> BoxFuture<'a, Option<SidecarLogin>> {
        Box::pin(async move {
            let url = format!(
                "http://{}/login/status",
                std::net::SocketAddr::new(pod_ip, self.port)
            );
            let response = self.client.get(&url).bearer_auth(token).send().await;
            match response {
                Ok(r) if r.status().is_success() => r.json::<SidecarLogin>().await.ok(),
                Ok(r) => {
                    tracing::debug!(%pod_ip, status = %r.status(), "login status refused");
                    None
                }
                Err(error) => {
                    tracing::debug!(%pod_ip, %error, "login status unreachable");
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use axum::routing::get;
    use mux_protocol::{LoginFailure, PauseReason};

    #[tokio::test]
    async fn reads_the_sidecar_login_status_with_the_token() {
        let app = axum::Router::new().route(
            "/login/status",
            get(|headers: HeaderMap| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0k")
                {
                    (
                        axum::http::StatusCode::OK,
                        r#"{"state":"failed","reason":"QuotaExhausted"}"#,
                    )
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, "")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let probe = HttpLoginProbe::new(Duration::from_secs(2))
            .expect("client")
            .with_port(port);
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(
            probe.login_status(ip, "t0k").await,
            Some(SidecarLogin::from(LoginState::Failed {
                reason: LoginFailure::QuotaExhausted
            }))
        );
        assert_eq!(probe.login_status(ip, "wrong").await, None);
        server.abort();
    }

    #[test]
    fn reads_the_account_pause_next_to_the_login_state() {
        let paused: SidecarLogin = serde_json::from_str(
            r#"{"state":"logged_in","paused":{"reason":"rate_limited","retry_after_ms":1500,"pauses":3}}"#,
        )
        .expect("a paused sidecar's answer parses");
        assert_eq!(paused.login, LoginState::LoggedIn);
        assert_eq!(
            paused.paused,
            Some(AccountPause {
                reason: PauseReason::RateLimited,
                retry_after_ms: 1500,
                pauses: 3
            })
        );
        let failed: SidecarLogin =
            serde_json::from_str(r#"{"state":"failed","reason":"Expired","paused":null}"#)
                .expect("parses");
        assert_eq!(
            failed,
            SidecarLogin::from(LoginState::Failed {
                reason: LoginFailure::Expired
            })
        );
        assert!(
            serde_json::from_str::<SidecarLogin>(r#"{"paused":null}"#).is_err(),
            "no state, no answer"
        );
        // Whoever reads only the LoginState (an older operator, the gateway's login control)
        // is not disturbed by the pause next to it.
        for answer in [
            r#"{"state":"logged_in","paused":{"reason":"rate_limited","retry_after_ms":1,"pauses":1}}"#,
            r#"{"state":"failed","reason":"Expired","paused":{"reason":"rate_limited","retry_after_ms":1,"pauses":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<LoginState>(answer).is_ok(),
                "{answer}"
            );
        }
    }
}
