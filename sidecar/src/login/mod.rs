//! Keeping Lingma logged in.
//!
//! A watcher runs for each live connection: it checks `auth/status` at once, then every
//! interval (and on demand), and when Lingma is logged out it runs the login flow with a
//! timeout and a retry limit. The flow itself is a [`LoginDriver`].
//!
//! **Which part is real.** Real Lingma's `auth/login` returns a URL on
//! `lingma.alibabacloud.com` that needs a browser and an Alibaba Cloud account login
//! (lingma-protocol.md section 5); [`BrowserLoginDriver`] runs that flow in headless
//! Chromium (`browser-login` crate), and [`AutoLoginDriver`] picks per URL (AUTO_LOGIN_DRIVER). The implementation here, [`LoopbackLoginDriver`],
//! follows a login URL that points at Lingma's own loopback HTTP port with plain HTTP: a
//! GET of the callback (the simulator's `--login-mode callback`), or a simple HTML form
//! posted with the account (the simulator's `--login-mode form`). That is the part that
//! can be tested on this machine. Against real Lingma it reports the login as failed
//! (`Unavailable`, "needs a browser") instead of pretending.

mod browser;
mod loopback;

pub use browser::{AutoLoginDriver, BrowserLoginDriver};
pub use loopback::LoopbackLoginDriver;

use crate::accounts::Account;
use crate::state::SidecarState;
use futures_util::future::BoxFuture;
use lingma_protocol::LingmaClient;
use lingma_protocol::wire::{ModelEntry, QueryModelsResult};
use mux_protocol::{LoginFailure, LoginState, ModelInfo};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Why one login attempt failed. Short and safe: never upstream text, never a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("login needs a browser, which this driver does not run")]
    BrowserRequired,
    #[error("the login browser is missing or failed")]
    BrowserUnavailable,
    #[error("the login page is not https on AUTO_LOGIN_ALLOWED_HOSTS; nothing was typed")]
    DisallowedLoginHost,
    #[error("Lingma gave no login URL")]
    NoLoginUrl,
    #[error("the login callback was refused")]
    CallbackRefused,
    #[error("the login page asks for a challenge (captcha, MFA)")]
    ChallengeRequired,
    #[error("the credentials were refused")]
    WrongCredentials,
    #[error("no account is configured")]
    NoAccount,
    #[error("Lingma did not answer a login call")]
    Rpc,
    #[error("the login did not complete in time")]
    Timeout,
}

impl LoginError {
    pub fn failure(self) -> LoginFailure {
        match self {
            LoginError::BrowserRequired
            | LoginError::BrowserUnavailable
            | LoginError::DisallowedLoginHost
            | LoginError::NoLoginUrl
            | LoginError::CallbackRefused
            | LoginError::Rpc => LoginFailure::Unavailable,
            LoginError::ChallengeRequired => LoginFailure::ChallengeRequired,
            LoginError::WrongCredentials => LoginFailure::WrongCredentials,
            LoginError::NoAccount => LoginFailure::NoAccount,
            LoginError::Timeout => LoginFailure::Timeout,
        }
    }
}

/// One way of logging Lingma in. The caller bounds the whole attempt with
/// AUTO_LOGIN_TIMEOUT and checks `auth/status` afterwards.
pub trait LoginDriver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether the flow types the account's credentials somewhere.
    fn needs_account(&self) -> bool;
    fn login<'a>(
        &'a self,
        client: &'a LingmaClient,
        account: Option<&'a Account>,
    ) -> BoxFuture<'a, Result<(), LoginError>>;
}

/// Login settings.
#[derive(Clone)]
pub struct LoginSettings {
    pub auto_login: bool,
    pub attempt_timeout: Duration,
    pub max_retry: u32,
    pub check_interval: Duration,
    pub account: Option<Account>,
    pub driver: Arc<dyn LoginDriver>,
}

/// Keep the login of this connection's Lingma in check until the connection ends.
pub async fn watch(state: Arc<SidecarState>, client: LingmaClient, settings: LoginSettings) {
    let mut known_logged_in = false;
    loop {
        let forced = state.login_forced.swap(false, Ordering::Relaxed);
        match check(&state, &client, &settings, forced, &mut known_logged_in).await {
            Ok(()) => {}
            Err(Stop) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.check_interval) => {}
            _ = state.login_check.notified() => {}
            _ = client.closed() => return,
        }
    }
}

struct Stop;

async fn check(
    state: &SidecarState,
    client: &LingmaClient,
    settings: &LoginSettings,
    forced: bool,
    known_logged_in: &mut bool,
) -> Result<(), Stop> {
    let status = match client.auth_status().await {
        Ok(s) => s,
        Err(_) if client.is_closed() => return Err(Stop),
        Err(e) => {
            tracing::warn!(error = %crate::chat::classify_client_error(&e).message, "auth/status failed");
            return Ok(());
        }
    };
    if status.logged_in() {
        if !*known_logged_in || state.health().login != LoginState::LoggedIn {
            logged_in(state, client).await;
        }
        *known_logged_in = true;
        return Ok(());
    }
    let was_logged_in = std::mem::replace(known_logged_in, false);
    if was_logged_in {
        tracing::warn!("Lingma login expired");
    }
    state.set_models(Vec::new());
    let current = state.health().login;
    let gave_up = matches!(current, LoginState::Failed { .. });
    if !(forced || (settings.auto_login && !gave_up)) {
        state.set_login(if was_logged_in {
            LoginState::Failed {
                reason: LoginFailure::Expired,
            }
        } else if gave_up {
            current
        } else {
            LoginState::LoggedOut
        });
        return Ok(());
    }
    if settings.driver.needs_account() && settings.account.is_none() {
        state.set_login(LoginState::Failed {
            reason: LoginFailure::NoAccount,
        });
        return Ok(());
    }
    match log_in(state, client, settings).await {
        Ok(()) => {
            *known_logged_in = true;
            logged_in(state, client).await;
        }
        Err(e) => {
            tracing::warn!(reason = %e, "login failed; giving up until asked again");
            state.set_login(LoginState::Failed {
                reason: e.failure(),
            });
        }
    }
    Ok(())
}

/// Run the driver up to 1 + max_retry times; each attempt is bounded and succeeds only
/// when `auth/status` says logged in.
async fn log_in(
    state: &SidecarState,
    client: &LingmaClient,
    settings: &LoginSettings,
) -> Result<(), LoginError> {
    let mut last = LoginError::Timeout;
    for attempt in 0..=settings.max_retry {
        if client.is_closed() {
            return Err(LoginError::Rpc);
        }
        state.set_login(LoginState::LoggingIn);
        tracing::info!(
            driver = settings.driver.name(),
            attempt = attempt + 1,
            "logging in"
        );
        let result = tokio::time::timeout(settings.attempt_timeout, async {
            settings
                .driver
                .login(client, settings.account.as_ref())
                .await?;
            wait_logged_in(client).await
        })
        .await
        .unwrap_or(Err(LoginError::Timeout));
        match result {
            Ok(()) => {
                state
                    .metrics
                    .login_attempts
                    .with_label_values(&["ok"])
                    .inc();
                tracing::info!("logged in");
                return Ok(());
            }
            Err(e) => {
                state
                    .metrics
                    .login_attempts
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(reason = %e, attempt = attempt + 1, "login attempt failed");
                last = e;
                if matches!(e, LoginError::BrowserRequired | LoginError::NoAccount) {
                    break;
                }
                if attempt < settings.max_retry {
                    tokio::time::sleep(Duration::from_millis(500 * (1 << attempt.min(6)))).await;
                }
            }
        }
    }
    Err(last)
}

/// Poll `auth/status` until it reports logged in (the driver's caller bounds the wait).
async fn wait_logged_in(client: &LingmaClient) -> Result<(), LoginError> {
    loop {
        match client.auth_status().await {
            Ok(s) if s.logged_in() => return Ok(()),
            Ok(_) => {}
            Err(_) if client.is_closed() => return Err(LoginError::Rpc),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn logged_in(state: &SidecarState, client: &LingmaClient) {
    match client.query_models().await {
        Ok(models) => state.set_models(model_list(&models)),
        Err(e) => {
            tracing::warn!(error = %crate::chat::classify_client_error(&e).message, "config/queryModels failed")
        }
    }
    state.set_login(LoginState::LoggedIn);
}

/// Models of all scenes, `chat` first, each key once.
pub fn model_list(result: &QueryModelsResult) -> Vec<ModelInfo> {
    let mut scenes: Vec<(&String, &Vec<ModelEntry>)> = result.iter().collect();
    scenes.sort_by_key(|(scene, _)| scene.as_str() != "chat");
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (_, entries) in scenes {
        for e in entries {
            if !e.key.is_empty() && seen.insert(e.key.clone()) {
                out.push(ModelInfo {
                    id: e.key.clone(),
                    display_name: if e.display_name.is_empty() {
                        e.key.clone()
                    } else {
                        e.display_name.clone()
                    },
                    is_reasoning: e.is_reasoning,
                    is_vl: e.is_vl,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_deduplicated_chat_first() {
        let entry = |k: &str| ModelEntry {
            key: k.into(),
            display_name: String::new(),
            ..Default::default()
        };
        let mut r = QueryModelsResult::new();
        r.insert("assistant".into(), vec![entry("b"), entry("a")]);
        r.insert("chat".into(), vec![entry("a"), entry("c")]);
        let ids: Vec<String> = model_list(&r).into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["a", "c", "b"]);
    }
}
