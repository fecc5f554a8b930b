//! Downloads are https only: a real TLS server on 127.0.0.1 (test CA trusted through
//! LINGMA_DOWNLOAD_CA_FILE), an https->http downgrade redirect refused even with the loopback
//! test opt-out on, and a package whose sha256 is not the pinned LINGMA_DOWNLOAD_SHA256
//! refused, with the previous install kept.

mod support;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use lingma_bootstrap::{
    BootstrapConfig, BootstrapError, Origin, Platform, PlatformChoice, SourceType, active_install,
    ensure_binary,
};
use support::tls_server::{HttpsServer, ca_file};
use support::{PackageServer, Reply, marketplace_config, run, sha256_hex, tmp_leftovers, vsix};

const PLATFORMS: [&str; 1] = ["x86_64_linux"];

fn https_config(base_url: &str, work: &std::path::Path) -> BootstrapConfig {
    let mut config = BootstrapConfig::new(SourceType::Marketplace, work);
    config.args.marketplace_url = base_url.to_owned();
    config.args.platform = PlatformChoice(Some(Platform::X86_64Linux));
    config.args.connect_timeout_sec = 5;
    config.args.idle_timeout_sec = 5;
    config.args.ca_file = Some(ca_file());
    config
}

fn serving(package: Bytes) -> axum::Router {
    axum::Router::new().fallback(move || {
        let package = package.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                package,
            )
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_package_installs_with_the_configured_ca_and_not_without() {
    support::init_logs();
    let server = HttpsServer::start(serving(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");

    let mut config = https_config(&server.base_url, work.path());
    config.args.ca_file = None;
    let err = ensure_binary(&config)
        .await
        .expect_err("the test CA is not a built-in root");
    assert!(matches!(err, BootstrapError::Network { .. }), "{err}");

    let config = https_config(&server.base_url, work.path());
    let installed = ensure_binary(&config).await.expect("https install");
    assert_eq!(installed.origin, Origin::Downloaded);
    assert_eq!(run(&installed.lingma), "Lingma 2.5.20 x86_64_linux");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_to_http_redirect_is_refused_even_to_loopback() {
    support::init_logs();
    // The plain server would serve a good package: only the downgrade rule stops it.
    let plain = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let target = format!("{}/pkg/lingma.vsix", plain.base_url);
    let redirecting = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (StatusCode::FOUND, [(header::LOCATION, target)]).into_response() }
    });
    let server = HttpsServer::start(redirecting).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = https_config(&server.base_url, work.path());
    config.args.allow_http_loopback = true;

    let err = ensure_binary(&config)
        .await
        .expect_err("a downgrade is never followed");
    assert!(
        matches!(err, BootstrapError::InsecureRedirect { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&plain.base_url) && text.contains("downgrade"),
        "the error names the refused target: {text}"
    );
    assert_eq!(plain.requests(), 0, "the http target was never contacted");
    assert!(!work.path().join("bin/current.json").exists());
    assert!(tmp_leftovers(work.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_url_is_refused_without_the_test_opt_out() {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = marketplace_config(&server, work.path());
    config.args.allow_http_loopback = false;
    let err = ensure_binary(&config).await.expect_err("http refused");
    assert!(matches!(err, BootstrapError::Config(_)), "{err}");
    assert!(err.to_string().contains("https"), "{err}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_is_refused_and_the_previous_install_kept() {
    support::init_logs();
    let old_package = vsix("2.5.20", &PLATFORMS);
    let server = PackageServer::start(Reply::Body(old_package.clone().into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = marketplace_config(&server, work.path());
    config.args.expected_sha256 = Some(sha256_hex(&old_package).to_uppercase());
    let old = ensure_binary(&config)
        .await
        .expect("the pinned digest matches");
    assert_eq!(old.origin, Origin::Downloaded);

    // The source now serves other bytes: with the old pin they are refused.
    let new_package = vsix("2.5.21", &PLATFORMS);
    server.set_reply(Reply::Body(new_package.clone().into()));
    config.args.force_refresh = true;
    let err = ensure_binary(&config).await.expect_err("digest mismatch");
    match &err {
        BootstrapError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &sha256_hex(&old_package));
            assert_eq!(actual, &sha256_hex(&new_package));
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    assert!(err.to_string().contains("LINGMA_DOWNLOAD_SHA256"), "{err}");
    let active = active_install(&config)
        .await
        .expect("readable")
        .expect("still installed");
    assert_eq!(active.version.as_deref(), Some("2.5.20"));
    assert_eq!(run(&active.lingma), "Lingma 2.5.20 x86_64_linux");
    assert!(!work.path().join("bin/2.5.21").exists());
    assert!(tmp_leftovers(work.path()).is_empty());

    // A new pin that the installed package does not match is not served from the cache.
    config.args.force_refresh = false;
    config.args.expected_sha256 = Some(sha256_hex(&new_package));
    let before = server.requests();
    let new = ensure_binary(&config)
        .await
        .expect("the new pin matches the new package");
    assert_eq!(server.requests(), before + 1, "downloaded, not cached");
    assert_eq!(new.version.as_deref(), Some("2.5.21"));

    config.args.expected_sha256 = Some("not-a-digest".into());
    let err = ensure_binary(&config)
        .await
        .expect_err("a typo is an error");
    assert!(matches!(err, BootstrapError::Config(_)), "{err}");
}
