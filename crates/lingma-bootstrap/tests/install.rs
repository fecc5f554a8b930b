//! Installing from a real local HTTP server: layout, exec bits, manifests, and the cache rules
//! (reuse, force refresh, bootstrap_always).

mod support;

use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use lingma_bootstrap::{
    BootstrapConfig, DEFAULT_LINGMA_VERSION, Manifest, Origin, Platform, PlatformChoice,
    SourceType, active_install, ensure_binary,
};
use support::{
    PackageServer, Reply, marketplace_config, run, script, sha256_hex, tmp_leftovers, vsix,
};

const PLATFORMS: [&str; 3] = ["x86_64_linux", "aarch64_linux", "x86_64_darwin"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_this_platforms_binaries_with_exec_bits_and_manifest() {
    support::init_logs();
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let config = marketplace_config(&server, work.path());

    let installed = ensure_binary(&config).await.expect("install");

    let dir = work.path().join("bin/2.5.20/x86_64_linux");
    assert_eq!(installed.origin, Origin::Downloaded);
    assert_eq!(installed.version.as_deref(), Some("2.5.20"));
    assert_eq!(installed.lingma, dir.join("Lingma"));
    assert_eq!(
        installed.lingma_local.as_deref(),
        Some(dir.join("LingmaLocal").as_path())
    );
    assert_eq!(
        installed.sha256,
        sha256_hex(script("Lingma", "2.5.20", "x86_64_linux").as_bytes())
    );
    assert_eq!(
        installed.lingma_local_sha256.as_deref(),
        Some(sha256_hex(script("LingmaLocal", "2.5.20", "x86_64_linux").as_bytes()).as_str())
    );
    for name in ["Lingma", "LingmaLocal"] {
        let mode = std::fs::metadata(dir.join(name))
            .expect("installed file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{name} mode {mode:o}");
    }
    assert_eq!(run(&installed.lingma), "Lingma 2.5.20 x86_64_linux");
    assert!(
        !dir.join("resources").exists(),
        "only the two binaries are extracted"
    );
    assert!(!work.path().join("bin/2.5.20/aarch64_linux").exists());

    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    assert_eq!(manifest.version, "2.5.20");
    assert_eq!(manifest.platform, Platform::X86_64Linux);
    assert_eq!(manifest.lingma.sha256, installed.sha256);
    assert_eq!(manifest.source.kind, SourceType::Marketplace);
    assert!(
        manifest
            .source
            .url
            .ends_with(&format!(
                "/publishers/Alibaba-Cloud/vsextensions/tongyi-lingma/{DEFAULT_LINGMA_VERSION}/vspackage"
            )),
        "{}",
        manifest.source.url
    );
    let current: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join("bin/current.json")).expect("current.json"),
    )
    .expect("json");
    assert_eq!(current["version"], "2.5.20");
    assert_eq!(current["platform"], "x86_64_linux");
    assert_eq!(
        server.paths(),
        vec![format!(
            "/_apis/public/gallery/publishers/Alibaba-Cloud/vsextensions/tongyi-lingma/{DEFAULT_LINGMA_VERSION}/vspackage"
        )]
    );
    assert!(
        tmp_leftovers(work.path()).is_empty(),
        "scratch removed: {:?}",
        tmp_leftovers(work.path())
    );
    let active = active_install(&config)
        .await
        .expect("active")
        .expect("installed");
    assert_eq!(active.lingma, installed.lingma);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwraps_gzip_and_installs_the_requested_platform_from_a_vsix_url() {
    support::init_logs();
    let server = PackageServer::start(Reply::Body(
        support::gzip(&vsix("2.6.10", &PLATFORMS)).into(),
    ))
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = BootstrapConfig::new(SourceType::Vsix, work.path());
    config.args.vsix_url = Some(format!(
        "{}/pkg/lingma.vsix?sig=very-secret",
        server.base_url
    ));
    config.args.platform = PlatformChoice(Some(Platform::Aarch64Linux));
    config.args.allow_http_loopback = true;

    let installed = ensure_binary(&config)
        .await
        .expect("install from gzip-wrapped vsix");

    assert_eq!(installed.version.as_deref(), Some("2.6.10"));
    assert_eq!(run(&installed.lingma), "Lingma 2.6.10 aarch64_linux");
    let lingma_local = installed.lingma_local.as_deref().expect("LingmaLocal");
    assert_eq!(run(lingma_local), "LingmaLocal 2.6.10 aarch64_linux");
    assert_eq!(
        server.paths(),
        vec!["/pkg/lingma.vsix?sig=very-secret".to_owned()]
    );
    let manifest_text =
        std::fs::read_to_string(work.path().join("bin/2.6.10/aarch64_linux/manifest.json"))
            .expect("manifest");
    assert!(
        !manifest_text.contains("very-secret"),
        "the URL query never reaches disk: {manifest_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_version_is_in_the_marketplace_url() {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = marketplace_config(&server, work.path());
    config.args.pinned_version = Some("2.5.20".into());
    ensure_binary(&config).await.expect("install");
    assert_eq!(
        server.paths(),
        vec!["/_apis/public/gallery/publishers/Alibaba-Cloud/vsextensions/tongyi-lingma/2.5.20/vspackage".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_the_cache_without_a_request() {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let config = marketplace_config(&server, work.path());
    let first = ensure_binary(&config).await.expect("install");
    // Whatever the server would answer now, the cache must not ask it.
    server.set_reply(Reply::Status(500));

    let second = ensure_binary(&config).await.expect("cached");

    assert_eq!(second.origin, Origin::Cached);
    assert_eq!(second.lingma, first.lingma);
    assert_eq!(second.sha256, first.sha256);
    assert_eq!(server.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_source_url_is_not_served_from_the_cache() {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = marketplace_config(&server, work.path());
    ensure_binary(&config).await.expect("install latest");
    server.set_reply(Reply::Body(vsix("2.5.19", &PLATFORMS).into()));
    config.args.pinned_version = Some("2.5.19".into());

    let pinned = ensure_binary(&config).await.expect("install pinned");

    assert_eq!(pinned.origin, Origin::Downloaded);
    assert_eq!(pinned.version.as_deref(), Some("2.5.19"));
    assert_eq!(server.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refresh_downloads_and_reinstalls_every_time() {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = marketplace_config(&server, work.path());
    ensure_binary(&config).await.expect("install");
    config.args.force_refresh = true;

    let refreshed = ensure_binary(&config).await.expect("refresh");

    assert_eq!(refreshed.origin, Origin::Downloaded);
    assert_eq!(server.requests(), 2);
    assert_eq!(run(&refreshed.lingma), "Lingma 2.5.20 x86_64_linux");
    assert!(
        tmp_leftovers(work.path()).is_empty(),
        "replaced install removed: {:?}",
        tmp_leftovers(work.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_always_checks_the_source_and_keeps_an_identical_install() {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = marketplace_config(&server, work.path());
    ensure_binary(&config).await.expect("install");
    let manifest_path = work.path().join("bin/2.5.20/x86_64_linux/manifest.json");
    let manifest_before = std::fs::read(&manifest_path).expect("manifest");
    config.args.bootstrap_always = true;

    let same_package = ensure_binary(&config).await.expect("same package");
    assert_eq!(same_package.origin, Origin::Unchanged);
    assert_eq!(server.requests(), 2);

    // Same binaries in a differently built package (gzip-wrapped): still kept as installed.
    server.set_reply(Reply::Body(
        support::gzip(&vsix("2.5.20", &PLATFORMS)).into(),
    ));
    let same_binaries = ensure_binary(&config).await.expect("same binaries");
    assert_eq!(same_binaries.origin, Origin::Unchanged);
    assert_eq!(server.requests(), 3);
    assert_eq!(
        std::fs::read(&manifest_path).expect("manifest"),
        manifest_before,
        "install untouched"
    );

    // A new version behind the same URL is installed and becomes active.
    server.set_reply(Reply::Body(vsix("2.5.21", &PLATFORMS).into()));
    let upgraded = ensure_binary(&config).await.expect("new version");
    assert_eq!(upgraded.origin, Origin::Downloaded);
    assert_eq!(upgraded.version.as_deref(), Some("2.5.21"));
    assert_eq!(run(&upgraded.lingma), "Lingma 2.5.21 x86_64_linux");
    let active = active_install(&config)
        .await
        .expect("active")
        .expect("installed");
    assert_eq!(active.version.as_deref(), Some("2.5.21"));

    // The source failing keeps the installed version (bootstrap_always only).
    server.set_reply(Reply::Status(503));
    let kept = ensure_binary(&config)
        .await
        .expect("fallback to the installed version");
    assert_eq!(kept.origin, Origin::CachedAfterFailedCheck);
    assert_eq!(kept.version.as_deref(), Some("2.5.21"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_install_is_downloaded_again() {
    let server = PackageServer::start(Reply::Body(vsix("2.5.20", &PLATFORMS).into())).await;
    let work = tempfile::tempdir().expect("tempdir");
    let config = marketplace_config(&server, work.path());
    let first = ensure_binary(&config).await.expect("install");
    std::fs::write(&first.lingma, "#!/bin/sh\necho tampered\n").expect("tamper");

    let err = active_install(&config)
        .await
        .expect_err("damage is reported");
    assert!(
        err.to_string().contains("differs from the manifest"),
        "{err}"
    );
    let repaired = ensure_binary(&config).await.expect("reinstall");

    assert_eq!(repaired.origin, Origin::Downloaded);
    assert_eq!(server.requests(), 2);
    assert_eq!(run(&repaired.lingma), "Lingma 2.5.20 x86_64_linux");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_without_content_length_is_accepted() {
    let server =
        PackageServer::start(Reply::Chunked(Bytes::from(vsix("2.5.20", &PLATFORMS)))).await;
    let work = tempfile::tempdir().expect("tempdir");
    let installed = ensure_binary(&marketplace_config(&server, work.path()))
        .await
        .expect("install");
    assert_eq!(installed.origin, Origin::Downloaded);
}
