//! Failure reasons safe to show to an operator: a fixed vocabulary plus a detail string this
//! crate writes itself. Neither ever carries page text, the username or the password.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a login attempt failed, in the vocabulary the sidecar reports upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The login page showed an error after the credentials were submitted.
    WrongCredentials,
    /// A captcha, slider or MFA / verification-code prompt stands between us and the callback.
    ChallengeRequired,
    /// The callback was not reached before the configured timeout.
    Timeout,
    /// The browser or its driver is missing, failed to start or crashed.
    Unavailable,
    /// The login URL, a page it led to, or the login form is not https on an allowed host
    /// (AUTO_LOGIN_ALLOWED_HOSTS): nothing was typed there.
    DisallowedHost,
}

impl FailureReason {
    /// The reason as a short stable word, e.g. for a status field or a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::WrongCredentials => "WrongCredentials",
            FailureReason::ChallengeRequired => "ChallengeRequired",
            FailureReason::Timeout => "Timeout",
            FailureReason::Unavailable => "Unavailable",
            FailureReason::DisallowedHost => "DisallowedHost",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed login attempt. `Display` is safe to log.
#[derive(Debug, thiserror::Error)]
#[error("browser login failed: {reason}: {detail}")]
pub struct BrowserLoginError {
    reason: FailureReason,
    detail: String,
    screenshot: Option<PathBuf>,
}

impl BrowserLoginError {
    /// `detail` must be text this crate wrote (a step name, a driver status), never page text.
    pub(crate) fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            screenshot: None,
        }
    }

    pub(crate) fn with_screenshot(mut self, path: Option<PathBuf>) -> Self {
        self.screenshot = path;
        self
    }

    /// The short, safe reason.
    pub fn reason(&self) -> FailureReason {
        self.reason
    }

    /// A short description of what was seen, written by this crate (safe to log).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The screenshot of the page at the moment of failure, when one could be taken.
    pub fn screenshot(&self) -> Option<&Path> {
        self.screenshot.as_deref()
    }
}
