use super::*;

fn parse(args: &[&str]) -> Cli {
    let mut all = vec!["sidecar"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).expect("valid command line")
}

#[test]
fn defaults_follow_env_example() {
    let cli = parse(&[]);
    let c = cli.config;
    assert_eq!(c.port, 8318);
    assert_eq!(c.lingma_socket_port, 36510);
    assert_eq!(c.lingma_http_port, 37510);
    assert_eq!(c.lingma_max_concurrent_chats, 1);
    assert_eq!(c.default_model, "org_auto");
    assert_eq!(c.default_ask_mode, AskMode::Chat);
    assert!(c.auto_login_enabled);
    assert!(c.session_reuse_enabled);
    assert!(!c.lingma_attach);
    assert_eq!(c.session_cache_max_entries, 256);
    assert_eq!(c.session_cache_ttl_sec, 1800);
    assert!(cli.command.is_none());
    assert_eq!(c.login_allowed_hosts(), ["alibabacloud.com", "aliyun.com"]);
    assert!(!c.auto_login_allow_http_loopback);
    assert_eq!(c.auto_login_screenshot_keep, 10);
}

#[test]
fn booleans_take_values_and_bare_flags() {
    let c = parse(&["--lingma-attach", "--session-reuse-enabled", "false"]).config;
    assert!(c.lingma_attach);
    assert!(!c.session_reuse_enabled);
    assert!(matches!(
        parse(&["bootstrap"]).command,
        Some(Command::Bootstrap)
    ));
}

#[test]
fn debug_redacts_secrets() {
    let c = parse(&[
        "--token",
        "tok-very-secret",
        "--lingma-password",
        "pw-very-secret",
        "--lingma-accounts",
        "u:pw-in-list",
    ])
    .config;
    let text = format!("{c:?}");
    assert!(
        !text.contains("very-secret") && !text.contains("pw-in-list"),
        "{text}"
    );
    assert_eq!(
        c.gateway_token().expect("token"),
        Some("tok-very-secret".into())
    );
}

#[test]
fn empty_lingma_bin_means_unset() {
    let c = parse(&["--lingma-bin", ""]).config;
    assert!(c.bootstrap_config().explicit_bin().is_none());
    let c = parse(&["--lingma-bin", "/x/Lingma", "--lingma-source-type", "image"]).config;
    assert_eq!(
        c.bootstrap_config().explicit_bin(),
        Some(std::path::Path::new("/x/Lingma"))
    );
    assert_eq!(c.auto_login_driver, LoginDriverChoice::Auto);
}

#[test]
fn login_hosts_are_a_list_and_blank_means_the_default() {
    let c = parse(&[
        "--auto-login-allowed-hosts",
        " sso.example.com , ,127.0.0.1",
    ])
    .config;
    assert_eq!(c.login_allowed_hosts(), ["sso.example.com", "127.0.0.1"]);
    let c = parse(&["--auto-login-allowed-hosts", ""]).config;
    assert_eq!(c.login_allowed_hosts(), ["alibabacloud.com", "aliyun.com"]);
    let c = parse(&["--auto-login-allow-http-loopback"]).config;
    assert!(c.auto_login_allow_http_loopback);
}

#[test]
fn out_of_range_values_are_start_up_errors_naming_the_setting() {
    for (flag, env, bad) in [
        (
            "--lingma-rpc-timeout",
            "LINGMA_RPC_TIMEOUT",
            "18446744073709551615",
        ),
        ("--auto-login-timeout", "AUTO_LOGIN_TIMEOUT", "3601"),
        ("--drain-timeout-sec", "SIDECAR_DRAIN_TIMEOUT_SEC", "100000"),
        (
            "--lingma-chat-idle-timeout-sec",
            "LINGMA_CHAT_IDLE_TIMEOUT_SEC",
            "86401",
        ),
        ("--session-cache-ttl-sec", "SESSION_CACHE_TTL_SEC", "1e20"),
        ("--auto-login-max-retry", "AUTO_LOGIN_MAX_RETRY", "101"),
        (
            "--auto-login-screenshot-keep",
            "AUTO_LOGIN_SCREENSHOT_KEEP",
            "5000",
        ),
    ] {
        let err = Cli::try_parse_from(["sidecar", flag, bad])
            .err()
            .unwrap_or_else(|| panic!("{flag}={bad} accepted"));
        let text = err.to_string();
        assert!(text.contains(env) || text.contains(flag), "{text}");
    }
    let c = parse(&["--lingma-rpc-timeout", "3600", "--auto-login-timeout", "0"]).config;
    assert_eq!(c.rpc_timeout(), Duration::from_secs(3600));
    assert_eq!(c.login_timeout(), Duration::from_secs(1));
}

#[test]
fn listen_address_parses_v4_and_v6() {
    let c = parse(&["--host", "::1", "--port", "9000"]).config;
    assert_eq!(c.listen_addr().expect("addr").port(), 9000);
    let c = parse(&["--host", "0.0.0.0"]).config;
    assert!(c.listen_addr().is_ok());
    let c = parse(&["--host", "not an address"]).config;
    assert!(c.listen_addr().is_err());
}

#[test]
fn quota_settings_default_and_parse() {
    let c = parse(&[]).config;
    let q = c.quota_settings().expect("defaults are valid");
    assert_eq!(q.pause, Duration::from_secs(30));
    assert_eq!(q.max_pause, Duration::from_secs(900));
    assert_eq!(q.quota_codes, [110]);
    let c = parse(&[
        "--quota-pause-sec",
        "5",
        "--quota-pause-max-sec",
        "2",
        "--lingma-quota-error-codes",
        "110, 40505,",
    ])
    .config;
    let q = c.quota_settings().expect("valid");
    assert_eq!(q.quota_codes, [110, 40505]);
    assert_eq!(
        q.max_pause,
        Duration::from_secs(5),
        "the cap is never below the first pause"
    );
    let c = parse(&["--lingma-quota-error-codes", "daily"]).config;
    let err = c.quota_settings().expect_err("not a number");
    assert!(
        err.to_string().contains("LINGMA_QUOTA_ERROR_CODES"),
        "{err}"
    );
    let c = parse(&["--lingma-quota-error-codes", ""]).config;
    assert!(c.quota_settings().expect("empty").quota_codes.is_empty());
}
