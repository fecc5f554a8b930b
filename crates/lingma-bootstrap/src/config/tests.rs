use super::*;
use clap::Parser;

/// Like the sidecar's CLI: `version` must not clash with clap's `--version`.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    config: BootstrapConfig,
}

/// The shape of the sidecar's CLI: its own LINGMA_BIN / LINGMA_WORK_DIR, plus the flags.
#[derive(Parser)]
#[command(version)]
struct SidecarLike {
    #[command(flatten)]
    bootstrap: BootstrapArgs,
    #[arg(long, env = "LINGMA_BIN")]
    lingma_bin: Option<PathBuf>,
    #[arg(long, env = "LINGMA_WORK_DIR", default_value = "/data/lingma")]
    lingma_work_dir: PathBuf,
}

#[test]
fn the_flags_flatten_beside_a_cli_with_its_own_paths() {
    let cli = SidecarLike::try_parse_from([
        "sidecar",
        "--lingma-work-dir",
        "/w",
        "--lingma-version",
        "2.5.20",
    ])
    .expect("parse");
    let config = BootstrapConfig::from_args(cli.bootstrap, &cli.lingma_work_dir, cli.lingma_bin);
    assert_eq!(config.work_dir, PathBuf::from("/w"));
    assert_eq!(config.args.pinned_version.as_deref(), Some("2.5.20"));
}

#[test]
fn marketplace_url_uses_the_built_in_pin_unless_a_version_is_set() {
    let mut config = BootstrapConfig::new(SourceType::Marketplace, "/tmp/x");
    assert_eq!(
        config.args.download_url().expect("url").as_deref(),
        Some(
            "https://marketplace.visualstudio.com/_apis/public/gallery/publishers/Alibaba-Cloud/vsextensions/tongyi-lingma/2.6.10/vspackage"
        )
    );
    config.args.pinned_version = Some(" ".into());
    assert!(
        config
            .args
            .download_url()
            .expect("url")
            .is_some_and(|u| u.contains(&format!("/{DEFAULT_LINGMA_VERSION}/")))
    );
    config.args.pinned_version = Some("latest".into());
    assert!(
        config
            .args
            .download_url()
            .expect("url")
            .is_some_and(|u| u.contains("/latest/"))
    );
    config.args.pinned_version = Some("2.5.20".into());
    config.args.marketplace_url = "http://127.0.0.1:9/".into();
    assert!(
        matches!(config.args.download_url(), Err(BootstrapError::Config(ref m)) if m.contains("https")),
        "plain http needs the loopback opt-out"
    );
    config.args.allow_http_loopback = true;
    assert_eq!(
        config.args.download_url().expect("url").as_deref(),
        Some(
            "http://127.0.0.1:9/_apis/public/gallery/publishers/Alibaba-Cloud/vsextensions/tongyi-lingma/2.5.20/vspackage"
        )
    );
}

#[test]
fn http_is_accepted_only_on_loopback_with_the_opt_out() {
    let mut config = BootstrapConfig::new(SourceType::Vsix, "/tmp/x");
    config.args.allow_http_loopback = true;
    for (url, ok) in [
        ("https://cdn.example.com/l.vsix", true),
        ("http://127.0.0.1:8/l.vsix", true),
        ("http://[::1]:8/l.vsix", true),
        ("http://localhost:8/l.vsix", true),
        ("http://cdn.example.com/l.vsix", false),
        ("http://127.0.0.1.example.com/l.vsix", false),
        ("ftp://127.0.0.1/l.vsix", false),
    ] {
        config.args.vsix_url = Some(url.into());
        assert_eq!(config.args.download_url().is_ok(), ok, "{url}");
    }
    config.args.allow_http_loopback = false;
    config.args.vsix_url = Some("http://127.0.0.1:8/l.vsix".into());
    assert!(config.args.download_url().is_err());
}

#[test]
fn a_pinned_digest_must_be_64_hex_digits() {
    let mut args = BootstrapArgs::defaults(SourceType::Marketplace);
    assert_eq!(args.expected_sha256().expect("unset"), None);
    args.expected_sha256 = Some(String::new());
    assert_eq!(args.expected_sha256().expect("empty = unset"), None);
    let digest = "AB".repeat(32);
    args.expected_sha256 = Some(format!(" {digest} "));
    assert_eq!(
        args.expected_sha256().expect("valid"),
        Some("ab".repeat(32))
    );
    for bad in ["abc", &"g".repeat(64), &"a".repeat(65)] {
        args.expected_sha256 = Some(bad.to_owned());
        assert!(args.expected_sha256().is_err(), "{bad}");
    }
}

#[test]
fn rejects_path_tricks_and_missing_vsix_url() {
    let mut config = BootstrapConfig::new(SourceType::Marketplace, "/tmp/x");
    config.args.pinned_version = Some("../../x".into());
    assert!(matches!(
        config.args.download_url(),
        Err(BootstrapError::Config(_))
    ));
    let config = BootstrapConfig::new(SourceType::Vsix, "/tmp/x");
    assert!(matches!(
        config.args.download_url(),
        Err(BootstrapError::Config(_))
    ));
    let mut config = BootstrapConfig::new(SourceType::Vsix, "/tmp/x");
    config.args.vsix_url = Some("file:///etc/passwd".into());
    assert!(matches!(
        config.args.download_url(),
        Err(BootstrapError::Config(_))
    ));
}

#[test]
fn parses_flags_with_env_style_values() {
    let cli = Cli::try_parse_from([
        "x",
        "--lingma-source-type",
        "vsix",
        "--lingma-bootstrap-always",
        "true",
        "--lingma-force-refresh",
        "false",
        "--lingma-platform",
        "aarch64_linux",
        "--lingma-bin",
        "",
    ])
    .expect("parse");
    assert_eq!(cli.config.args.source, SourceType::Vsix);
    assert!(cli.config.args.bootstrap_always);
    assert!(!cli.config.args.force_refresh);
    assert_eq!(
        cli.config.args.platform,
        PlatformChoice(Some(Platform::Aarch64Linux))
    );
    assert_eq!(cli.config.explicit_bin(), None);
    assert_eq!(
        cli.config.args.progress_step_bytes,
        DEFAULT_PROGRESS_STEP_BYTES
    );

    let cli = Cli::try_parse_from([
        "x",
        "--lingma-platform",
        "",
        "--lingma-vsix-url",
        "",
        "--lingma-version",
        "",
    ])
    .expect("empty values mean unset");
    assert_eq!(cli.config.args.platform, PlatformChoice(None));
    assert_eq!(cli.config.args.vsix_url.as_deref(), Some(""));
    let err = Cli::try_parse_from(["x", "--lingma-download-idle-timeout-sec", "1e20"])
        .err()
        .expect("out of range");
    assert!(err.to_string().contains("idle-timeout"), "{err}");
    let err = Cli::try_parse_from(["x", "--lingma-download-connect-timeout-sec", "3601"])
        .err()
        .expect("out of range");
    assert!(err.to_string().contains("3601"), "{err}");
    let err = Cli::try_parse_from(["x", "--lingma-platform", "mips"])
        .err()
        .expect("unknown platform");
    assert!(err.to_string().contains("unknown platform"), "{err}");
}
