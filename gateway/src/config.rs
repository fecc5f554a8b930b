//! Command line and environment (names of `.env.example`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mux_protocol::{SidecarToken, TokenFileError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryKind {
    Static,
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoutingPolicy {
    /// Rendezvous hashing on the affinity key with bounded load.
    Sticky,
    LeastInFlight,
    RoundRobin,
}

/// The gateway's settings. `Debug` is written by hand: keys and tokens never reach a log.
#[derive(Clone, Parser)]
#[command(
    name = "gateway",
    about = "OpenAI-compatible front door of a pool of Lingma sidecars"
)]
pub struct GatewayConfig {
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, env = "PORT", default_value_t = 8317)]
    pub port: u16,
    /// Comma-separated client API keys; empty = no auth.
    #[arg(long, env = "API_KEYS", default_value = "", hide_env_values = true)]
    pub api_keys: String,
    #[arg(
        long,
        env = "METRICS_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub metrics_token: String,
    /// Token for the admin routes (`/metrics`, `/internal/*`), as METRICS_TOKEN; either works.
    #[arg(long, env = "ADMIN_TOKEN", default_value = "", hide_env_values = true)]
    pub admin_token: String,
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Global limit of chats in flight; <= 0 = unlimited.
    #[arg(
        long,
        env = "GATEWAY_MAX_IN_FLIGHT",
        default_value_t = 4,
        allow_negative_numbers = true
    )]
    pub max_in_flight: i64,
    #[arg(long, env = "GATEWAY_QUEUE_TIMEOUT_SEC", default_value_t = 30.0)]
    pub queue_timeout_sec: f64,
    #[arg(long, env = "GATEWAY_MAX_QUEUED", default_value_t = 1024)]
    pub max_queued: usize,
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    #[arg(long, env = "DEFAULT_MODEL", default_value = "org_auto")]
    pub default_model: String,
    #[arg(long, env = "SESSION_REUSE_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub session_reuse_enabled: bool,
    #[arg(long, env = "GATEWAY_DISCOVERY", value_enum, default_value = "static")]
    pub discovery: DiscoveryKind,
    /// Static discovery: comma-separated `name=ws://host:port` or `ws://host:port`.
    #[arg(long, env = "GATEWAY_SIDECARS", default_value = "ws://127.0.0.1:8318")]
    pub sidecars: String,
    /// Kubernetes discovery: namespace of the LingmaInstances (empty = the gateway's own).
    #[arg(long, env = "GATEWAY_K8S_NAMESPACE", default_value = "")]
    pub k8s_namespace: String,
    /// Kubernetes discovery: label selector of the LingmaInstance Services' EndpointSlices.
    #[arg(
        long,
        env = "GATEWAY_K8S_LABEL_SELECTOR",
        default_value = "app.kubernetes.io/managed-by=lingma-operator"
    )]
    pub k8s_label_selector: String,
    #[arg(
        long,
        env = "SIDECAR_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub sidecar_token: String,
    #[arg(long, env = "SIDECAR_TOKEN_FILE")]
    pub sidecar_token_file: Option<PathBuf>,
    #[arg(long, env = "GATEWAY_ROUTING", value_enum, default_value = "sticky")]
    pub routing: RoutingPolicy,
    #[arg(long, env = "GATEWAY_LOAD_FACTOR", default_value_t = 1.25)]
    pub load_factor: f64,
    #[arg(long, env = "GATEWAY_EJECT_FAILURES", default_value_t = 3)]
    pub eject_failures: u32,
    #[arg(long, env = "GATEWAY_EJECT_COOLDOWN_SEC", default_value_t = 10.0)]
    pub eject_cooldown_sec: f64,
    /// The most sidecars ejected at once, in percent of the pool (rounded down).
    #[arg(long, env = "GATEWAY_MAX_EJECTION_PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_ejection_percent: u8,
    /// Longest wait for a sidecar's `Started` after its own queue wait.
    #[arg(long, env = "GATEWAY_START_TIMEOUT_SEC", default_value_t = 60.0)]
    pub start_timeout_sec: f64,
    /// Longest silence of a sidecar within an accepted chat, and longest a client may
    /// leave a full stream buffer unread.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_SEC", default_value_t = 180.0)]
    pub idle_timeout_sec: f64,
    /// Longest one write to a sidecar's socket may block before the connection is dropped.
    #[arg(
        long,
        env = "GATEWAY_SIDECAR_WRITE_TIMEOUT_SEC",
        default_value_t = 10.0
    )]
    pub sidecar_write_timeout_sec: f64,
    /// After SIGTERM: how long open chats may go on before they end with an error event.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE_SEC", default_value_t = 25.0)]
    pub shutdown_grace_sec: f64,
    /// Serve without API keys on a non-loopback HOST (refused otherwise).
    #[arg(long, env = "GATEWAY_ALLOW_ANONYMOUS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_anonymous: bool,
    /// Shortest time between two forced logins of one instance
    /// (`POST /internal/auto-login/start`).
    #[arg(long, env = "GATEWAY_LOGIN_COOLDOWN_SEC", default_value_t = 60.0)]
    pub login_cooldown_sec: f64,
    /// Longest a client may take to send a request's headers; 0 = no limit.
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT_SEC", default_value_t = 10.0)]
    pub header_read_timeout_sec: f64,
    /// Most client connections open at once; further ones wait in the listen backlog.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", default_value = "")]
    pub otlp_endpoint: String,
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "lingma-gateway")]
    pub otel_service_name: String,
    /// Sticky routing: how long (ms) a follow-up turn waits for the instance holding its
    /// session when that instance is full, before it may go to another (a fresh session
    /// there); 0 = never wait.
    #[arg(long, env = "GATEWAY_STICKY_WAIT_MS", default_value_t = 1500,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub sticky_wait_ms: u64,
    /// JSON file of named client keys with optional limits (see docs/gateway.md); used
    /// together with API_KEYS.
    #[arg(long, env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Gateway replicas sharing the keys' limits: each enforces its share (limit divided
    /// by this, rounded up), as limits are counted per replica.
    #[arg(long, env = "GATEWAY_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub replicas: u32,
    /// Ping period on each sidecar's mux connection; a connection silent (not even a pong)
    /// for 3 periods is closed: its open chats fail, it takes no chats until reconnected.
    #[arg(long, env = "GATEWAY_MUX_KEEPALIVE_SEC", default_value_t = 15.0)]
    pub mux_keepalive_sec: f64,
    /// Largest HTTP/1 read (and write) buffer of one client connection, in bytes; also the
    /// largest request head (beyond it: 431). hyper keeps a connection's read buffer at
    /// its high-water mark for the connection's life, so this bounds what a long stream
    /// holds after a large request body.
    #[arg(long, env = "GATEWAY_HTTP1_MAX_BUF_BYTES", default_value_t = 8_192)]
    pub http1_max_buf_bytes: usize,
    /// Redis URL (`redis://[:password@]host:port[/db]`; TLS `rediss://` is refused) where
    /// the Responses API keeps finished responses, so `previous_response_id` and
    /// `GET /v1/responses/{id}` work on every gateway replica; empty = in this process's
    /// memory (one replica). A secret when it carries a password: from a Secret, never
    /// logged.
    #[arg(
        long,
        env = "GATEWAY_RESPONSES_REDIS_URL",
        default_value = "",
        hide_env_values = true
    )]
    pub responses_redis_url: String,
}

/// Largest accepted GATEWAY_QUEUE_TIMEOUT_SEC and GATEWAY_EJECT_COOLDOWN_SEC: beyond an hour
/// a value is a typo, and far larger ones overflow a `Duration` or a deadline.
const MAX_WAIT_SEC: f64 = 3600.0;
/// Largest accepted GATEWAY_LOAD_FACTOR: far above any useful bound on load.
const MAX_LOAD_FACTOR: f64 = 100.0;

/// Smallest GATEWAY_HTTP1_MAX_BUF_BYTES: hyper's own minimum (it panics below it).
const MIN_HTTP1_BUF: usize = 8192;
/// Largest GATEWAY_HTTP1_MAX_BUF_BYTES: beyond it a value is a typo.
const MAX_HTTP1_BUF: usize = 16 * 1024 * 1024;

/// Settings that make no sense (caught at start, not at the first request).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("GATEWAY_QUEUE_TIMEOUT_SEC must be a number of seconds from 0 to 3600")]
    QueueTimeout,
    #[error("GATEWAY_LOAD_FACTOR must be a number from 1 to 100")]
    LoadFactor,
    #[error("GATEWAY_EJECT_COOLDOWN_SEC must be a number of seconds from 0 to 3600")]
    EjectCooldown,
    #[error("{0} must be a number of seconds in (0, 86400]")]
    Deadline(&'static str),
    #[error("GATEWAY_LOGIN_COOLDOWN_SEC must be a finite number >= 0")]
    LoginCooldown,
    #[error("GATEWAY_HEADER_READ_TIMEOUT_SEC must be a finite number >= 0")]
    HeaderReadTimeout,
    #[error("GATEWAY_MAX_CONNECTIONS must be at least 1")]
    MaxConnections,
    #[error(
        "refusing to serve without API_KEYS on HOST={host}, which is not a loopback address: set API_KEYS, listen on 127.0.0.1, or set GATEWAY_ALLOW_ANONYMOUS=true"
    )]
    AnonymousOnPublicHost { host: String },
    #[error("SIDECAR_TOKEN_FILE: {0}")]
    TokenFile(#[from] TokenFileError),
    #[error(transparent)]
    KeysFile(#[from] crate::keys::KeysFileError),
    #[error("GATEWAY_HTTP1_MAX_BUF_BYTES must be from 8192 to 16777216")]
    Http1MaxBuf,
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        // `contains` is false for NaN, so NaN and the infinities are refused too.
        if !(0.0..=MAX_WAIT_SEC).contains(&self.queue_timeout_sec) {
            return Err(ConfigError::QueueTimeout);
        }
        if !(1.0..=MAX_LOAD_FACTOR).contains(&self.load_factor) {
            return Err(ConfigError::LoadFactor);
        }
        if !(0.0..=MAX_WAIT_SEC).contains(&self.eject_cooldown_sec) {
            return Err(ConfigError::EjectCooldown);
        }
        for (name, value) in [
            ("GATEWAY_START_TIMEOUT_SEC", self.start_timeout_sec),
            ("GATEWAY_IDLE_TIMEOUT_SEC", self.idle_timeout_sec),
            (
                "GATEWAY_SIDECAR_WRITE_TIMEOUT_SEC",
                self.sidecar_write_timeout_sec,
            ),
            ("GATEWAY_SHUTDOWN_GRACE_SEC", self.shutdown_grace_sec),
            ("GATEWAY_MUX_KEEPALIVE_SEC", self.mux_keepalive_sec),
        ] {
            if !(value > 0.0 && value <= 86_400.0) {
                return Err(ConfigError::Deadline(name));
            }
        }
        if !seconds_ok(self.login_cooldown_sec) {
            return Err(ConfigError::LoginCooldown);
        }
        if !seconds_ok(self.header_read_timeout_sec) {
            return Err(ConfigError::HeaderReadTimeout);
        }
        if self.max_connections == 0 {
            return Err(ConfigError::MaxConnections);
        }
        if !(MIN_HTTP1_BUF..=MAX_HTTP1_BUF).contains(&self.http1_max_buf_bytes) {
            return Err(ConfigError::Http1MaxBuf);
        }
        if !self.has_keys() && !self.allow_anonymous && !is_loopback(&self.host) {
            return Err(ConfigError::AnonymousOnPublicHost {
                host: self.host.clone(),
            });
        }
        Ok(())
    }

    /// Keyless on a non-loopback HOST, explicitly allowed: worth a loud warning at start.
    pub fn anonymous_on_public_host(&self) -> bool {
        !self.has_keys() && !is_loopback(&self.host)
    }

    /// API_KEYS or API_KEYS_FILE is set (an empty file is refused at start).
    fn has_keys(&self) -> bool {
        !self.api_key_list().is_empty() || self.api_keys_file.is_some()
    }

    /// API_KEYS (named `key-1`, ...) and the entries of API_KEYS_FILE, checked: valid
    /// entries, no name or key twice.
    pub fn key_specs(&self) -> Result<Vec<crate::keys::KeySpec>, ConfigError> {
        let mut specs = crate::keys::file::from_list(&self.api_key_list());
        if let Some(path) = &self.api_keys_file {
            specs.extend(crate::keys::file::load(path)?);
        }
        crate::keys::file::check_unique(&specs)?;
        Ok(specs)
    }

    pub fn login_cooldown(&self) -> Duration {
        Duration::from_secs_f64(self.login_cooldown_sec)
    }

    /// `None` = no header-read deadline.
    pub fn header_read_timeout(&self) -> Option<Duration> {
        (self.header_read_timeout_sec > 0.0)
            .then(|| Duration::from_secs_f64(self.header_read_timeout_sec))
    }

    pub fn api_key_list(&self) -> Vec<String> {
        split_list(&self.api_keys)
    }

    /// `None` = unlimited.
    pub fn global_limit(&self) -> Option<usize> {
        usize::try_from(self.max_in_flight).ok().filter(|n| *n > 0)
    }

    pub fn sticky_wait(&self) -> Duration {
        Duration::from_millis(self.sticky_wait_ms)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.queue_timeout_sec)
    }

    pub fn eject_cooldown(&self) -> Duration {
        Duration::from_secs_f64(self.eject_cooldown_sec)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_sec)
    }

    /// The gateway's own deadlines on a sidecar (validated: finite and positive).
    pub fn deadlines(&self) -> crate::pool::Deadlines {
        crate::pool::Deadlines {
            start: Duration::from_secs_f64(self.start_timeout_sec),
            idle: Duration::from_secs_f64(self.idle_timeout_sec),
            write: Duration::from_secs_f64(self.sidecar_write_timeout_sec),
            keepalive: Duration::from_secs_f64(self.mux_keepalive_sec),
        }
    }

    /// The default sidecar token: SIDECAR_TOKEN_FILE wins over SIDECAR_TOKEN (a mounted
    /// Secret is the cluster's source of truth). A file is read again at every connection
    /// attempt, so a rotated Secret is used without a restart.
    pub fn sidecar_token(&self) -> Result<SidecarToken, ConfigError> {
        match &self.sidecar_token_file {
            Some(path) => Ok(SidecarToken::file(path)?),
            None => Ok(SidecarToken::fixed(Some(&self.sidecar_token))),
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "api_keys",
                &format_args!("<{} keys>", self.api_key_list().len()),
            )
            .field("metrics_token_set", &!self.metrics_token.is_empty())
            .field("admin_token_set", &!self.admin_token.is_empty())
            .field("max_in_flight", &self.max_in_flight)
            .field("queue_timeout_sec", &self.queue_timeout_sec)
            .field("max_queued", &self.max_queued)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("default_model", &self.default_model)
            .field("session_reuse_enabled", &self.session_reuse_enabled)
            .field("discovery", &self.discovery)
            .field("sidecars", &self.sidecars)
            .field("k8s_namespace", &self.k8s_namespace)
            .field("k8s_label_selector", &self.k8s_label_selector)
            .field("routing", &self.routing)
            .field("load_factor", &self.load_factor)
            .field("eject_failures", &self.eject_failures)
            .field("eject_cooldown_sec", &self.eject_cooldown_sec)
            .field("max_ejection_percent", &self.max_ejection_percent)
            .field("start_timeout_sec", &self.start_timeout_sec)
            .field("idle_timeout_sec", &self.idle_timeout_sec)
            .field("sidecar_write_timeout_sec", &self.sidecar_write_timeout_sec)
            .field("shutdown_grace_sec", &self.shutdown_grace_sec)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("login_cooldown_sec", &self.login_cooldown_sec)
            .field("header_read_timeout_sec", &self.header_read_timeout_sec)
            .field("max_connections", &self.max_connections)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("mux_keepalive_sec", &self.mux_keepalive_sec)
            .field("http1_max_buf_bytes", &self.http1_max_buf_bytes)
            .field("responses_redis_set", &!self.responses_redis_url.is_empty())
            .finish_non_exhaustive()
    }
}

/// A duration in seconds that `Duration::from_secs_f64` takes (finite, >= 0, not absurd).
fn seconds_ok(s: f64) -> bool {
    s.is_finite() && (0.0..=1e9).contains(&s)
}

/// Whether HOST only listens on this machine: a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> GatewayConfig {
        let mut all = vec!["gateway"];
        all.extend_from_slice(args);
        GatewayConfig::try_parse_from(all).expect("parses")
    }

    #[test]
    fn defaults_match_env_example() {
        let c = parse(&[]);
        assert_eq!(c.port, 8317);
        assert_eq!(c.global_limit(), Some(4));
        assert_eq!(c.queue_timeout(), Duration::from_secs(30));
        assert_eq!(c.default_model, "org_auto");
        assert!(c.session_reuse_enabled);
        assert_eq!(c.routing, RoutingPolicy::Sticky);
        assert!(!c.allow_anonymous);
        assert_eq!(c.login_cooldown(), Duration::from_secs(60));
        assert_eq!(c.header_read_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(c.max_connections, 1000);
        assert_eq!(c.responses_redis_url, "", "responses kept in memory");
        // The defaults listen on 0.0.0.0 without keys: valid only on loopback or with keys
        // (see `keyless_is_refused_off_loopback`).
        parse(&["--host", "127.0.0.1"])
            .validate()
            .expect("defaults are valid on loopback");
    }

    #[test]
    fn keyless_is_refused_off_loopback() {
        let refused = |args: &[&str]| {
            matches!(
                parse(args).validate(),
                Err(ConfigError::AnonymousOnPublicHost { .. })
            )
        };
        assert!(refused(&[]));
        assert!(refused(&["--host", "0.0.0.0"]));
        assert!(refused(&["--host", "10.1.2.3"]));
        assert!(refused(&["--host", "gateway.example"]));
        for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"] {
            parse(&["--host", host])
                .validate()
                .unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        parse(&["--api-keys", "sk-1"]).validate().expect("keys");
        let opted_out = parse(&["--allow-anonymous", "true"]);
        opted_out.validate().expect("explicit opt-out");
        assert!(opted_out.anonymous_on_public_host());
    }

    #[test]
    fn durations_and_caps_are_bounded() {
        let local = ["--host", "127.0.0.1"];
        for arg in [
            "--login-cooldown-sec=-1",
            "--login-cooldown-sec=1e20",
            "--header-read-timeout-sec=NaN",
            "--header-read-timeout-sec=1e20",
            "--max-connections=0",
        ] {
            let mut args = local.to_vec();
            args.push(arg);
            assert!(parse(&args).validate().is_err(), "{arg}");
        }
        let mut args = local.to_vec();
        args.extend(["--header-read-timeout-sec", "0"]);
        assert_eq!(parse(&args).header_read_timeout(), None);
    }

    #[test]
    fn zero_or_negative_limit_is_unlimited() {
        assert_eq!(parse(&["--max-in-flight", "0"]).global_limit(), None);
        assert_eq!(parse(&["--max-in-flight", "-1"]).global_limit(), None);
    }

    #[test]
    fn debug_hides_keys() {
        let c = parse(&[
            "--api-keys",
            "sk-secret-1,sk-secret-2",
            "--sidecar-token",
            "tok",
        ]);
        let text = format!("{c:?}");
        assert!(
            !text.contains("secret") && !text.contains("tok\""),
            "{text}"
        );
        assert_eq!(c.api_key_list().len(), 2);
    }

    #[test]
    fn values_past_their_real_range_are_refused_not_a_panic_later() {
        for args in [
            ["--queue-timeout-sec", "1e20"],
            ["--queue-timeout-sec", "3600.5"],
            ["--queue-timeout-sec", "NaN"],
            ["--queue-timeout-sec", "inf"],
            ["--eject-cooldown-sec", "1e20"],
            ["--load-factor", "1e300"],
        ] {
            let err = parse(&args).validate().expect_err("out of range");
            assert!(err.to_string().contains("from"), "{args:?}: {err}");
        }
        let c = parse(&[
            "--host",
            "127.0.0.1",
            "--queue-timeout-sec",
            "3600",
            "--eject-cooldown-sec",
            "0",
        ]);
        c.validate().expect("the bounds are valid");
        assert_eq!(c.queue_timeout(), Duration::from_secs(3600));
    }

    #[test]
    fn bad_load_factor_is_refused() {
        assert!(parse(&["--load-factor", "0.5"]).validate().is_err());
    }

    #[test]
    fn mux_keepalive_defaults_to_15_s_and_must_be_positive() {
        let c = parse(&["--host", "127.0.0.1"]);
        assert_eq!(c.deadlines().keepalive, Duration::from_secs(15));
        let c = parse(&["--host", "127.0.0.1", "--mux-keepalive-sec", "0.5"]);
        c.validate().expect("sub-second keepalive is valid");
        assert_eq!(c.deadlines().keepalive, Duration::from_millis(500));
        for bad in ["0", "NaN", "1e20"] {
            let err = parse(&["--host", "127.0.0.1", "--mux-keepalive-sec", bad])
                .validate()
                .expect_err("out of range");
            assert!(
                err.to_string().contains("GATEWAY_MUX_KEEPALIVE_SEC"),
                "{bad}: {err}"
            );
        }
    }
}
