//! The real thing the atomicity promise is about: the bootstrap process SIGKILLed
//! mid-download (no destructor runs), then started again.

mod support;

use std::time::Duration;

use bytes::Bytes;
use lingma_bootstrap::{active_install, ensure_binary};
use support::{
    PackageServer, Reply, marketplace_config, partial_download_seen, run, tmp_leftovers, vsix,
    vsix_padded,
};
use test_support::{ProcessBuilder, wait_until};

const PLATFORMS: [&str; 1] = ["x86_64_linux"];
const MB: usize = 1024 * 1024;

fn bootstrap_process(
    server: &PackageServer,
    work: &std::path::Path,
    force: bool,
) -> ProcessBuilder {
    ProcessBuilder::new("lingma-bootstrap", env!("CARGO_BIN_EXE_lingma-bootstrap"))
        .env("LINGMA_SOURCE_TYPE", "marketplace")
        .env("LINGMA_MARKETPLACE_URL", &server.base_url)
        .env("LINGMA_WORK_DIR", work)
        .env("LINGMA_PLATFORM", "x86_64_linux")
        .env("LINGMA_FORCE_REFRESH", if force { "true" } else { "false" })
        .env("LINGMA_BIN", "")
        .env("LINGMA_DOWNLOAD_ALLOW_HTTP_LOOPBACK", "true")
        .env("LOG_LEVEL", "info")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_download_leaves_the_old_install_in_use() {
    let work = tempfile::tempdir().expect("tempdir");
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let config = marketplace_config(&server, work.path());
    let old = ensure_binary(&config).await.expect("first install");

    // 20 MB so the 16 MB progress line is logged before the stall.
    let package = Bytes::from(vsix_padded("2.5.21", &PLATFORMS, 20 * MB));
    let sent = 17 * MB;
    server.set_reply(Reply::StallAfter {
        body: package,
        sent,
    });
    let mut child = bootstrap_process(&server, work.path(), true)
        .spawn()
        .expect("spawn lingma-bootstrap");

    let caught = wait_until(Duration::from_secs(20), || {
        std::future::ready(
            partial_download_seen(work.path(), sent as u64)
                && child.output().contains("download progress"),
        )
    })
    .await;
    assert!(
        caught.is_ok(),
        "no partial download seen; output:\n{}",
        child.output()
    );
    child.kill();

    let output = child.output();
    assert!(
        output.contains("received_mb=16"),
        "progress is logged in MB:\n{output}"
    );
    assert!(
        !tmp_leftovers(work.path()).is_empty(),
        "a killed process cannot clean up"
    );
    let active = active_install(&config)
        .await
        .expect("readable")
        .expect("installed");
    assert_eq!(active.version.as_deref(), Some("2.5.20"));
    assert_eq!(active.sha256, old.sha256);
    assert_eq!(run(&active.lingma), "Lingma 2.5.20 x86_64_linux");

    // The next start reuses the old install and removes the leftovers.
    let mut restart = bootstrap_process(&server, work.path(), false)
        .spawn()
        .expect("spawn again");
    let status = restart
        .wait_exit(Duration::from_secs(20))
        .expect("restart finishes");
    let output = restart.output();
    assert!(status.success(), "restart failed:\n{output}");
    let line = output
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result line:\n{output}"));
    let result: serde_json::Value = serde_json::from_str(line).expect("result JSON");
    assert_eq!(result["origin"], "cached");
    assert_eq!(result["version"], "2.5.20");
    assert_eq!(result["lingma"], old.lingma.to_str().expect("utf-8 path"));
    assert!(
        tmp_leftovers(work.path()).is_empty(),
        "{:?}",
        tmp_leftovers(work.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_errors_with_a_failing_exit_status() {
    let work = tempfile::tempdir().expect("tempdir");
    let server = PackageServer::start(Reply::Status(404)).await;
    let mut child = bootstrap_process(&server, work.path(), false)
        .spawn()
        .expect("spawn");
    let status = child.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    assert!(child.output().contains("HTTP 404"), "{}", child.output());
}
