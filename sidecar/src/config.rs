//! Command line and environment (names from `.env.example`). Every flag has its env name;
//! secrets are read but never echoed (`hide_env_values`, redacting `Debug`).

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use mux_protocol::SidecarToken;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Sidecar of one Lingma process: supervises it, keeps it logged in, and serves its chats to
/// the gateway over one authenticated, multiplexed WebSocket.
#[derive(Debug, Parser)]
#[command(name = "sidecar", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar (the default when no subcommand is given).
    Run,
    /// Make the Lingma binary available (LINGMA_BIN, the image, or a download into the work
    /// dir, per LINGMA_SOURCE_TYPE) and print it as JSON.
    Bootstrap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AskMode {
    Chat,
    Agent,
}

impl AskMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AskMode::Chat => "chat",
            AskMode::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Upper bounds of the time settings: past these a value is a typo (or an attempt to
/// overflow a deadline), and start-up refuses it with clap's error naming the setting.
const MAX_SECONDS_SHORT: u64 = 3600;
const MAX_SECONDS_LONG: u64 = 86_400;
const MAX_SESSION_TTL_SEC: u64 = 30 * 86_400;

#[derive(Clone, Args)]
pub struct Config {
    // --- listening for the gateway ---
    /// Address the sidecar listens on (mux WebSocket, probes, metrics).
    #[arg(long, env = "SIDECAR_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, env = "SIDECAR_PORT", default_value_t = 8318)]
    pub port: u16,
    /// Name reported to the gateway (default: the host name, i.e. the pod name).
    #[arg(long, env = "SIDECAR_NAME")]
    pub name: Option<String>,
    /// Bearer token the gateway must present.
    #[arg(long, env = "SIDECAR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (a mounted Secret).
    #[arg(long, env = "SIDECAR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds open chats may take to finish after SIGTERM.
    #[arg(long, env = "SIDECAR_DRAIN_TIMEOUT_SEC", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_SHORT))]
    pub drain_timeout_sec: u64,
    /// Seconds between WebSocket pings to each gateway; a gateway silent for three times
    /// this long (no frame, not even a pong) is disconnected.
    #[arg(long, env = "SIDECAR_KEEPALIVE_SEC", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_SHORT))]
    pub keepalive_sec: u64,

    // --- the Lingma process ---
    /// Path of the Lingma binary (or of lingma-sim); empty = install it per LINGMA_SOURCE_TYPE.
    #[arg(long, env = "LINGMA_BIN", value_parser = any_path)]
    pub lingma_bin: Option<PathBuf>,
    /// Attach to a Lingma already listening on LINGMA_SOCKET_PORT instead of starting one.
    #[arg(long, env = "LINGMA_ATTACH", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub lingma_attach: bool,
    #[arg(long, env = "LINGMA_WORK_DIR", default_value = "/data/lingma")]
    pub lingma_work_dir: PathBuf,
    #[arg(long, env = "LINGMA_SOCKET_PORT", default_value_t = 36510)]
    pub lingma_socket_port: u16,
    #[arg(long, env = "LINGMA_HTTP_PORT", default_value_t = 37510)]
    pub lingma_http_port: u16,
    /// Seconds a started Lingma may take to accept WebSocket connections.
    #[arg(long, env = "LINGMA_STARTUP_TIMEOUT", default_value_t = 40,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_SHORT))]
    pub lingma_startup_timeout: u64,
    /// Deadline, in seconds, of one JSON-RPC call to Lingma.
    #[arg(long, env = "LINGMA_RPC_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_SHORT))]
    pub lingma_rpc_timeout: u64,
    /// Chats Lingma runs at once; 0 = unlimited.
    #[arg(long, env = "LINGMA_MAX_CONCURRENT_CHATS", default_value_t = 1)]
    pub lingma_max_concurrent_chats: u32,
    /// A chat that receives nothing from Lingma for this long ends with a timeout error.
    #[arg(long, env = "LINGMA_CHAT_IDLE_TIMEOUT_SEC", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_LONG))]
    pub lingma_chat_idle_timeout_sec: u64,

    // --- chat defaults ---
    #[arg(long, env = "DEFAULT_MODEL", default_value = "org_auto")]
    pub default_model: String,
    #[arg(long, env = "DEFAULT_ASK_MODE", value_enum, default_value = "chat")]
    pub default_ask_mode: AskMode,
    /// Enterprise dedicated-domain endpoint (set with config/updateEndpoint on connect).
    #[arg(long, env = "DEDICATED_DOMAIN_URL")]
    pub dedicated_domain_url: Option<String>,

    // --- login ---
    #[arg(long, env = "AUTO_LOGIN_ENABLED", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_login_enabled: bool,
    /// Run the login browser headless (used by the browser login driver, issue 7).
    #[arg(long, env = "AUTO_LOGIN_HEADLESS", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_login_headless: bool,
    /// Login driver: auto (loopback for a login URL on 127.0.0.1/localhost, else the browser),
    /// browser (headless Chromium + chromedriver) or loopback (plain HTTP, the simulator).
    #[arg(long, env = "AUTO_LOGIN_DRIVER", value_enum, default_value = "auto")]
    pub auto_login_driver: LoginDriverChoice,
    /// Hosts whose pages may receive the password in the browser login, comma-separated; each
    /// matches itself and its subdomains, https only (empty = the default).
    #[arg(
        long,
        env = "AUTO_LOGIN_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "alibabacloud.com,aliyun.com"
    )]
    pub auto_login_allowed_hosts: Vec<String>,
    /// Also let the browser type the password into plain-http pages on loopback hosts listed
    /// in AUTO_LOGIN_ALLOWED_HOSTS: for the simulator's form and tests only.
    #[arg(long, env = "AUTO_LOGIN_ALLOW_HTTP_LOOPBACK", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_login_allow_http_loopback: bool,
    /// Failure screenshots of the browser login kept in <LINGMA_WORK_DIR>/login-screenshots
    /// (the newest; 0 = take none).
    #[arg(long, env = "AUTO_LOGIN_SCREENSHOT_KEEP", default_value_t = browser_login::DEFAULT_SCREENSHOT_KEEP,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1000))]
    pub auto_login_screenshot_keep: usize,
    /// Seconds one login attempt may take.
    #[arg(long, env = "AUTO_LOGIN_TIMEOUT", default_value_t = 180,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_SHORT))]
    pub auto_login_timeout: u64,
    /// Attempts after the first failure before the login state becomes failed.
    #[arg(long, env = "AUTO_LOGIN_MAX_RETRY", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub auto_login_max_retry: u32,
    /// Seconds between login checks (auth/status) while connected, to notice expiry.
    #[arg(long, env = "SIDECAR_LOGIN_CHECK_INTERVAL_SEC", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_LONG))]
    pub login_check_interval_sec: u64,
    #[arg(long, env = "LINGMA_USERNAME")]
    pub lingma_username: Option<String>,
    #[arg(long, env = "LINGMA_PASSWORD", hide_env_values = true)]
    pub lingma_password: Option<String>,
    /// Accounts: CSV "u1:p1,u2:p2" or JSON [{"username","password"}].
    #[arg(long, env = "LINGMA_ACCOUNTS", hide_env_values = true)]
    pub lingma_accounts: Option<String>,
    /// Accounts as a file (same formats as LINGMA_ACCOUNTS).
    #[arg(long, env = "LINGMA_ACCOUNTS_FILE")]
    pub lingma_accounts_file: Option<PathBuf>,
    /// Which account this process uses: a number, or "auto" (ordinal at the end of the host name).
    #[arg(long, env = "LINGMA_ACCOUNT_SLOT", default_value = "auto")]
    pub lingma_account_slot: String,

    // --- session map ---
    #[arg(long, env = "SESSION_REUSE_ENABLED", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub session_reuse_enabled: bool,
    #[arg(long, env = "SESSION_CACHE_MAX_ENTRIES", default_value_t = 256)]
    pub session_cache_max_entries: usize,
    #[arg(long, env = "SESSION_CACHE_TTL_SEC", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SESSION_TTL_SEC))]
    pub session_cache_ttl_sec: u64,

    // --- telemetry ---
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    // --- where the Lingma binary comes from when LINGMA_BIN is empty ---
    #[command(flatten)]
    pub bootstrap: lingma_bootstrap::BootstrapArgs,

    // --- announcements to the gateways ---
    /// Coalescing window, in ms, of the `sessions` (held/dropped keys) and `load` messages
    /// on each gateway connection: the first change after a quiet window goes out at once,
    /// later ones within the window are batched (0 = every change at once).
    #[arg(long, env = "SIDECAR_ANNOUNCE_COALESCE_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub announce_coalesce_ms: u64,
    // --- quota-aware account (`crate::quota`) ---
    /// Seconds the account sits out after Lingma says it is rate limited or out of quota
    /// (the first pause; each one in a row doubles, up to SIDECAR_QUOTA_PAUSE_MAX_SEC).
    /// 0 = never pause: each limited chat fails on its own.
    #[arg(long, env = "SIDECAR_QUOTA_PAUSE_SEC", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_SHORT))]
    pub quota_pause_sec: u64,
    /// Longest pause, in seconds.
    #[arg(long, env = "SIDECAR_QUOTA_PAUSE_MAX_SEC", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS_LONG))]
    pub quota_pause_max_sec: u64,
    /// `chat/finish` codes (extra.errorCode or statusCode) that mean the account's quota is
    /// used up, comma-separated (110: Qoder CN's "daily usage limit"; empty = none).
    #[arg(
        long,
        env = "LINGMA_QUOTA_ERROR_CODES",
        value_delimiter = ',',
        default_value = "110"
    )]
    pub lingma_quota_error_codes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoginDriverChoice {
    Auto,
    Browser,
    Loopback,
}

/// `.env.example` writes `LINGMA_BIN=` for "unset": an empty path must parse (clap's default
/// PathBuf parser rejects it); [`crate::lingma_process::resolve_bin`] treats it as unset.
fn any_path(text: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text))
}

impl std::fmt::Debug for Config {
    // Secrets (token, password, accounts) must never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("token", &redacted(&self.token))
            .field("token_file", &self.token_file)
            .field("lingma_bin", &self.lingma_bin)
            .field("lingma_attach", &self.lingma_attach)
            .field("lingma_work_dir", &self.lingma_work_dir)
            .field("lingma_socket_port", &self.lingma_socket_port)
            .field("lingma_http_port", &self.lingma_http_port)
            .field(
                "lingma_max_concurrent_chats",
                &self.lingma_max_concurrent_chats,
            )
            .field("default_model", &self.default_model)
            .field("default_ask_mode", &self.default_ask_mode)
            .field("auto_login_enabled", &self.auto_login_enabled)
            .field("auto_login_driver", &self.auto_login_driver)
            .field("auto_login_allowed_hosts", &self.auto_login_allowed_hosts)
            .field(
                "auto_login_allow_http_loopback",
                &self.auto_login_allow_http_loopback,
            )
            .field("lingma_username", &self.lingma_username)
            .field("lingma_password", &redacted(&self.lingma_password))
            .field("lingma_accounts", &redacted(&self.lingma_accounts))
            .field("lingma_accounts_file", &self.lingma_accounts_file)
            .field("session_reuse_enabled", &self.session_reuse_enabled)
            .field("quota_pause_sec", &self.quota_pause_sec)
            .field("quota_pause_max_sec", &self.quota_pause_max_sec)
            .field("lingma_quota_error_codes", &self.lingma_quota_error_codes)
            .finish_non_exhaustive()
    }
}

/// Errors in the configuration; never carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid listen address {0}")]
    ListenAddress(String),
    #[error("cannot read SIDECAR_TOKEN_FILE {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("SIDECAR_TOKEN_FILE {0} is empty")]
    EmptyTokenFile(String),
    #[error("LINGMA_QUOTA_ERROR_CODES: {0:?} is not a number")]
    QuotaCode(String),
}

impl Config {
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let text = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        text.parse()
            .map_err(|_| ConfigError::ListenAddress(text.clone()))
    }

    /// The gateway token: SIDECAR_TOKEN_FILE wins over SIDECAR_TOKEN; `None` = no auth.
    pub fn gateway_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TokenFile {
                path: path.display().to_string(),
                reason: e.kind().to_string(),
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(ConfigError::EmptyTokenFile(path.display().to_string()));
            }
            return Ok(Some(token.to_owned()));
        }
        Ok(self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned))
    }

    /// The gateway token as the HTTP surface checks it: a SIDECAR_TOKEN_FILE is read again
    /// at every check, so a rotated Secret is accepted without a restart. Start-time errors
    /// are those of [`Config::gateway_token`].
    pub fn gateway_token_source(&self) -> Result<SidecarToken, ConfigError> {
        let first = self.gateway_token()?;
        match &self.token_file {
            Some(path) => SidecarToken::file(path).map_err(|e| ConfigError::TokenFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
            None => Ok(SidecarToken::fixed(first.as_deref())),
        }
    }

    /// Name reported to the gateway: SIDECAR_NAME, else the host name.
    pub fn instance_name(&self) -> String {
        self.name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(crate::accounts::host_name)
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_secs(self.lingma_rpc_timeout.max(1))
    }

    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.lingma_startup_timeout.max(1))
    }

    pub fn chat_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.lingma_chat_idle_timeout_sec.max(1))
    }

    pub fn announce_window(&self) -> Duration {
        Duration::from_millis(self.announce_coalesce_ms)
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_sec.max(1))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_sec)
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.auto_login_timeout.max(1))
    }

    /// AUTO_LOGIN_ALLOWED_HOSTS without blank entries; all blank = the default list.
    pub fn login_allowed_hosts(&self) -> Vec<String> {
        let hosts: Vec<String> = self
            .auto_login_allowed_hosts
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        if hosts.is_empty() {
            browser_login::DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect()
        } else {
            hosts
        }
    }

    /// Where the browser login's failure screenshots go.
    pub fn login_screenshot_dir(&self) -> PathBuf {
        self.lingma_work_dir.join("login-screenshots")
    }

    pub fn login_check_interval(&self) -> Duration {
        Duration::from_secs(self.login_check_interval_sec.max(1))
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_cache_ttl_sec)
    }

    /// Settings of `lingma_bootstrap::ensure_binary` (LINGMA_BIN empty = unset).
    pub fn bootstrap_config(&self) -> lingma_bootstrap::BootstrapConfig {
        lingma_bootstrap::BootstrapConfig::from_args(
            self.bootstrap.clone(),
            &self.lingma_work_dir,
            self.lingma_bin
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
        )
    }

    /// How Lingma's limits are recognised and how long the account pauses; a code that is
    /// not a number is refused here, naming the setting.
    pub fn quota_settings(&self) -> Result<crate::quota::QuotaSettings, ConfigError> {
        let quota_codes = self
            .lingma_quota_error_codes
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| ConfigError::QuotaCode(c.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::quota::QuotaSettings {
            pause: Duration::from_secs(self.quota_pause_sec),
            max_pause: Duration::from_secs(self.quota_pause_max_sec.max(self.quota_pause_sec)),
            quota_codes,
        })
    }

    /// WebSocket URL of the Lingma process.
    pub fn lingma_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.lingma_socket_port)
    }

    /// Dedicated domain, when one is set (empty = public cloud).
    pub fn dedicated_domain(&self) -> Option<&str> {
        self.dedicated_domain_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}

#[cfg(test)]
mod tests;
