//! The closed Lingma binary gets only the environment it needs: a script standing in for
//! Lingma (LINGMA_BIN) writes out what it received, and none of the sidecar's secrets is in
//! it, while the basics and the simulator's own LINGMA_SIM_* knobs are.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "Pw-child-env-3c1f-secret";
const ACCOUNTS_PW: &str = "pw-in-accounts-77aa";
const API_KEY: &str = "client-key-5e5e-secret";

/// A stand-in for Lingma: `start --workDir D ...` writes its environment to `D/env.dump`,
/// then stays up like Lingma would.
fn env_dumping_lingma(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fake-lingma.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nenv > \"$3/env.dump.tmp\" && mv \"$3/env.dump.tmp\" \"$3/env.dump\"\nexec sleep 30\n",
    )
    .expect("write fake Lingma");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingma_gets_the_basics_and_the_sim_knobs_but_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let bin = env_dumping_lingma(dir.path());
    let sidecar = spawn_sidecar(&[
        ("LINGMA_BIN", bin.display().to_string()),
        ("LINGMA_WORK_DIR", work.display().to_string()),
        ("LINGMA_SOCKET_PORT", test_support::free_port().to_string()),
        ("LINGMA_HTTP_PORT", test_support::free_port().to_string()),
        ("LINGMA_USERNAME", "dev@example.com".into()),
        ("LINGMA_PASSWORD", PASSWORD.into()),
        ("LINGMA_ACCOUNTS", format!("a@example.com:{ACCOUNTS_PW}")),
        ("API_KEYS", API_KEY.into()),
        ("LINGMA_SIM_CHUNKS", "7".into()),
        ("HTTPS_PROXY", "http://proxy.invalid:3128".into()),
        ("LC_ALL", "C.UTF-8".into()),
    ])
    .await;
    let dump = work.join("env.dump");
    test_support::wait_until(Duration::from_secs(20), || {
        let exists = dump.exists();
        async move { exists }
    })
    .await
    .unwrap_or_else(|_| panic!("Lingma never started:\n{}", sidecar.proc.output()));
    let text = std::fs::read_to_string(&dump).expect("read the dump");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();

    for secret in [PASSWORD, ACCOUNTS_PW, API_KEY, TOKEN] {
        assert!(!text.contains(secret), "a secret reached Lingma:\n{text}");
    }
    for name in [
        "SIDECAR_TOKEN",
        "LINGMA_PASSWORD",
        "LINGMA_ACCOUNTS",
        "LINGMA_USERNAME",
        "API_KEYS",
        "SIDECAR_PORT",
        "LOG_LEVEL",
    ] {
        assert!(!names.contains(&name), "{name} reached Lingma:\n{text}");
    }
    for line in [
        "LINGMA_SIM_CHUNKS=7",
        "HTTPS_PROXY=http://proxy.invalid:3128",
        "LC_ALL=C.UTF-8",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(names.contains(&"PATH"), "PATH missing:\n{text}");
}

/// The browser login's driver (and so Chromium) gets no secret either: stand-ins for
/// Chromium and chromedriver, the driver writing out its environment, against the
/// simulator's form login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_browser_gets_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start_at(
        &dir.path().join("sim"),
        test_support::free_port(),
        test_support::free_port(),
        &[
            "--login-mode",
            "form",
            "--accept-username",
            "dev@example.com",
        ],
    )
    .await;
    let dump = dir.path().join("driver-env.dump");
    let chromium = dir.path().join("chromium");
    std::fs::write(&chromium, "#!/bin/sh\n").expect("write fake chromium");
    std::fs::set_permissions(&chromium, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let driver = dir.path().join("chromedriver");
    std::fs::write(
        &driver,
        format!(
            "#!/bin/sh\nenv > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
            dump.display()
        ),
    )
    .expect("write fake chromedriver");
    std::fs::set_permissions(&driver, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut env = sim.attach_env();
    env.extend([
        ("LINGMA_USERNAME", "dev@example.com".to_owned()),
        ("LINGMA_PASSWORD", PASSWORD.to_owned()),
        ("API_KEYS", API_KEY.to_owned()),
        ("AUTO_LOGIN_DRIVER", "browser".to_owned()),
        ("AUTO_LOGIN_ALLOWED_HOSTS", "127.0.0.1".to_owned()),
        ("AUTO_LOGIN_ALLOW_HTTP_LOOPBACK", "true".to_owned()),
        ("AUTO_LOGIN_MAX_RETRY", "0".to_owned()),
        ("CHROME", chromium.display().to_string()),
        ("CHROMEDRIVER", driver.display().to_string()),
    ]);
    let sidecar = spawn_sidecar(&env).await;
    test_support::wait_until(Duration::from_secs(30), || {
        let exists = dump.exists();
        async move { exists }
    })
    .await
    .unwrap_or_else(|_| panic!("the driver never started:\n{}", sidecar.proc.output()));
    let text = std::fs::read_to_string(&dump).expect("read the dump");
    for secret in [PASSWORD, API_KEY, TOKEN] {
        assert!(
            !text.contains(secret),
            "a secret reached the browser:\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("PATH=")),
        "PATH missing:\n{text}"
    );
}
