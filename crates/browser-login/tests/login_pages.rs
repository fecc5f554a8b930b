//! End-to-end: a real Chromium (Debian's `chromium` + `chromium-driver`) against local login
//! pages on 127.0.0.1 built to behave like Alibaba Cloud's account page. Alibaba's real
//! page cannot be reached from here; these pages are what is tested.

mod support;

use std::time::{Duration, Instant};

use browser_login::{ExposeSecret, FailureReason, SecretString, login};
use support::site::{Site, TOKEN, Variant};

const USERNAME: &str = "dev@example.com";
/// Distinctive so a leak into any log line is unmistakable.
const PASSWORD: &str = "Pw-9f3e1c7d-never-log-me";
const STATE: &str = "state-4a5b6c";
/// Generous for a real browser on a busy two-core machine; passing tests take a few seconds.
const ATTEMPT: Duration = Duration::from_secs(45);

fn password() -> SecretString {
    SecretString::from(PASSWORD)
}

/// The password (and the account name) must appear in no log line, while the steps must.
fn assert_logs_clean() {
    let logs = support::logs();
    if std::env::var_os("BROWSER_LOGIN_DUMP_LOGS").is_some() {
        eprintln!("{logs}");
    }
    assert!(
        logs.contains("start browser"),
        "log capture saw nothing; the assertion below would be vacuous"
    );
    assert!(!logs.contains(PASSWORD), "the password reached a log line");
    assert!(
        !logs.contains("wrong-Pw-"),
        "a wrong password reached a log line"
    );
    assert!(
        !logs.contains(USERNAME),
        "the account name reached a log line"
    );
    assert!(
        !logs.contains(TOKEN),
        "the callback token reached a log line"
    );
}

async fn expect_success(variant: Variant) {
    support::capture_logs();
    if !support::browser_installed() {
        return;
    }
    let _slot = support::browser_slot().await;
    let site = Site::start(variant, USERNAME, PASSWORD).await;
    let shots = tempfile::tempdir().expect("screenshot dir");
    let cfg = support::config(shots.path(), ATTEMPT);

    let outcome = login(&cfg, &site.login_url(STATE), USERNAME, &password())
        .await
        .unwrap_or_else(|e| panic!("{variant:?}: login should succeed, got {e}"));

    support::assert_no_browser_left().await;
    assert_eq!(outcome.state.as_deref(), Some(STATE));
    assert!(outcome.callback_url.expose_secret().contains(TOKEN));
    let hits = site.callbacks();
    assert_eq!(hits.len(), 1, "the callback is hit exactly once");
    assert_eq!(hits[0].get("state").map(String::as_str), Some(STATE));
    assert_eq!(hits[0].get("token").map(String::as_str), Some(TOKEN));
    assert_eq!(site.posts(), 1, "credentials are submitted once");
    assert!(
        std::fs::read_dir(shots.path())
            .expect("list screenshot dir")
            .next()
            .is_none(),
        "no failure screenshot on success"
    );
    assert_logs_clean();
}

/// Runs a login that must fail, checks the reason and the screenshot, returns the site.
async fn expect_failure(
    variant: Variant,
    typed_password: &str,
    timeout: Duration,
    reason: FailureReason,
) -> Option<std::sync::Arc<Site>> {
    support::capture_logs();
    if !support::browser_installed() {
        return None;
    }
    let _slot = support::browser_slot().await;
    let site = Site::start(variant, USERNAME, PASSWORD).await;
    let shots = tempfile::tempdir().expect("screenshot dir");
    let cfg = support::config(shots.path(), timeout);

    let started = Instant::now();
    let err = login(
        &cfg,
        &site.login_url(STATE),
        USERNAME,
        &SecretString::from(typed_password),
    )
    .await
    .expect_err("login must fail");
    if std::env::var_os("BROWSER_LOGIN_DUMP_LOGS").is_some() {
        eprintln!("{}\n{err} after {:?}", support::logs(), started.elapsed());
    }

    support::assert_no_browser_left().await;
    assert_eq!(err.reason(), reason, "{variant:?}: {err}");
    assert!(
        started.elapsed() < timeout + Duration::from_secs(20),
        "the attempt overran its timeout: {:?}",
        started.elapsed()
    );
    // A page that never produced a document cannot be photographed (chromedriver waits for
    // it); every other failure must leave a screenshot.
    if reason != FailureReason::Timeout {
        let shot = err.screenshot().expect("a failure screenshot was taken");
        assert!(
            shot.starts_with(shots.path()),
            "screenshot in the configured dir"
        );
        let name = shot
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            name.starts_with("login-failure-") && name.ends_with(".png"),
            "screenshot name: {name}"
        );
        let png = std::fs::read(shot).expect("screenshot file exists");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(shot), 0o600, "the screenshot is owner-only");
        assert_eq!(
            mode(shots.path()),
            0o700,
            "the screenshot dir is owner-only"
        );
    }
    let message = err.to_string();
    assert!(!message.contains(typed_password) && !message.contains("Incorrect account"));
    assert!(site.callbacks().is_empty(), "no callback on failure");
    assert_logs_clean();
    Some(site)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_reaches_the_callback_with_the_state() {
    expect_success(Variant::Form).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_in_a_cross_site_iframe_is_found_and_submitted() {
    expect_success(Variant::Iframe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_step_account_then_password_form_logs_in() {
    expect_success(Variant::TwoStep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_page_that_redirects_onwards_is_still_caught() {
    expect_success(Variant::CallbackRedirectsOnward).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gives_wrong_credentials_and_a_screenshot() {
    let site = expect_failure(
        Variant::Form,
        "wrong-Pw-5d2a",
        ATTEMPT,
        FailureReason::WrongCredentials,
    )
    .await;
    if let Some(site) = site {
        assert_eq!(
            site.posts(),
            1,
            "a rejected password is not submitted again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captcha_instead_of_the_form_gives_challenge_required() {
    let site = expect_failure(
        Variant::CaptchaPage,
        PASSWORD,
        ATTEMPT,
        FailureReason::ChallengeRequired,
    )
    .await;
    if let Some(site) = site {
        assert_eq!(site.posts(), 0, "nothing was submitted to a captcha page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captcha_after_submitting_gives_challenge_required() {
    expect_failure(
        Variant::CaptchaAfterSubmit,
        PASSWORD,
        ATTEMPT,
        FailureReason::ChallengeRequired,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_code_prompt_gives_challenge_required() {
    expect_failure(
        Variant::Mfa,
        PASSWORD,
        ATTEMPT,
        FailureReason::ChallengeRequired,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_never_loads_gives_timeout() {
    let timeout = Duration::from_secs(4);
    let started = Instant::now();
    let site = expect_failure(Variant::Slow, PASSWORD, timeout, FailureReason::Timeout).await;
    if site.is_some() {
        let took = started.elapsed();
        assert!(took >= timeout, "did not wait the full timeout: {took:?}");
        // Browser start is inside the timeout; only the screenshot try and the quit are not.
        assert!(
            took < timeout + Duration::from_secs(10),
            "overran: {took:?}"
        );
    }
}

/// Runs a login against `variant` with only 127.0.0.1 allowed; it must be refused as
/// `DisallowedHost` naming `localhost`, with nothing submitted.
async fn expect_disallowed(variant: Variant) {
    support::capture_logs();
    if !support::browser_installed() {
        return;
    }
    let _slot = support::browser_slot().await;
    let site = Site::start(variant, USERNAME, PASSWORD).await;
    let shots = tempfile::tempdir().expect("screenshot dir");
    let mut cfg = support::config(shots.path(), ATTEMPT);
    cfg.allowed_hosts = vec!["127.0.0.1".into()];

    let err = login(&cfg, &site.login_url(STATE), USERNAME, &password())
        .await
        .expect_err("a page on a host outside the allowlist gets no password");
    support::assert_no_browser_left().await;
    assert_eq!(
        err.reason(),
        FailureReason::DisallowedHost,
        "{variant:?}: {err}"
    );
    assert!(
        err.detail().contains("localhost") && err.detail().contains("AUTO_LOGIN_ALLOWED_HOSTS"),
        "the reason names the host and the setting: {err}"
    );
    assert_eq!(site.posts(), 0, "nothing was submitted");
    assert!(site.callbacks().is_empty());
    assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_host_outside_the_allowlist_is_refused() {
    expect_disallowed(Variant::RedirectsToOtherHost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_in_a_frame_from_a_host_outside_the_allowlist_gets_nothing_typed() {
    expect_disallowed(Variant::Iframe).await;
}

#[tokio::test]
async fn a_login_url_outside_the_allowlist_or_over_http_is_refused_before_any_browser() {
    support::capture_logs();
    let dir = tempfile::tempdir().expect("screenshot dir");
    // The defaults: Alibaba Cloud's hosts, https only. No browser path is needed: the URL
    // is refused before one is looked for.
    let mut cfg = browser_login::BrowserLoginConfig::new(dir.path());
    cfg.chromium_path = Some(dir.path().join("no-such-chromium"));
    for url in [
        "https://login.evil.example/lingma/login?state=x",
        "https://alibabacloud.com.evil.example/login",
        "http://account.alibabacloud.com/login",
        "http://127.0.0.1:9/login?state=x",
    ] {
        let err = login(&cfg, url, USERNAME, &password())
            .await
            .expect_err("refused");
        assert_eq!(err.reason(), FailureReason::DisallowedHost, "{url}: {err}");
        assert!(
            !err.detail().contains("state="),
            "no URL in the detail: {err}"
        );
    }
}

#[tokio::test]
async fn a_missing_browser_gives_unavailable_without_starting_anything() {
    support::capture_logs();
    let dir = tempfile::tempdir().expect("screenshot dir");
    let mut cfg = support::config(dir.path(), ATTEMPT);
    cfg.chromium_path = Some(dir.path().join("no-such-chromium"));
    let err = login(
        &cfg,
        "http://127.0.0.1:9/login?state=x",
        USERNAME,
        &password(),
    )
    .await
    .expect_err("no browser, no login");
    assert_eq!(err.reason(), FailureReason::Unavailable);
    assert!(err.screenshot().is_none());
}

#[tokio::test]
async fn a_login_url_that_is_not_http_is_refused() {
    support::capture_logs();
    let dir = tempfile::tempdir().expect("screenshot dir");
    let cfg = support::config(dir.path(), ATTEMPT);
    let err = login(&cfg, "file:///etc/passwd", USERNAME, &password())
        .await
        .expect_err("only http(s) login URLs");
    assert_eq!(err.reason(), FailureReason::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_attempt_midway_leaves_no_browser_behind() {
    support::capture_logs();
    if !support::browser_installed() {
        return;
    }
    let _slot = support::browser_slot().await;
    let site = Site::start(Variant::Slow, USERNAME, PASSWORD).await;
    let shots = tempfile::tempdir().expect("screenshot dir");
    let cfg = support::config(shots.path(), ATTEMPT);
    let url = site.login_url(STATE);
    let pw = password();
    let attempt = login(&cfg, &url, USERNAME, &pw);
    // The caller gives up (its own deadline) while the page is still loading.
    let cut = tokio::time::timeout(Duration::from_secs(3), attempt).await;
    assert!(cut.is_err(), "the slow page cannot have finished");
    support::assert_no_browser_left().await;
}

/// Chromium exiting while it starts (seen on a busy two-core machine: "Chrome instance
/// exited") costs one more start, not the attempt: a wrapper that fails its first launch
/// stands in for that, and the login still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_exits_while_starting_is_started_once_more() {
    use std::os::unix::fs::PermissionsExt;
    support::capture_logs();
    if !support::browser_installed() {
        return;
    }
    let _slot = support::browser_slot().await;
    let real = browser_login::locate_browser(&browser_login::BrowserLoginConfig::new(
        std::env::temp_dir(),
    ))
    .expect("installed")
    .chromium;
    let dir = tempfile::tempdir().expect("wrapper dir");
    let marker = dir.path().join("failed-once");
    let wrapper = dir.path().join("chromium-fails-once");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ ! -e '{m}' ]; then : > '{m}'; exit 1; fi\nexec '{r}' \"$@\"\n",
            m = marker.display(),
            r = real.display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");

    let site = Site::start(Variant::Form, USERNAME, PASSWORD).await;
    let shots = tempfile::tempdir().expect("screenshot dir");
    let mut cfg = support::config(shots.path(), ATTEMPT);
    cfg.chromium_path = Some(wrapper);
    let outcome = login(&cfg, &site.login_url(STATE), USERNAME, &password())
        .await
        .unwrap_or_else(|e| panic!("login should succeed on the second start, got {e}"));
    assert!(marker.exists(), "the first start did fail");
    assert!(outcome.callback_url.expose_secret().contains(TOKEN));
    assert_eq!(site.posts(), 1, "credentials are submitted once");
    support::assert_no_browser_left().await;
    assert!(
        support::logs().contains("chromium did not start; trying once more"),
        "the retry is logged"
    );
    assert_logs_clean();
}
