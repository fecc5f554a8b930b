//! What one login attempt needs to know, and where the browser and its driver are found.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{BrowserLoginError, FailureReason};
use crate::host_policy::DEFAULT_ALLOWED_HOSTS;

/// Failure screenshots kept in `screenshot_dir` (AUTO_LOGIN_SCREENSHOT_KEEP).
pub const DEFAULT_SCREENSHOT_KEEP: usize = 10;

/// Browser names tried on `PATH` when no path is configured, in this order.
const CHROMIUM_NAMES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];
/// Debian ships the driver in `chromium-driver` as `/usr/bin/chromedriver`.
const CHROMEDRIVER_NAMES: &[&str] = &["chromedriver"];

/// Settings of a login attempt. Every attempt gets a fresh, throw-away Chromium profile
/// (`--user-data-dir` in a new temp dir), so no cookie or session survives between attempts.
#[derive(Debug, Clone)]
pub struct BrowserLoginConfig {
    /// The Chromium binary; `None` = `$CHROME`, else the first of chromium, chromium-browser,
    /// google-chrome on `PATH`.
    pub chromium_path: Option<PathBuf>,
    /// The chromedriver binary (same version as Chromium); `None` = `$CHROMEDRIVER`, else
    /// `chromedriver` on `PATH`.
    pub chromedriver_path: Option<PathBuf>,
    /// Run without a display (AUTO_LOGIN_HEADLESS). A pod has no display: keep it true there.
    pub headless: bool,
    /// Time budget for the whole attempt, browser start included (AUTO_LOGIN_TIMEOUT).
    pub timeout: Duration,
    /// Where the failure screenshots go (created 0700; each file 0600).
    pub screenshot_dir: PathBuf,
    /// How many failure screenshots to keep; older ones are deleted after each new one
    /// (AUTO_LOGIN_SCREENSHOT_KEEP; 0 = take none).
    pub screenshot_keep: usize,
    /// Hosts whose pages may receive the credentials (AUTO_LOGIN_ALLOWED_HOSTS): each entry
    /// matches the host and its subdomains. The login URL, every page the browser is sent
    /// to before the callback, and the frame holding the form must be https on one of them.
    pub allowed_hosts: Vec<String>,
    /// Also accept plain http on loopback hosts of `allowed_hosts`
    /// (AUTO_LOGIN_ALLOW_HTTP_LOOPBACK): for local test pages and the simulator only.
    pub allow_http_loopback: bool,
}

impl BrowserLoginConfig {
    /// The `.env.example` defaults: headless, 180 s, binaries found on `PATH`, Alibaba
    /// Cloud's hosts over https only, the newest 10 screenshots kept.
    pub fn new(screenshot_dir: impl Into<PathBuf>) -> Self {
        Self {
            chromium_path: None,
            chromedriver_path: None,
            headless: true,
            timeout: Duration::from_secs(180),
            screenshot_dir: screenshot_dir.into(),
            screenshot_keep: DEFAULT_SCREENSHOT_KEEP,
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            allow_http_loopback: false,
        }
    }
}

/// The two binaries an attempt runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserBinaries {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

/// Finds Chromium and chromedriver the way [`crate::login`] will, so a caller (or a test)
/// can tell "not installed" apart before trying.
pub fn locate_browser(cfg: &BrowserLoginConfig) -> Result<BrowserBinaries, BrowserLoginError> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let chromium = resolve(
        cfg.chromium_path.as_deref(),
        std::env::var_os("CHROME"),
        CHROMIUM_NAMES,
        &path_var,
    )
    .ok_or_else(|| {
        BrowserLoginError::new(
            FailureReason::Unavailable,
            "chromium not found (set CHROME or install the Debian package `chromium`)",
        )
    })?;
    let chromedriver = resolve(
        cfg.chromedriver_path.as_deref(),
        std::env::var_os("CHROMEDRIVER"),
        CHROMEDRIVER_NAMES,
        &path_var,
    )
    .ok_or_else(|| {
        BrowserLoginError::new(
            FailureReason::Unavailable,
            "chromedriver not found (set CHROMEDRIVER or install the Debian package `chromium-driver`)",
        )
    })?;
    Ok(BrowserBinaries {
        chromium,
        chromedriver,
    })
}

/// An explicit path wins, then the env variable, then the names on `PATH`. An explicit path
/// or env value that is not an executable file is an error, not a reason to look elsewhere:
/// silently running some other browser would hide a misconfiguration.
fn resolve(
    explicit: Option<&Path>,
    from_env: Option<OsString>,
    names: &[&str],
    path_var: &OsString,
) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return is_executable(path).then(|| path.to_path_buf());
    }
    if let Some(value) = from_env.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.components().count() > 1 {
            return is_executable(&path).then_some(path);
        }
        return find_on_path(&path.to_string_lossy(), path_var);
    }
    names.iter().find_map(|name| find_on_path(name, path_var))
}

fn find_on_path(name: &str, path_var: &OsString) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write fake binary");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod fake binary");
        path
    }

    #[test]
    fn finds_first_known_name_on_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        executable(dir.path(), "google-chrome");
        let chromium_browser = executable(dir.path(), "chromium-browser");
        let path_var = std::env::join_paths([dir.path()]).expect("join paths");
        let found = resolve(None, None, CHROMIUM_NAMES, &path_var);
        assert_eq!(found, Some(chromium_browser));
    }

    #[test]
    fn explicit_path_must_be_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("chromium");
        std::fs::write(&plain, "not executable").expect("write");
        let path_var = std::env::join_paths([dir.path()]).expect("join paths");
        assert_eq!(resolve(Some(&plain), None, CHROMIUM_NAMES, &path_var), None);
        let good = executable(dir.path(), "chrome");
        assert_eq!(
            resolve(Some(&good), None, CHROMIUM_NAMES, &path_var),
            Some(good)
        );
    }

    #[test]
    fn env_value_can_be_a_name_or_a_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let custom = executable(dir.path(), "my-chrome");
        let path_var = std::env::join_paths([dir.path()]).expect("join paths");
        assert_eq!(
            resolve(None, Some("my-chrome".into()), CHROMIUM_NAMES, &path_var),
            Some(custom.clone())
        );
        assert_eq!(
            resolve(None, Some(custom.clone().into()), CHROMIUM_NAMES, &path_var),
            Some(custom)
        );
        assert_eq!(
            resolve(
                None,
                Some("/nonexistent/chrome".into()),
                CHROMIUM_NAMES,
                &path_var
            ),
            None
        );
    }
}
