//! Shared pieces of the browser tests: a local login site that behaves like Alibaba Cloud's
//! account page in the ways the login loop relies on, log capture, and the
//! "is Chromium installed" gate.

#![allow(dead_code)]

pub mod site;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use browser_login::{BrowserLoginConfig, locate_browser};
use tracing_subscriber::fmt::MakeWriter;

/// Every log line of the test binary, at TRACE for every target (ours and the crates we use).
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
/// One browser at a time: the machine has two cores, and one shared log buffer is only
/// meaningful per test while tests do not overlap.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone)]
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("log buffer poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs the capturing subscriber once for the binary.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(BufferWriter(buffer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        buffer
    });
}

/// Everything logged so far.
pub fn logs() -> String {
    let buffer = LOGS.get().expect("capture_logs() was called");
    String::from_utf8_lossy(&buffer.lock().expect("log buffer lock")).into_owned()
}

/// Holds the one-browser-at-a-time lock for the test's duration.
pub async fn browser_slot() -> tokio::sync::MutexGuard<'static, ()> {
    BROWSER.lock().await
}

/// `true` when Chromium and chromedriver are installed. Without them a test fails when `CI`
/// is set (CI must install the Debian packages `chromium` and `chromium-driver`) and is
/// skipped with a notice otherwise.
pub fn browser_installed() -> bool {
    match locate_browser(&BrowserLoginConfig::new(std::env::temp_dir())) {
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

/// A config for tests: headless, the given timeout, screenshots into `dir`, the local pages
/// (plain http on 127.0.0.1 and localhost) allowed to receive the credentials.
pub fn config(dir: &std::path::Path, timeout: Duration) -> BrowserLoginConfig {
    let mut cfg = BrowserLoginConfig::new(dir);
    cfg.timeout = timeout;
    cfg.allowed_hosts = vec!["127.0.0.1".into(), "localhost".into()];
    cfg.allow_http_loopback = true;
    cfg
}

/// Waits (bounded) until no process runs with one of this crate's throw-away profiles:
/// every browser an attempt started must be gone when `login` returns.
pub async fn assert_no_browser_left() {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = browsers_running();
        if left == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} browser process(es) outlived the login attempt"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn browsers_running() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| {
            String::from_utf8_lossy(cmdline).contains("--user-data-dir=")
                && String::from_utf8_lossy(cmdline).contains("browser-login-profile-")
        })
        .count()
}
