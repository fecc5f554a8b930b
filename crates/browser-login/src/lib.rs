//! Logs a Lingma account in through a real Chromium, driven over WebDriver by the
//! chromedriver of the same Debian release (`chromium` + `chromium-driver` packages).
//!
//! [`login`] opens the URL that Lingma's `auth/login` returned in a fresh throw-away profile,
//! fills the account form (found by common selectors, in the page or any frame, one page or
//! account-then-password), submits it, and waits until the browser reaches
//! `http://127.0.0.1:<port>/auth/callback?...` (seen in the browser's network log or address
//! bar; Lingma consumes that request itself) or the
//! page shows a captcha/slider, a verification-code prompt or an error.
//!
//! What is tested and what is assumed: the whole flow is tested against local pages built to
//! behave like Alibaba Cloud's (form, error re-render, captcha, MFA, cross-origin iframe,
//! two-step, a callback that redirects onwards, slow page); the selectors for Alibaba's real page are assumptions, since that
//! page is not reachable from here. See `docs/auto-login.md`.
//!
//! The password goes only to https pages on the configured hosts (`allowed_hosts`): the
//! login URL, any page it redirects to, and the frame holding the form are checked, and the
//! attempt ends with [`FailureReason::DisallowedHost`] before anything is typed elsewhere.
//!
//! Nothing here logs the password, the username, a URL or page text: log lines name steps.

mod config;
mod driver;
mod error;
mod flow;
mod host_policy;
mod network_log;
mod probe;
mod screenshot;

pub use config::{BrowserBinaries, BrowserLoginConfig, DEFAULT_SCREENSHOT_KEEP, locate_browser};
pub use driver::BROWSER_ENV;
pub use error::{BrowserLoginError, FailureReason};
pub use flow::{LoginOutcome, login};
pub use host_policy::DEFAULT_ALLOWED_HOSTS;
pub use secrecy::{ExposeSecret, SecretString};
