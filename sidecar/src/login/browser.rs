//! The login driver for real Lingma: the URL from `auth/login` is opened in a fresh headless
//! Chromium (the `browser-login` crate), the account is typed into the login page, and the
//! browser's visit to Lingma's loopback `/auth/callback` logs Lingma in, provided every page
//! on the way is https on AUTO_LOGIN_ALLOWED_HOSTS. Screenshots of a failed attempt go to
//! `<workDir>/login-screenshots` (0700, files 0600, the newest AUTO_LOGIN_SCREENSHOT_KEEP
//! kept). Neither the password nor the URL is logged.

use super::loopback::LoopbackLoginDriver;
use super::{LoginDriver, LoginError};
use crate::accounts::Account;
use crate::config::Config;
use browser_login::{BrowserLoginConfig, FailureReason, SecretString};
use futures_util::future::BoxFuture;
use lingma_protocol::wire::login_url_from_result;
use lingma_protocol::{LingmaClient, methods};
use std::path::PathBuf;
use std::time::Duration;

/// Left of AUTO_LOGIN_TIMEOUT for `auth/login`, the failure screenshot and the final
/// `auth/status` check, so the browser's own deadline fires before the watcher's.
const OUTER_MARGIN: Duration = Duration::from_secs(15);

pub struct BrowserLoginDriver {
    config: BrowserLoginConfig,
}

impl BrowserLoginDriver {
    /// The driver the settings describe (AUTO_LOGIN_*).
    pub fn from_config(config: &Config) -> Self {
        let mut driver = Self::new(
            config.auto_login_headless,
            config.login_timeout(),
            config.login_screenshot_dir(),
        );
        driver.config.allowed_hosts = config.login_allowed_hosts();
        driver.config.allow_http_loopback = config.auto_login_allow_http_loopback;
        driver.config.screenshot_keep = config.auto_login_screenshot_keep;
        driver
    }

    pub fn new(headless: bool, attempt_timeout: Duration, screenshot_dir: PathBuf) -> Self {
        let mut config = BrowserLoginConfig::new(screenshot_dir);
        config.headless = headless;
        config.timeout = attempt_timeout
            .checked_sub(OUTER_MARGIN)
            .filter(|t| *t >= attempt_timeout / 2)
            .unwrap_or(attempt_timeout / 2);
        Self { config }
    }

    async fn login_once(
        &self,
        client: &LingmaClient,
        account: Option<&Account>,
    ) -> Result<(), LoginError> {
        let account = account.ok_or(LoginError::NoAccount)?;
        let result: serde_json::Value = client
            .call(methods::AUTH_LOGIN, &serde_json::json!({}))
            .await
            .map_err(|_| LoginError::Rpc)?;
        let url = login_url_from_result(&result).ok_or(LoginError::NoLoginUrl)?;
        let password = SecretString::from(account.password.clone());
        match browser_login::login(&self.config, &url, &account.username, &password).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // `detail` and the screenshot path are written by browser-login: safe to log.
                tracing::warn!(
                    reason = e.reason().as_str(),
                    detail = e.detail(),
                    screenshot = e.screenshot().map(|p| p.display().to_string()),
                    "browser login attempt failed"
                );
                Err(login_error(e.reason()))
            }
        }
    }
}

fn login_error(reason: FailureReason) -> LoginError {
    match reason {
        FailureReason::WrongCredentials => LoginError::WrongCredentials,
        FailureReason::ChallengeRequired => LoginError::ChallengeRequired,
        FailureReason::Timeout => LoginError::Timeout,
        FailureReason::Unavailable => LoginError::BrowserUnavailable,
        FailureReason::DisallowedHost => LoginError::DisallowedLoginHost,
    }
}

impl LoginDriver for BrowserLoginDriver {
    fn name(&self) -> &'static str {
        "browser"
    }

    fn needs_account(&self) -> bool {
        true
    }

    fn login<'a>(
        &'a self,
        client: &'a LingmaClient,
        account: Option<&'a Account>,
    ) -> BoxFuture<'a, Result<(), LoginError>> {
        Box::pin(self.login_once(client, account))
    }
}

/// AUTO_LOGIN_DRIVER=auto: the loopback driver for login URLs on 127.0.0.1/localhost (the
/// simulator; no browser needed), the browser for the rest (it reports `BrowserRequired`
/// for those before doing anything, and the browser asks `auth/login` again).
pub struct AutoLoginDriver {
    loopback: LoopbackLoginDriver,
    browser: BrowserLoginDriver,
}

impl AutoLoginDriver {
    pub fn new(loopback: LoopbackLoginDriver, browser: BrowserLoginDriver) -> Self {
        Self { loopback, browser }
    }
}

impl LoginDriver for AutoLoginDriver {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn needs_account(&self) -> bool {
        // The simulator's callback mode needs none; the others fail with NoAccount.
        false
    }

    fn login<'a>(
        &'a self,
        client: &'a LingmaClient,
        account: Option<&'a Account>,
    ) -> BoxFuture<'a, Result<(), LoginError>> {
        Box::pin(async move {
            match self.loopback.login(client, account).await {
                Err(LoginError::BrowserRequired) => {
                    tracing::info!("login URL is not on loopback: using the browser");
                    self.browser.login_once(client, account).await
                }
                other => other,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_deadline_leaves_room_for_the_watcher() {
        let d = BrowserLoginDriver::new(true, Duration::from_secs(180), PathBuf::from("/tmp"));
        assert_eq!(d.config.timeout, Duration::from_secs(165));
        let d = BrowserLoginDriver::new(true, Duration::from_secs(10), PathBuf::from("/tmp"));
        assert_eq!(d.config.timeout, Duration::from_secs(5));
    }

    #[test]
    fn reasons_map_to_the_sidecar_vocabulary() {
        use mux_protocol::LoginFailure;
        assert_eq!(
            login_error(FailureReason::WrongCredentials).failure(),
            LoginFailure::WrongCredentials
        );
        assert_eq!(
            login_error(FailureReason::ChallengeRequired).failure(),
            LoginFailure::ChallengeRequired
        );
        assert_eq!(
            login_error(FailureReason::Timeout).failure(),
            LoginFailure::Timeout
        );
        assert_eq!(
            login_error(FailureReason::Unavailable).failure(),
            LoginFailure::Unavailable
        );
        assert_eq!(
            login_error(FailureReason::DisallowedHost).failure(),
            LoginFailure::Unavailable
        );
    }
}
