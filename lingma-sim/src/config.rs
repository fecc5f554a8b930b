//! Settings of one simulator, shared by the command line (`lingma-sim start ...`) and the
//! library (`lingma_sim::start(SimConfig)`). Every flag also reads an environment variable:
//! the three Lingma-compatible ones use the project's names (`LINGMA_WORK_DIR`, ...), the
//! simulator's own ones `LINGMA_SIM_<NAME>`.

use crate::fault::Fault;
use crate::tools::ToolStyle;
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How `auth/login` lets a test log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    /// The login URL is the simulator's own `/auth/callback?state=...`; a GET there logs in.
    #[default]
    Callback,
    /// The login URL is an HTML form (`/login?state=...`) that checks username/password
    /// and redirects to the callback, like Alibaba Cloud's account page.
    Form,
}

/// An obstacle on the login form, to exercise the auto-login driver's failure path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginChallenge {
    #[default]
    None,
    /// Serve a slider-captcha page instead of the form: no login is possible.
    Captcha,
}

/// What a `chat/ask` gets when the concurrency cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// A JSON-RPC error on `chat/ask` (code -32002).
    #[default]
    Error,
    /// Accept the ask, then `chat/finish` with statusCode 429.
    #[value(name = "finish429")]
    #[serde(rename = "finish429")]
    Finish429,
}

/// Model keys served by `config/queryModels` when `--models` is not given.
pub const DEFAULT_MODELS: &[&str] = &[
    "dashscope_qwen3_coder_default",
    "dashscope_qwen3_coder",
    "dashscope_qwen_max_latest",
    "dashscope_qwen_plus_20250428_thinking",
];

#[derive(Clone, Args)]
pub struct SimConfig {
    /// Working directory: login state (cache/user), sessions (cache/sessions.json) and
    /// logs/lingma.log live here, so a restart keeps them. Without it nothing is persisted.
    #[arg(long = "workDir", env = "LINGMA_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// WebSocket port (127.0.0.1 only; 0 = any free port).
    #[arg(
        long = "socketPort",
        env = "LINGMA_SOCKET_PORT",
        default_value_t = 36510
    )]
    pub socket_port: u16,

    /// HTTP port for the login callback/form and the control API (127.0.0.1 only; 0 = any).
    #[arg(long = "httpPort", env = "LINGMA_HTTP_PORT", default_value_t = 37510)]
    pub http_port: u16,

    /// Accepted for command-line compatibility with Lingma; ignored (always WebSocket).
    #[arg(long = "transportType", env = "LINGMA_SIM_TRANSPORT_TYPE")]
    pub transport_type: Option<String>,

    /// Accepted for command-line compatibility with Lingma (dedicated domain); ignored.
    #[arg(long = "endpoint", env = "LINGMA_SIM_ENDPOINT")]
    pub endpoint: Option<String>,

    /// Start logged in (as --accept-username) without any login step.
    #[arg(long, env = "LINGMA_SIM_LOGGED_IN", value_parser = BoolishValueParser::new())]
    pub logged_in: bool,

    /// How `auth/login` logs in: callback (GET the returned URL) or form (post credentials).
    #[arg(long, env = "LINGMA_SIM_LOGIN_MODE", value_enum, default_value_t = LoginMode::Callback)]
    pub login_mode: LoginMode,

    /// Username the login form accepts (also the account name after any login).
    #[arg(
        long,
        env = "LINGMA_SIM_ACCEPT_USERNAME",
        default_value = "sim-user@example.com"
    )]
    pub accept_username: String,

    /// Password the login form accepts.
    #[arg(
        long,
        env = "LINGMA_SIM_ACCEPT_PASSWORD",
        default_value = "sim-password",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub accept_password: String,

    /// Obstacle on the login form: none or captcha (a page no driver can pass).
    #[arg(long, env = "LINGMA_SIM_LOGIN_CHALLENGE", value_enum, default_value_t = LoginChallenge::None)]
    pub login_challenge: LoginChallenge,

    /// Number of `chat/answer` deltas per answer.
    #[arg(long, env = "LINGMA_SIM_CHUNKS", default_value_t = 8)]
    pub chunks: usize,

    /// Very long answers: pad every plain answer to at least N characters and send it as N
    /// `chat/answer` deltas (overrides --chunks); 0 = off.
    #[arg(long, env = "LINGMA_SIM_ANSWER_PIECES", default_value_t = 0)]
    pub answer_pieces: usize,

    /// How a question carrying the gateway's tool contract is answered: well, malformed,
    /// partial, prose, multiple or ignore (see docs/simulator.md, Tool calling).
    #[arg(long, env = "LINGMA_SIM_TOOL_STYLE", value_enum, default_value_t = ToolStyle::Well)]
    pub tool_style: ToolStyle,

    /// Under a tool contract with choice auto, keep calling tools until the session has seen
    /// this many tool results, then answer in text.
    #[arg(long, env = "LINGMA_SIM_TOOL_RESULTS", default_value_t = 1)]
    pub tool_results: u32,

    /// Delay before the first answer delta, in milliseconds (0 = no sleep at all).
    #[arg(long, env = "LINGMA_SIM_FIRST_TOKEN_DELAY_MS", default_value_t = 0)]
    pub first_token_delay_ms: u64,

    /// Delay between answer deltas, in milliseconds (0 = no sleep at all).
    #[arg(long, env = "LINGMA_SIM_CHUNK_DELAY_MS", default_value_t = 0)]
    pub chunk_delay_ms: u64,

    /// Chats in flight per process; 0 = unlimited.
    #[arg(long, env = "LINGMA_SIM_MAX_CONCURRENT_CHATS", default_value_t = 1)]
    pub max_concurrent_chats: usize,

    /// What an ask over the cap gets: error (JSON-RPC error) or finish429 (chat/finish 429).
    #[arg(long, env = "LINGMA_SIM_OVER_LIMIT", value_enum, default_value_t = OverLimit::Error)]
    pub over_limit: OverLimit,

    /// Emit `chat/think` start/done before the answer.
    #[arg(long, env = "LINGMA_SIM_THINK", value_parser = BoolishValueParser::new())]
    pub think: bool,

    /// Insert empty `chat/answer` deltas (real Lingma sends some).
    #[arg(long, env = "LINGMA_SIM_EMPTY_DELTAS", value_parser = BoolishValueParser::new())]
    pub empty_deltas: bool,

    /// Push a `window/logMessage` notification before answering `initialize` (real Lingma
    /// may), to test clients that must skip it.
    #[arg(long, env = "LINGMA_SIM_INIT_LOG_MESSAGE", value_parser = BoolishValueParser::new())]
    pub init_log_message: bool,

    /// After each successful `chat/finish`, push a `context/usage/sync` notification
    /// (`usedTokens` estimated as bytes / 4, `limitTokens` 131072), like Qoder CN.
    #[arg(long, env = "LINGMA_SIM_USAGE_SYNC", value_parser = BoolishValueParser::new())]
    pub usage_sync: bool,

    /// Pack several frames into one WebSocket message (tests client buffering).
    #[arg(long, env = "LINGMA_SIM_COALESCE_FRAMES", value_parser = BoolishValueParser::new())]
    pub coalesce_frames: bool,

    /// Split every frame over two WebSocket messages (tests client buffering).
    #[arg(long, env = "LINGMA_SIM_SPLIT_FRAMES", value_parser = BoolishValueParser::new())]
    pub split_frames: bool,

    /// Model keys for `config/queryModels`, comma-separated (default: a realistic list incl.
    /// dashscope_qwen3_coder and dashscope_qwen_max_latest).
    #[arg(long, env = "LINGMA_SIM_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,

    /// A fault applied to chats from the start (see docs/simulator.md).
    #[arg(long, env = "LINGMA_SIM_FAULT", value_enum, default_value_t = Fault::None)]
    pub fault: Fault,

    /// Apply --fault only to the next N chats (default: until cleared).
    #[arg(long, env = "LINGMA_SIM_FAULT_TIMES")]
    pub fault_times: Option<u32>,

    /// Bearer token of the control API on the HTTP port; the control API is off without it.
    #[arg(long, env = "LINGMA_SIM_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<String>,

    /// How long a pushed event may wait for the client's ack before the simulator logs
    /// "no response from client, timeout reached" and counts it in unacked_events.
    #[arg(long, env = "LINGMA_SIM_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub ack_timeout_ms: u64,

    /// Wait for the ack of each event before sending the next (reproduces the off-by-one
    /// hazard of clients that do not ack); gives up after --ack-timeout-ms.
    #[arg(long, env = "LINGMA_SIM_WAIT_FOR_ACK", value_parser = BoolishValueParser::new())]
    pub wait_for_ack: bool,

    /// First-token delay of the `slow` fault, in milliseconds.
    #[arg(long, env = "LINGMA_SIM_SLOW_FIRST_TOKEN_MS", default_value_t = 3000)]
    pub slow_first_token_ms: u64,

    /// Inter-chunk delay of the `slow` fault, in milliseconds.
    #[arg(long, env = "LINGMA_SIM_SLOW_CHUNK_DELAY_MS", default_value_t = 300)]
    pub slow_chunk_delay_ms: u64,

    /// Sessions kept (least recently used ones are forgotten beyond it).
    #[arg(long, env = "LINGMA_SIM_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: usize,

    /// Log level or tracing filter directive.
    #[arg(long, env = "LINGMA_SIM_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Whether the `crash` fault exits the process (the binary) or only stops this
    /// simulator's servers (the library, so a test process survives it).
    #[arg(skip)]
    pub crash_exits_process: bool,

    /// Prefill cost: extra delay before the first answer delta per KiB of the question
    /// (`questionText` bytes), in microseconds. Real Lingma re-reads the whole flattened
    /// history on a new session, while a continued session is sent only the new turn; with
    /// this on, time to first token shows what session reuse saves. 0 = off.
    #[arg(long, env = "LINGMA_SIM_PREFILL_US_PER_KIB", default_value_t = 0)]
    pub prefill_us_per_kib: u64,
}

impl Default for SimConfig {
    /// Library defaults: like the flags, but ephemeral ports and no workDir.
    fn default() -> Self {
        Self {
            work_dir: None,
            socket_port: 0,
            http_port: 0,
            transport_type: None,
            endpoint: None,
            logged_in: false,
            login_mode: LoginMode::Callback,
            accept_username: "sim-user@example.com".to_owned(),
            accept_password: "sim-password".to_owned(),
            login_challenge: LoginChallenge::None,
            chunks: 8,
            answer_pieces: 0,
            tool_style: ToolStyle::Well,
            tool_results: 1,
            first_token_delay_ms: 0,
            chunk_delay_ms: 0,
            max_concurrent_chats: 1,
            over_limit: OverLimit::Error,
            think: false,
            empty_deltas: false,
            usage_sync: false,
            init_log_message: false,
            coalesce_frames: false,
            split_frames: false,
            models: Vec::new(),
            fault: Fault::None,
            fault_times: None,
            control_token: None,
            ack_timeout_ms: 5000,
            wait_for_ack: false,
            slow_first_token_ms: 3000,
            slow_chunk_delay_ms: 300,
            max_sessions: 10_000,
            log_level: "info".to_owned(),
            crash_exits_process: false,
            prefill_us_per_kib: 0,
        }
    }
}

impl std::fmt::Debug for SimConfig {
    // The control token and the accepted password must not reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("work_dir", &self.work_dir)
            .field("socket_port", &self.socket_port)
            .field("http_port", &self.http_port)
            .field("logged_in", &self.logged_in)
            .field("login_mode", &self.login_mode)
            .field("accept_username", &self.accept_username)
            .field("login_challenge", &self.login_challenge)
            .field("chunks", &self.chunks)
            .field("answer_pieces", &self.answer_pieces)
            .field("tool_style", &self.tool_style)
            .field("tool_results", &self.tool_results)
            .field("first_token_delay_ms", &self.first_token_delay_ms)
            .field("chunk_delay_ms", &self.chunk_delay_ms)
            .field("prefill_us_per_kib", &self.prefill_us_per_kib)
            .field("max_concurrent_chats", &self.max_concurrent_chats)
            .field("over_limit", &self.over_limit)
            .field("fault", &self.fault)
            .field("fault_times", &self.fault_times)
            .field("control_api", &self.control_token.is_some())
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// The prefill delay of a question of `question_bytes` bytes (--prefill-us-per-kib).
    pub fn prefill_delay(&self, question_bytes: usize) -> std::time::Duration {
        let bytes = u64::try_from(question_bytes).unwrap_or(u64::MAX);
        let us = bytes.saturating_mul(self.prefill_us_per_kib) / 1024;
        std::time::Duration::from_micros(us)
    }

    /// The model keys actually served.
    pub fn model_keys(&self) -> Vec<String> {
        let keys: Vec<String> = self
            .models
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            DEFAULT_MODELS.iter().map(|k| (*k).to_owned()).collect()
        } else {
            keys
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn prefill_grows_with_the_question_and_is_off_by_default() {
        let mut config = SimConfig::default();
        assert_eq!(config.prefill_delay(1 << 20), Duration::ZERO);
        config.prefill_us_per_kib = 2000;
        assert_eq!(config.prefill_delay(1024), Duration::from_millis(2));
        assert_eq!(config.prefill_delay(10 * 1024), Duration::from_millis(20));
        assert_eq!(config.prefill_delay(512), Duration::from_millis(1));
        assert_eq!(config.prefill_delay(0), Duration::ZERO);
        config.prefill_us_per_kib = u64::MAX;
        assert!(
            config.prefill_delay(usize::MAX) > Duration::ZERO,
            "saturates, no overflow"
        );
    }
}
