//! chromedriver (and the Chromium it starts, which inherits its environment) gets only the
//! basics, never the caller's environment: a stand-in chromedriver writes out what it
//! received. No real browser is needed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use browser_login::{BrowserLoginConfig, FailureReason, SecretString, login};

fn executable(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_path_buf()
}

#[tokio::test]
async fn chromedriver_inherits_only_the_basics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("env.dump");
    let mut cfg = BrowserLoginConfig::new(dir.path());
    cfg.timeout = Duration::from_secs(20);
    cfg.allowed_hosts = vec!["127.0.0.1".into()];
    cfg.allow_http_loopback = true;
    cfg.chromium_path = Some(executable(&dir.path().join("chromium"), "#!/bin/sh\n"));
    // Exits without listening: the attempt fails as Unavailable after the dump is written.
    cfg.chromedriver_path = Some(executable(
        &dir.path().join("chromedriver"),
        &format!("#!/bin/sh\nenv > '{}'\n", dump.display()),
    ));
    let err = login(
        &cfg,
        "http://127.0.0.1:9/login?state=x",
        "dev@example.com",
        &SecretString::from("pw"),
    )
    .await
    .expect_err("the stand-in driver never listens");
    assert_eq!(err.reason(), FailureReason::Unavailable, "{err}");

    let text = std::fs::read_to_string(&dump).expect("the stand-in driver ran");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    // cargo sets CARGO_* (and the test harness RUST_TEST_*) for this process: the parent's
    // environment has variables off the allowlist, and none of them may reach the driver.
    let parent_only: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| !child_env::Allowlist::BASE.allows(std::ffi::OsStr::new(name)))
        .filter(|name| !browser_login::BROWSER_ENV.allows(std::ffi::OsStr::new(name)))
        // The stand-in is a shell script: sh sets these itself.
        .filter(|name| !matches!(name.as_str(), "PWD" | "OLDPWD" | "SHLVL" | "_"))
        .collect();
    assert!(!parent_only.is_empty(), "nothing to check against");
    for name in &parent_only {
        assert!(
            !names.contains(&name.as_str()),
            "{name} reached chromedriver"
        );
    }
    if std::env::var_os("PATH").is_some() {
        assert!(names.contains(&"PATH"), "PATH missing:\n{text}");
    }
}
