//! Failures: HTTP errors, a package without this platform, the size cap, bodies cut or stalled
//! midway, a download abandoned mid-way, explicit binaries. In every case the previously active
//! install must stay active and usable, and no half-written file may be used.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bytes::Bytes;
use lingma_bootstrap::{
    BootstrapConfig, BootstrapError, InstalledBinary, Origin, SourceType, active_install,
    ensure_binary,
};
use support::{
    PackageServer, Reply, marketplace_config, partial_download_seen, run, tmp_leftovers, vsix,
};
use test_support::wait_until;

const PLATFORMS: [&str; 2] = ["x86_64_linux", "aarch64_linux"];

/// Installs 2.5.20 and switches the server to serve 2.5.21 next.
async fn installed_then_new_version(
    work: &std::path::Path,
) -> (PackageServer, BootstrapConfig, InstalledBinary, Bytes) {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let mut config = marketplace_config(&server, work);
    let old = ensure_binary(&config).await.expect("first install");
    config.args.force_refresh = true;
    let new_package = Bytes::from(vsix("2.5.21", &PLATFORMS));
    (server, config, old, new_package)
}

async fn assert_still_active(config: &BootstrapConfig, old: &InstalledBinary) {
    let active = active_install(config)
        .await
        .expect("active install readable")
        .expect("still installed");
    assert_eq!(active.version, old.version);
    assert_eq!(active.sha256, old.sha256);
    assert_eq!(run(&active.lingma), "Lingma 2.5.20 x86_64_linux");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_name_the_status() {
    let work = tempfile::tempdir().expect("tempdir");
    for status in [404u16, 500] {
        let server = PackageServer::start(Reply::Status(status)).await;
        let err = ensure_binary(&marketplace_config(&server, work.path()))
            .await
            .expect_err("HTTP error");
        assert!(
            matches!(err, BootstrapError::HttpStatus { status: s, .. } if s == status),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("HTTP {status}")), "{err}");
    }
    assert!(!work.path().join("bin/current.json").exists());
    assert!(tmp_leftovers(work.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_without_this_platform_names_the_platforms_it_has() {
    let server = PackageServer::start(Reply::Body(
        vsix(
            "2.5.20",
            &["x86_64_darwin", "aarch64_darwin", "x86_64_windows"],
        )
        .into(),
    ))
    .await;
    let work = tempfile::tempdir().expect("tempdir");

    let err = ensure_binary(&marketplace_config(&server, work.path()))
        .await
        .expect_err("no linux binary");

    assert!(
        matches!(err, BootstrapError::PlatformMissing { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the package has no Lingma binary for x86_64_linux; platforms in the package: aarch64_darwin, x86_64_darwin, x86_64_windows"
    );
    assert!(!work.path().join("bin/2.5.20").exists());
    assert!(tmp_leftovers(work.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_zip_is_rejected() {
    let server = PackageServer::start(Reply::Body(Bytes::from_static(
        b"<html>rate limited</html>",
    )))
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let err = ensure_binary(&marketplace_config(&server, work.path()))
        .await
        .expect_err("html");
    assert!(matches!(err, BootstrapError::NotAZip { .. }), "{err}");

    let mut plain_zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    plain_zip
        .start_file(
            "extension/package.json",
            zip::write::SimpleFileOptions::default(),
        )
        .expect("entry");
    let plain_zip = plain_zip.finish().expect("zip").into_inner();
    server.set_reply(Reply::Body(plain_zip.into()));
    let err = ensure_binary(&marketplace_config(&server, work.path()))
        .await
        .expect_err("no nested zip");
    assert!(matches!(err, BootstrapError::PackageLayout { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("extension/dist/bin/lingma-<version>.zip"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_cap_stops_announced_and_streamed_bodies() {
    let package = Bytes::from(vsix("2.5.20", &PLATFORMS));
    let server = PackageServer::start(Reply::Body(package.clone())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = marketplace_config(&server, work.path());
    config.args.max_bytes = package.len() as u64 - 1;

    let err = ensure_binary(&config)
        .await
        .expect_err("announced length over the cap");
    assert!(
        matches!(err, BootstrapError::TooLarge { limit, .. } if limit == config.args.max_bytes),
        "{err}"
    );

    server.set_reply(Reply::Chunked(package));
    let err = ensure_binary(&config)
        .await
        .expect_err("streamed body over the cap");
    assert!(matches!(err, BootstrapError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("LINGMA_DOWNLOAD_MAX_BYTES"),
        "{err}"
    );
    assert!(!work.path().join("bin/current.json").exists());
    assert!(tmp_leftovers(work.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_midway_leaves_the_old_install_active() {
    let work = tempfile::tempdir().expect("tempdir");
    let (server, config, old, package) = installed_then_new_version(work.path()).await;
    server.set_reply(Reply::CutAfter {
        sent: package.len() / 2,
        body: package,
    });

    let err = ensure_binary(&config).await.expect_err("truncated body");

    assert!(matches!(err, BootstrapError::Truncated { .. }), "{err}");
    assert_still_active(&config, &old).await;
    assert!(
        !work.path().join("bin/2.5.21").exists(),
        "nothing of the new version installed"
    );
    assert!(
        tmp_leftovers(work.path()).is_empty(),
        "{:?}",
        tmp_leftovers(work.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_times_out_and_leaves_the_old_install_active() {
    let work = tempfile::tempdir().expect("tempdir");
    let (server, mut config, old, package) = installed_then_new_version(work.path()).await;
    config.args.idle_timeout_sec = 1;
    server.set_reply(Reply::StallAfter {
        sent: package.len() / 2,
        body: package,
    });

    let started = std::time::Instant::now();
    let err = ensure_binary(&config).await.expect_err("stalled body");

    assert!(
        matches!(err, BootstrapError::Stalled { idle_secs: 1, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_still_active(&config, &old).await;
    assert!(tmp_leftovers(work.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_abandoned_midway_never_replaces_the_old_install() {
    let work = tempfile::tempdir().expect("tempdir");
    let (server, config, old, package) = installed_then_new_version(work.path()).await;
    let half = package.len() / 2;
    server.set_reply(Reply::StallAfter {
        sent: half,
        body: package,
    });

    // Stands in for the sidecar being killed mid-download: the task is dropped while the
    // partial package sits in the scratch directory.
    let task = tokio::spawn({
        let config = config.clone();
        async move { ensure_binary(&config).await }
    });
    let partial_seen = wait_until(Duration::from_secs(10), || {
        std::future::ready(partial_download_seen(work.path(), half as u64))
    })
    .await;
    assert!(partial_seen.is_ok(), "the partial download never appeared");
    assert_still_active(&config, &old).await;
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    assert_still_active(&config, &old).await;

    // A killed process leaves its scratch directory behind; the next start removes it.
    let stale = work.path().join("bin/.tmp/run-stale");
    std::fs::create_dir_all(stale.join("stage")).expect("stale dir");
    std::fs::write(stale.join("stage/Lingma"), "#!/bin/sh\necho half\n").expect("stale file");
    let mut restart = config.clone();
    restart.args.force_refresh = false;
    let after = ensure_binary(&restart).await.expect("restart");
    assert_eq!(after.origin, Origin::Cached);
    assert_eq!(after.version.as_deref(), Some("2.5.20"));
    assert!(
        tmp_leftovers(work.path()).is_empty(),
        "{:?}",
        tmp_leftovers(work.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_and_image_binaries_are_checked_without_download() {
    let server = PackageServer::start(Reply::Status(500)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("Lingma");
    std::fs::write(&bin, "#!/bin/sh\necho image\n").expect("write bin");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // LINGMA_BIN wins over a download source, and nothing is fetched.
    let mut config = marketplace_config(&server, dir.path());
    config.lingma_bin = Some(bin.clone());
    let found = ensure_binary(&config).await.expect("explicit binary");
    assert_eq!(found.origin, Origin::ExplicitPath);
    assert_eq!(found.lingma, bin);
    assert_eq!(found.lingma_local, None);
    assert_eq!(
        found.sha256,
        support::sha256_hex(b"#!/bin/sh\necho image\n")
    );
    assert_eq!(server.requests(), 0);

    std::fs::write(dir.path().join("LingmaLocal"), "local").expect("write local");
    let found = ensure_binary(&config)
        .await
        .expect("explicit binary with LingmaLocal");
    assert_eq!(found.lingma_local, Some(dir.path().join("LingmaLocal")));

    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = ensure_binary(&config).await.expect_err("not executable");
    assert!(
        matches!(err, BootstrapError::BinaryUnusable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not executable"), "{err}");

    config.lingma_bin = Some(dir.path().join("missing"));
    let err = ensure_binary(&config).await.expect_err("missing");
    assert!(
        matches!(err, BootstrapError::BinaryUnusable { .. }),
        "{err}"
    );

    // The image source without LINGMA_BIN looks at the fixed path (absent on this machine).
    let config = BootstrapConfig::new(SourceType::Image, dir.path());
    let err = ensure_binary(&config)
        .await
        .expect_err("no image binary here");
    assert!(
        err.to_string()
            .contains(lingma_bootstrap::DEFAULT_IMAGE_BIN),
        "{err}"
    );
    assert_eq!(server.requests(), 0);
}
