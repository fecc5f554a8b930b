//! The two library crates wired into the sidecar: `sidecar bootstrap` (lingma-bootstrap) and
//! the browser login driver (browser-login) against the simulator's form login.

mod common;

use common::*;
use std::time::Duration;
use test_support::{binary, free_port};

const USERNAME: &str = "browser-dev@example.com";
const PASSWORD: &str = "Pw-b7e2-browser-never-log";
/// A headless Chromium start plus a login on a machine shared with other builds.
const BROWSER_WAIT: Duration = Duration::from_secs(90);

/// Run `sidecar bootstrap` with only `envs` (plus PATH), bounded in time.
async fn run_bootstrap(envs: &[(&str, String)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(binary("sidecar", "sidecar"));
    cmd.arg("bootstrap")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOG_LEVEL", "info")
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("sidecar bootstrap finishes in time")
        .expect("run sidecar bootstrap")
}

#[tokio::test]
async fn bootstrap_prints_the_explicit_binary_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = binary("lingma-sim", "lingma-sim");
    let out = run_bootstrap(&[
        ("LINGMA_SOURCE_TYPE", "image".into()),
        ("LINGMA_BIN", sim.display().to_string()),
        ("LINGMA_WORK_DIR", dir.path().display().to_string()),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is the installed binary as JSON");
    assert_eq!(json["lingma"], sim.display().to_string(), "{json}");
    assert_eq!(json["origin"], "explicit_path", "{json}");
    assert_eq!(json["sha256"].as_str().map(str::len), Some(64), "{json}");
}

#[tokio::test]
async fn bootstrap_with_empty_lingma_bin_and_unreachable_vsix_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port(); // nothing listens there
    let out = run_bootstrap(&[
        ("LINGMA_BIN", String::new()),
        ("LINGMA_SOURCE_TYPE", "vsix".into()),
        (
            "LINGMA_VSIX_URL",
            format!("http://127.0.0.1:{port}/lingma.vsix"),
        ),
        ("LINGMA_DOWNLOAD_CONNECT_TIMEOUT_SEC", "3".into()),
        // Plain http on 127.0.0.1: the test opt-out (downloads are https only otherwise).
        ("LINGMA_DOWNLOAD_ALLOW_HTTP_LOOPBACK", "true".into()),
        ("LINGMA_WORK_DIR", dir.path().display().to_string()),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    assert!(
        stderr.contains("sidecar bootstrap: download of")
            && stderr.contains(&format!("127.0.0.1:{port}")),
        "unclear failure message: {stderr}"
    );
}

/// Same policy as crates/browser-login's tests: without Chromium and chromedriver the test
/// fails when `CI` is set and is skipped with a notice otherwise.
fn browser_installed() -> bool {
    let cfg = browser_login::BrowserLoginConfig::new(std::env::temp_dir());
    match browser_login::locate_browser(&cfg) {
        Ok(_) => true,
        Err(e) => {
            let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
            assert!(
                !ci,
                "CI is set but the login browser is missing: {e}. \
                 Install the Debian packages `chromium` and `chromium-driver`."
            );
            eprintln!("SKIPPED (no browser installed here): {e}");
            false
        }
    }
}

#[tokio::test]
async fn browser_driver_logs_the_simulator_in_through_its_form() {
    if !browser_installed() {
        return;
    }
    let sim = form_login_sim(USERNAME, PASSWORD).await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_USERNAME", USERNAME.into()));
    env.push(("LINGMA_PASSWORD", PASSWORD.into()));
    env.push(("AUTO_LOGIN_DRIVER", "browser".into()));
    // The simulator's form is plain http on 127.0.0.1: allowed explicitly, as for tests.
    env.push(("AUTO_LOGIN_ALLOWED_HOSTS", "127.0.0.1".into()));
    env.push(("AUTO_LOGIN_ALLOW_HTTP_LOOPBACK", "true".into()));
    env.push(("AUTO_LOGIN_TIMEOUT", "80".into()));
    env.push(("AUTO_LOGIN_MAX_RETRY", "0".into()));
    env.push(("LOG_LEVEL", "debug".into()));
    let sidecar = spawn_sidecar(&env).await;
    let ready = test_support::wait_until(BROWSER_WAIT, || sidecar.ready()).await;
    let logs = sidecar.proc.output();
    assert!(
        ready.is_ok(),
        "never ready: {:?}\n{logs}",
        sidecar.get("/readyz", None).await
    );
    assert_eq!(
        sim.control().stats().await.expect("sim control API")["login_state"],
        "logged_in"
    );
    assert!(
        logs.contains("browser login reached the callback"),
        "not logged in by the browser driver:\n{logs}"
    );
    assert!(!logs.contains(PASSWORD), "the password reached a log line");
}

/// By default only https pages on Alibaba Cloud's hosts get the password: the simulator's
/// plain-http form on 127.0.0.1 is refused before any browser starts, with a clear reason.
#[tokio::test]
async fn the_default_allowlist_refuses_a_plain_http_login_page() {
    let sim = form_login_sim(USERNAME, PASSWORD).await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_USERNAME", USERNAME.into()));
    env.push(("LINGMA_PASSWORD", PASSWORD.into()));
    env.push(("AUTO_LOGIN_DRIVER", "browser".into()));
    env.push(("AUTO_LOGIN_MAX_RETRY", "0".into()));
    // Would fail the test if anything tried to start it.
    env.push(("CHROME", "/nonexistent/chromium".into()));
    let sidecar = spawn_sidecar(&env).await;
    let refused = test_support::wait_until(Duration::from_secs(30), || {
        let logs = sidecar.proc.output();
        async move { logs.contains("DisallowedHost") }
    })
    .await;
    let logs = sidecar.proc.output();
    assert!(refused.is_ok(), "no refusal logged:\n{logs}");
    assert!(
        logs.contains("AUTO_LOGIN_ALLOWED_HOSTS"),
        "the reason names the setting:\n{logs}"
    );
    assert!(
        !logs.contains("chromium not found"),
        "a browser was looked for:\n{logs}"
    );
    assert_eq!(
        sim.control().stats().await.expect("sim control API")["login_state"],
        "logged_out"
    );
    assert!(!logs.contains(PASSWORD));
}
