//! The login loop: open the login URL, fill the account form when it shows up (one page or
//! account-then-password in two steps), submit, and watch until the browser reaches
//! Lingma's `/auth/callback` on loopback or the page shows a challenge or an error.

use std::time::Duration;

use fantoccini::Client;
use fantoccini::Locator;
use fantoccini::error::CmdError;
use fantoccini::key::Key;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::config::{BrowserLoginConfig, locate_browser};
use crate::driver::BrowserSession;
use crate::error::{BrowserLoginError, FailureReason};
use crate::host_policy::HostPolicy;
use crate::network_log;
use crate::probe::{PageScan, enter_frame_path, is_fatal, scan_page};
use crate::screenshot;

/// How often the page is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Budget for the failure screenshot, on top of the login timeout.
const SCREENSHOT_BUDGET: Duration = Duration::from_secs(10);
/// After a timeout chromedriver is usually stuck on a navigation that never got a document,
/// and queues the screenshot behind it: try briefly, then give up on the picture.
const SCREENSHOT_BUDGET_AFTER_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive failed looks at the page after which the browser is taken for dead.
const MAX_CONSECUTIVE_ERRORS: u32 = 40;

/// A login that reached the callback.
#[derive(Debug)]
pub struct LoginOutcome {
    /// The callback URL the browser loaded. It carries Lingma's auth token: secret. Lingma in
    /// the same pod already consumed it when the browser loaded it; a caller whose browser
    /// runs elsewhere can GET it on Lingma's loopback instead.
    pub callback_url: SecretString,
    /// The `state` query parameter of the callback, to compare with the login URL's.
    pub state: Option<String>,
    /// How long the attempt took, browser start included.
    pub elapsed: Duration,
}

/// Where the attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No credentials typed yet.
    Start,
    /// The account name was submitted on its own (a two-step form); waiting for the password.
    AccountSubmitted,
    /// Password submitted; waiting for the callback or a verdict.
    CredentialsSubmitted,
}

/// Logs in through a fresh headless Chromium: see the crate docs. On failure a screenshot is
/// written to `cfg.screenshot_dir` when the browser was up, and its path is in the error.
pub async fn login(
    cfg: &BrowserLoginConfig,
    login_url: &str,
    username: &str,
    password: &SecretString,
) -> Result<LoginOutcome, BrowserLoginError> {
    let started = Instant::now();
    let deadline = started + cfg.timeout;
    let policy = HostPolicy::new(&cfg.allowed_hosts, cfg.allow_http_loopback);
    policy.check(&check_login_url(login_url)?, "the login URL")?;
    let binaries = locate_browser(cfg)?;
    tracing::info!(
        step = "start browser",
        headless = cfg.headless,
        "browser login"
    );
    let session = BrowserSession::start(cfg, &binaries, deadline).await?;

    let result = drive(
        &session.client,
        policy,
        login_url,
        Credentials { username, password },
        deadline,
    )
    .await;
    let result = match result {
        Ok(callback) => Ok(LoginOutcome {
            state: query_param(&callback, "state"),
            callback_url: SecretString::from(callback),
            elapsed: started.elapsed(),
        }),
        Err(e) => {
            let budget = if e.reason() == FailureReason::Timeout {
                SCREENSHOT_BUDGET_AFTER_TIMEOUT
            } else {
                SCREENSHOT_BUDGET
            };
            let shot = take_screenshot(&session.client, cfg, budget).await;
            Err(e.with_screenshot(shot))
        }
    };
    session.close().await;
    match &result {
        Ok(outcome) => tracing::info!(
            step = "done",
            elapsed_ms = outcome.elapsed.as_millis() as u64,
            "browser login reached the callback"
        ),
        Err(e) => tracing::warn!(
            step = "done",
            reason = e.reason().as_str(),
            detail = e.detail(),
            screenshot = e.screenshot().map(|p| p.display().to_string()),
            "browser login failed"
        ),
    }
    result
}

/// Why one step did not complete: the page was in flux (retry on the next poll) or the
/// attempt is over.
enum StepError {
    Transient(&'static str),
    Fail(BrowserLoginError),
}

impl From<BrowserLoginError> for StepError {
    fn from(e: BrowserLoginError) -> Self {
        StepError::Fail(e)
    }
}

/// What is typed, and only into pages [`HostPolicy`] accepts.
#[derive(Clone, Copy)]
struct Credentials<'a> {
    username: &'a str,
    password: &'a SecretString,
}

async fn drive(
    client: &Client,
    policy: HostPolicy<'_>,
    login_url: &str,
    credentials: Credentials<'_>,
    deadline: Instant,
) -> Result<String, BrowserLoginError> {
    tracing::info!(step = "open login page", "browser login");
    let mut phase = Phase::Start;
    match run(deadline, client.goto(login_url)).await {
        Ok(()) => {}
        Err(StepError::Fail(e)) => return Err(finish_timeout(e, phase)),
        Err(StepError::Transient(kind)) => {
            return Err(BrowserLoginError::new(
                FailureReason::Unavailable,
                format!("the browser refused the login URL: {kind}"),
            ));
        }
    }

    let mut consecutive_errors = 0;
    loop {
        if Instant::now() >= deadline {
            return Err(BrowserLoginError::new(
                FailureReason::Timeout,
                timeout_detail(phase),
            ));
        }
        let step = match look(client, policy, phase, deadline).await {
            Ok(Look::Callback(url)) => return Ok(url),
            Ok(Look::Page(scan)) => act(client, policy, &scan, phase, credentials, deadline).await,
            Err(e) => Err(e),
        };
        match step {
            Ok(next) => {
                consecutive_errors = 0;
                phase = next;
            }
            Err(StepError::Fail(e)) => return Err(finish_timeout(e, phase)),
            Err(StepError::Transient(kind)) => {
                consecutive_errors += 1;
                tracing::debug!(step = "look at page", kind, "transient browser error");
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(BrowserLoginError::new(
                        FailureReason::Unavailable,
                        "the browser stopped answering",
                    ));
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A deadline hit inside a command gets the same phase-specific detail as one hit between
/// polls.
fn finish_timeout(e: BrowserLoginError, phase: Phase) -> BrowserLoginError {
    if e.reason() == FailureReason::Timeout {
        BrowserLoginError::new(FailureReason::Timeout, timeout_detail(phase))
    } else {
        e
    }
}

fn timeout_detail(phase: Phase) -> &'static str {
    match phase {
        Phase::Start => "no login form and no callback before the timeout",
        Phase::AccountSubmitted => "no password field after submitting the account name",
        Phase::CredentialsSubmitted => "no callback and no verdict after submitting",
    }
}

enum Look {
    Callback(String),
    Page(PageScan),
}

async fn look(
    client: &Client,
    policy: HostPolicy<'_>,
    phase: Phase,
    deadline: Instant,
) -> Result<Look, StepError> {
    // The network log first: it also sees a callback the browser has already left.
    match run(deadline, network_log::find_request(client, is_callback)).await {
        Ok(Some(url)) => {
            tracing::info!(step = "callback requested", "browser login");
            return Ok(Look::Callback(url));
        }
        Ok(None) => {}
        Err(StepError::Fail(e)) => return Err(StepError::Fail(e)),
        // Without the log the address bar below still catches a callback page that stays.
        Err(StepError::Transient(kind)) => {
            tracing::debug!(step = "read network log", kind, "not available")
        }
    }
    let url = run(deadline, client.current_url()).await?;
    if is_callback(&url) {
        tracing::info!(step = "callback reached", "browser login");
        return Ok(Look::Callback(url.to_string()));
    }
    // Until the password is submitted, every page the login leads to must be allowed: a
    // redirect elsewhere ends the attempt before anything is typed there. (about:blank and
    // Chromium's error page have no document to type into; the form's own origin is checked
    // in `act` in any case.)
    if phase != Phase::CredentialsSubmitted && matches!(url.scheme(), "http" | "https") {
        policy.check(&url, "a page the login led to")?;
    }
    Ok(Look::Page(run(deadline, scan_page(client)).await?))
}

/// Lingma's callback: `/auth/callback` on a loopback host (any port: it is Lingma's
/// `--httpPort`, which only the login URL knows).
fn is_callback(url: &url::Url) -> bool {
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]")
    );
    loopback && url.scheme() == "http" && url.path() == "/auth/callback"
}

/// Decides the next step from what the page shows. Before submitting, a visible form wins
/// over challenge markers (a slider shown next to the form is only decisive once submitting
/// did not get through); after submitting, a challenge wins over an error message (Alibaba
/// shows "please slide to verify" as an error).
async fn act(
    client: &Client,
    policy: HostPolicy<'_>,
    scan: &PageScan,
    phase: Phase,
    credentials: Credentials<'_>,
    deadline: Instant,
) -> Result<Phase, StepError> {
    let Credentials { username, password } = credentials;
    if phase == Phase::CredentialsSubmitted {
        return if scan.captcha {
            Err(challenge("captcha or slider shown after submitting").into())
        } else if scan.mfa {
            Err(challenge("verification code requested after submitting").into())
        } else if scan.error {
            Err(BrowserLoginError::new(
                FailureReason::WrongCredentials,
                "the login page showed an error after submitting",
            )
            .into())
        } else {
            Ok(phase)
        };
    }
    let Some(frame) = scan.form_frame.as_deref() else {
        return if scan.captcha {
            Err(challenge("captcha or slider shown instead of the login form").into())
        } else if scan.mfa {
            Err(challenge("verification code requested").into())
        } else {
            Ok(phase)
        };
    };
    if phase == Phase::AccountSubmitted && scan.error && !scan.pass {
        return Err(BrowserLoginError::new(
            FailureReason::WrongCredentials,
            "the login page showed an error after the account name",
        )
        .into());
    }
    check_form_targets(policy, scan)?;
    let in_frame = !frame.is_empty();
    run(deadline, enter_frame_path(client, frame)).await?;
    if scan.pass {
        if scan.user {
            tracing::info!(step = "fill account", in_frame, "browser login");
            run(deadline, fill(client, "user", username)).await?;
        }
        tracing::info!(step = "fill password", in_frame, "browser login");
        run(deadline, fill(client, "pass", password.expose_secret())).await?;
        tracing::info!(step = "submit credentials", "browser login");
        run(deadline, submit(client, scan.submit, "pass")).await?;
        Ok(Phase::CredentialsSubmitted)
    } else if phase == Phase::Start {
        tracing::info!(step = "fill account", in_frame, "browser login");
        run(deadline, fill(client, "user", username)).await?;
        tracing::info!(step = "submit account", "browser login");
        run(deadline, submit(client, scan.submit, "user")).await?;
        Ok(Phase::AccountSubmitted)
    } else {
        Ok(phase)
    }
}

/// The frame holding the form, and where the form posts, must both be allowed before a
/// key is typed (a cross-origin frame can sit inside an allowed page).
fn check_form_targets(policy: HostPolicy<'_>, scan: &PageScan) -> Result<(), BrowserLoginError> {
    policy.check_origin(
        scan.form_origin.as_deref().unwrap_or("null"),
        "the login form",
    )?;
    if let Some(action) = &scan.form_action_origin {
        policy.check_origin(action, "the login form's target")?;
    }
    Ok(())
}

fn challenge(detail: &'static str) -> BrowserLoginError {
    BrowserLoginError::new(FailureReason::ChallengeRequired, detail)
}

async fn fill(client: &Client, role: &str, text: &str) -> Result<(), CmdError> {
    let field = client.find(Locator::Css(&tagged(role))).await?;
    field.clear().await?;
    field.send_keys(text).await
}

/// Clicks the form's button, or presses Enter in the field when there is none or the click
/// is intercepted (an overlay, an animation).
async fn submit(client: &Client, has_button: bool, field_role: &str) -> Result<(), CmdError> {
    if has_button {
        let button = client.find(Locator::Css(&tagged("submit"))).await?;
        match button.click().await {
            Ok(()) => return Ok(()),
            Err(e) if is_fatal(&e) => return Err(e),
            Err(_) => tracing::debug!(step = "submit", "button click failed; pressing Enter"),
        }
    }
    let field = client.find(Locator::Css(&tagged(field_role))).await?;
    field.send_keys(&char::from(Key::Enter).to_string()).await
}

fn tagged(role: &str) -> String {
    format!("[data-browser-login=\"{role}\"]")
}

/// Runs one WebDriver command under the attempt's deadline. A dead browser ends the attempt;
/// any other command error is the page in flux and is retried on the next poll. Only the
/// error's kind is kept: WebDriver messages can quote page content.
async fn run<T>(
    deadline: Instant,
    command: impl std::future::Future<Output = Result<T, CmdError>>,
) -> Result<T, StepError> {
    match tokio::time::timeout_at(deadline, command).await {
        Err(_) => Err(StepError::Fail(BrowserLoginError::new(
            FailureReason::Timeout,
            "deadline",
        ))),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if is_fatal(&e) => Err(StepError::Fail(BrowserLoginError::new(
            FailureReason::Unavailable,
            format!("the browser is gone ({})", command_error_kind(&e)),
        ))),
        Ok(Err(e)) => Err(StepError::Transient(command_error_kind(&e))),
    }
}

fn command_error_kind(e: &CmdError) -> &'static str {
    match e {
        CmdError::Standard(w) => w.error.description(),
        CmdError::Lost(_) => "connection to chromedriver lost",
        CmdError::Failed(_) | CmdError::FailedC(_) => "request to chromedriver failed",
        CmdError::NotW3C(_) | CmdError::NotJson(_) | CmdError::Json(_) => {
            "unexpected chromedriver reply"
        }
        CmdError::BadUrl(_) => "bad URL",
        _ => "webdriver error",
    }
}

async fn take_screenshot(
    client: &Client,
    cfg: &BrowserLoginConfig,
    budget: Duration,
) -> Option<std::path::PathBuf> {
    if cfg.screenshot_keep == 0 {
        return None;
    }
    let png = match tokio::time::timeout(budget, client.screenshot()).await {
        Ok(Ok(png)) => png,
        _ => {
            tracing::warn!(step = "screenshot", "could not take a failure screenshot");
            return None;
        }
    };
    match screenshot::save(&cfg.screenshot_dir, &png, cfg.screenshot_keep).await {
        Ok(path) => Some(path),
        Err(e) => {
            tracing::warn!(step = "screenshot", error = %e, dir = %cfg.screenshot_dir.display(), "could not save the failure screenshot");
            None
        }
    }
}

fn check_login_url(login_url: &str) -> Result<url::Url, BrowserLoginError> {
    url::Url::parse(login_url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| {
            BrowserLoginError::new(
                FailureReason::Unavailable,
                "the login URL is not an absolute http(s) URL",
            )
        })
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
