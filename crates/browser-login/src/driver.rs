//! Runs chromedriver and opens a WebDriver session on a fresh, throw-away Chromium profile.
//!
//! chromedriver's and Chromium's own output is drained and dropped, never logged: with a
//! raised log level chromedriver echoes commands, and a "send keys" command carries the
//! password.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustix::process::{Pid, Signal};
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout_at};

use crate::config::{BrowserBinaries, BrowserLoginConfig};
use crate::error::{BrowserLoginError, FailureReason};

/// What chromedriver prints once it listens (with `--port=0` it picks a free port itself,
/// which avoids a race between choosing a port and binding it).
const READY_MARKER: &str = "started successfully on port ";
/// A clean quit takes well under a second; a stuck browser is killed after this.
const QUIT_BUDGET: Duration = Duration::from_secs(3);
/// What chromedriver (and Chromium, which inherits its environment) gets on top of the
/// basics (PATH, HOME, locale, TZ, TMPDIR, proxies, CA bundle): the display, for
/// `headless = false`. Never the caller's secrets: a sidecar's environment holds its token
/// and the account passwords.
pub const BROWSER_ENV: child_env::Allowlist<'static> = child_env::Allowlist {
    names: &[
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "XDG_RUNTIME_DIR",
    ],
    prefixes: &[],
};

/// A running chromedriver with one session. chromedriver runs in its own process group,
/// which Chromium and its helpers inherit: [`BrowserSession::close`] and `Drop` kill the
/// whole group, so no browser outlives the attempt, even when the attempt's future is
/// dropped mid-way or chromedriver is stuck.
pub(crate) struct BrowserSession {
    pub(crate) client: Client,
    driver: DriverProcess,
    // Declared after `driver` so the profile is removed only once the browser is dead.
    _profile: TempDir,
}

/// chromedriver's process and its process group.
struct DriverProcess {
    child: Child,
    group: Option<Pid>,
}

impl DriverProcess {
    fn kill_group(&mut self) {
        if let Some(group) = self.group.take() {
            // ESRCH (all already gone) is the normal case after a clean quit.
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        self.kill_group();
    }
}

impl BrowserSession {
    pub(crate) async fn start(
        cfg: &BrowserLoginConfig,
        binaries: &BrowserBinaries,
        deadline: Instant,
    ) -> Result<Self, BrowserLoginError> {
        let mut command = Command::new(&binaries.chromedriver);
        child_env::restrict(command.as_std_mut(), &BROWSER_ENV);
        let child = command
            .arg("--port=0")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                unavailable(format!(
                    "cannot start {}: {e}",
                    binaries.chromedriver.display()
                ))
            })?;
        let group = child.id().and_then(|id| Pid::from_raw(id as i32));
        let mut driver = DriverProcess { child, group };
        if let Some(stderr) = driver.child.stderr.take() {
            tokio::spawn(drain(stderr));
        }
        let stdout = driver
            .child
            .stdout
            .take()
            .ok_or_else(|| unavailable("chromedriver stdout not captured"))?;
        let port = timeout_at(deadline, read_port(stdout))
            .await
            .map_err(|_| {
                BrowserLoginError::new(FailureReason::Timeout, "chromedriver did not start in time")
            })??;
        tracing::debug!(port, "chromedriver listening");
        let (client, profile) = new_session(cfg, binaries, port, deadline).await?;
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Ends the session (chromedriver quits Chromium and flushes nothing we need), then kills
    /// what is left of the process group.
    pub(crate) async fn close(mut self) {
        let quit = tokio::time::timeout(QUIT_BUDGET, self.client.clone().close()).await;
        if !matches!(quit, Ok(Ok(()))) {
            tracing::debug!(step = "close browser", "no clean quit; killing the browser");
        }
        self.driver.kill_group();
        let _ = tokio::time::timeout(QUIT_BUDGET, self.driver.child.wait()).await;
    }
}

/// A Chromium session on chromedriver at `port`, each try with a fresh profile. Chromium
/// sometimes exits while starting ("Chrome instance exited": a busy or memory-tight node),
/// and the next start usually works, so a failed start is tried once more (a timeout is
/// not: the deadline is spent).
async fn new_session(
    cfg: &BrowserLoginConfig,
    binaries: &BrowserBinaries,
    port: u16,
    deadline: Instant,
) -> Result<(Client, tempfile::TempDir), BrowserLoginError> {
    const TRIES: u32 = 2;
    let mut tries = 0;
    loop {
        tries += 1;
        let profile = tempfile::Builder::new()
            .prefix("browser-login-profile-")
            .tempdir()
            .map_err(|e| unavailable(format!("cannot create a browser profile dir: {e}")))?;
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities(cfg, binaries, &profile));
        let connected = timeout_at(
            deadline,
            builder.connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .map_err(|_| {
            BrowserLoginError::new(FailureReason::Timeout, "chromium did not start in time")
        })?;
        match connected {
            Ok(client) => return Ok((client, profile)),
            Err(e) if tries < TRIES => {
                tracing::warn!(error = %e, "chromium did not start; trying once more");
            }
            Err(e) => return Err(unavailable(format!("chromium session not created: {e}"))),
        }
    }
}

/// Reads chromedriver's stdout until it says which port it listens on, then keeps draining
/// it in the background so a full pipe never blocks it.
async fn read_port(
    stdout: impl AsyncRead + Unpin + Send + 'static,
) -> Result<u16, BrowserLoginError> {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| unavailable(format!("reading chromedriver output: {e}")))?
            .ok_or_else(|| unavailable("chromedriver exited before listening"))?;
        if let Some(rest) = line.split(READY_MARKER).nth(1) {
            let port = rest
                .trim_end_matches('.')
                .trim()
                .parse::<u16>()
                .map_err(|_| unavailable("chromedriver printed an unreadable port"))?;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(port);
        }
    }
}

async fn drain(out: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

/// The launch flags this workplace needs: no sandbox (containers run as root without user
/// namespaces), no GPU, no QUIC, and none of Chromium's background traffic (updates, sync,
/// field trials) since the pod may have no route to the Internet but Alibaba's login.
fn capabilities(
    cfg: &BrowserLoginConfig,
    binaries: &BrowserBinaries,
    profile: &TempDir,
) -> Map<String, Value> {
    let mut args = vec![
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--no-default-browser-check".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        // /dev/shm is 64 MiB in a default pod; Chromium crashes on larger pages without this.
        "--disable-dev-shm-usage".to_string(),
        "--password-store=basic".to_string(),
        "--window-size=1280,900".to_string(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    if cfg.headless {
        args.insert(0, "--headless=new".to_string());
    }
    let caps = json!({
        "browserName": "chrome",
        // Navigation returns once the new document exists, not after every script and image
        // (Alibaba's pages load many, some from hosts a pod may not reach). Note chromedriver
        // still blocks most commands while a navigation has no document yet: the login
        // loop bounds every command by the attempt's deadline.
        "pageLoadStrategy": "none",
        "unhandledPromptBehavior": "dismiss",
        // A page script that never returns must not stall the loop for chromedriver's 30 s.
        "timeouts": { "script": 10000 },
        // Network events feed the callback detection (network_log.rs).
        "goog:loggingPrefs": { "performance": "ALL" },
        "goog:chromeOptions": {
            "binary": binaries.chromium.to_string_lossy(),
            "args": args,
            // Keep chromedriver from adding its automation switches' infobar and extension.
            "excludeSwitches": ["enable-automation"],
            "perfLoggingPrefs": { "enableNetwork": true, "enablePage": false },
        },
    });
    match caps {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn unavailable(detail: impl Into<String>) -> BrowserLoginError {
    BrowserLoginError::new(FailureReason::Unavailable, detail)
}
