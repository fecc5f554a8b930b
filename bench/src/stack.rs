//! Starting the real binaries (simulator, sidecar, gateway) on 127.0.0.1 with free ports,
//! waiting until each is ready, and reading their metrics and memory. Shared by the bench
//! and the fault suite.

use crate::prom::Metrics;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use test_support::{ChildProcess, ProcessBuilder, free_port, wait_for_http, wait_for_port};

/// How long a process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Paths of the three binaries a stack runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub sim: PathBuf,
    pub sidecar: PathBuf,
    pub gateway: PathBuf,
}

impl Binaries {
    /// Debug builds, built on first use (integration tests).
    pub fn debug() -> Self {
        Self {
            sim: test_support::binary("lingma-sim", "lingma-sim"),
            sidecar: test_support::binary("sidecar", "sidecar"),
            gateway: test_support::binary("gateway", "gateway"),
        }
    }

    /// Release builds (the bench): `cargo build --release` of the three packages, a quick
    /// no-op when they are fresh.
    pub fn release() -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(test_support::workspace_root())
            .args(["build", "--release", "--quiet"])
            .args(["-p", "lingma-sim", "--bin", "lingma-sim"])
            .args(["-p", "sidecar", "--bin", "sidecar"])
            .args(["-p", "gateway", "--bin", "gateway"])
            .status()
            .context("running cargo build --release")?;
        if !status.success() {
            bail!("cargo build --release of lingma-sim, sidecar and gateway failed");
        }
        Ok(Self::in_dir(&target_dir().join("release")))
    }

    /// Binaries already built in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            sim: dir.join("lingma-sim"),
            sidecar: dir.join("sidecar"),
            gateway: dir.join("gateway"),
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| test_support::workspace_root().join("target"))
}

/// Memory and thread count of a process, from /proc/<pid>/status.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcStatus {
    pub rss_bytes: u64,
    pub threads: u64,
}

pub fn proc_status(pid: u32) -> Option<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(ProcStatus {
        rss_bytes: field("VmRSS:")? * 1024,
        threads: field("Threads:").unwrap_or(0),
    })
}

// ---------------------------------------------------------------------------------------
// simulator
// ---------------------------------------------------------------------------------------

/// Settings of one simulator (flags of `lingma-sim start`).
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub chunks: u32,
    pub first_token_delay_ms: u64,
    pub chunk_delay_ms: u64,
    /// 0 = unlimited.
    pub max_concurrent_chats: u32,
    pub extra_args: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            chunks: 8,
            first_token_delay_ms: 0,
            chunk_delay_ms: 0,
            max_concurrent_chats: 0,
            extra_args: Vec::new(),
        }
    }
}

pub struct Sim {
    process: ChildProcess,
    bin: PathBuf,
    options: SimOptions,
    work_dir: tempfile::TempDir,
    pub ws_port: u16,
    pub http_port: u16,
    control_token: String,
    http: reqwest::Client,
}

impl Sim {
    pub async fn start(bin: &Path, options: SimOptions) -> Result<Self> {
        let work_dir = tempfile::Builder::new().prefix("bench-sim-").tempdir()?;
        let ws_port = free_port();
        let http_port = free_port();
        let control_token = format!("sim-control-{}", uuid_like());
        let process = spawn_sim(
            bin,
            &options,
            work_dir.path(),
            ws_port,
            http_port,
            &control_token,
        )?;
        let sim = Self {
            process,
            bin: bin.to_path_buf(),
            options,
            work_dir,
            ws_port,
            http_port,
            control_token,
            http: reqwest::Client::new(),
        };
        wait_for_port(sim.ws_port, READY_TIMEOUT).await?;
        Ok(sim)
    }

    /// Start it again on the same ports and workDir (after a crash or a kill).
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn_sim(
            &self.bin,
            &self.options,
            self.work_dir.path(),
            self.ws_port,
            self.http_port,
            &self.control_token,
        )?;
        wait_for_port(self.ws_port, READY_TIMEOUT).await
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    pub fn output(&self) -> String {
        self.process.output()
            + &std::fs::read_to_string(self.work_dir.path().join("logs/lingma.log"))
                .unwrap_or_default()
    }

    pub fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    /// `GET /control/stats`.
    pub async fn stats(&self) -> Result<serde_json::Value> {
        let resp = self
            .http
            .get(format!("http://127.0.0.1:{}/control/stats", self.http_port))
            .bearer_auth(&self.control_token)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.json().await?)
    }

    /// `POST` to a body-less control endpoint, e.g. `/control/login`.
    pub async fn control_post(&self, path: &str) -> Result<()> {
        self.http
            .post(format!("http://127.0.0.1:{}{path}", self.http_port))
            .bearer_auth(&self.control_token)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `POST /control/fault`: `times = None` applies it until cleared; `"none"` clears.
    pub async fn set_fault(&self, fault: &str, times: Option<u32>) -> Result<()> {
        let mut body = serde_json::json!({ "fault": fault });
        if let Some(n) = times {
            body["times"] = n.into();
        }
        self.http
            .post(format!("http://127.0.0.1:{}/control/fault", self.http_port))
            .bearer_auth(&self.control_token)
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

fn spawn_sim(
    bin: &Path,
    o: &SimOptions,
    work_dir: &Path,
    ws_port: u16,
    http_port: u16,
    control_token: &str,
) -> Result<ChildProcess> {
    let proc = ProcessBuilder::new("lingma-sim", bin)
        .arg("start")
        .arg("--workDir")
        .arg(work_dir)
        .args(["--socketPort", &ws_port.to_string()])
        .args(["--httpPort", &http_port.to_string()])
        .arg("--logged-in")
        .args([
            "--max-concurrent-chats",
            &o.max_concurrent_chats.to_string(),
        ])
        .args([
            "--first-token-delay-ms",
            &o.first_token_delay_ms.to_string(),
        ])
        .args(["--chunk-delay-ms", &o.chunk_delay_ms.to_string()])
        .args(["--chunks", &o.chunks.to_string()])
        .args(["--control-token", control_token])
        .args(["--log-level", "warn"])
        .args(o.extra_args.iter())
        .spawn()
        .context("starting lingma-sim")?;
    Ok(proc)
}

/// A random-enough suffix for tokens and names (no extra dependency for real UUIDs).
pub fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

// ---------------------------------------------------------------------------------------
// sidecar
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct SidecarOptions {
    pub name: String,
    pub token: String,
    /// LINGMA_MAX_CONCURRENT_CHATS.
    pub max_concurrent_chats: u32,
    pub session_reuse: bool,
    pub log_level: String,
    pub extra_env: Vec<(String, String)>,
}

impl Default for SidecarOptions {
    fn default() -> Self {
        Self {
            name: "sidecar-0".to_owned(),
            token: format!("sidecar-token-{}", uuid_like()),
            max_concurrent_chats: 1,
            session_reuse: true,
            log_level: "warn".to_owned(),
            extra_env: Vec::new(),
        }
    }
}

pub struct Sidecar {
    process: ChildProcess,
    bin: PathBuf,
    pub options: SidecarOptions,
    sim_ws_port: u16,
    sim_http_port: u16,
    work_dir: PathBuf,
    pub port: u16,
}

impl Sidecar {
    /// Start a sidecar attached to `sim` and wait for `/readyz`.
    pub async fn start(bin: &Path, sim: &Sim, options: SidecarOptions) -> Result<Self> {
        let port = free_port();
        let mut sidecar = Self {
            process: spawn_sidecar(
                bin,
                &options,
                sim.ws_port,
                sim.http_port,
                sim.work_dir(),
                port,
            )?,
            bin: bin.to_path_buf(),
            options,
            sim_ws_port: sim.ws_port,
            sim_http_port: sim.http_port,
            work_dir: sim.work_dir().to_path_buf(),
            port,
        };
        sidecar.wait_ready().await?;
        Ok(sidecar)
    }

    pub async fn wait_ready(&mut self) -> Result<()> {
        wait_for_http(&format!("{}/readyz", self.http_url()), 200, READY_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "sidecar not ready; output:\n{}",
                    tail(&self.process.output())
                )
            })
    }

    /// Kill it and start it again on the same port.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn_sidecar(
            &self.bin,
            &self.options,
            self.sim_ws_port,
            self.sim_http_port,
            &self.work_dir,
            self.port,
        )?;
        self.wait_ready().await
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    pub fn output(&self) -> String {
        self.process.output()
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Base URL as the gateway's GATEWAY_SIDECARS wants it.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        Metrics::scrape(
            &format!("{}/metrics", self.http_url()),
            Some(&self.options.token),
        )
        .await
    }
}

fn spawn_sidecar(
    bin: &Path,
    o: &SidecarOptions,
    sim_ws_port: u16,
    sim_http_port: u16,
    work_dir: &Path,
    port: u16,
) -> Result<ChildProcess> {
    let mut builder = ProcessBuilder::new(&o.name, bin)
        .env("SIDECAR_HOST", "127.0.0.1")
        .env("SIDECAR_PORT", port.to_string())
        .env("SIDECAR_NAME", &o.name)
        .env("SIDECAR_TOKEN", &o.token)
        .env("LINGMA_ATTACH", "true")
        .env("LINGMA_SOCKET_PORT", sim_ws_port.to_string())
        .env("LINGMA_HTTP_PORT", sim_http_port.to_string())
        .env("LINGMA_WORK_DIR", work_dir)
        .env(
            "LINGMA_MAX_CONCURRENT_CHATS",
            o.max_concurrent_chats.to_string(),
        )
        .env("AUTO_LOGIN_ENABLED", "false")
        .env("SESSION_REUSE_ENABLED", o.session_reuse.to_string())
        .env("LOG_LEVEL", &o.log_level);
    for (k, v) in &o.extra_env {
        builder = builder.env(k, v);
    }
    builder.spawn().context("starting sidecar")
}

// ---------------------------------------------------------------------------------------
// gateway
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// (name, ws url) of each sidecar.
    pub sidecars: Vec<(String, String)>,
    pub sidecar_token: String,
    /// GATEWAY_MAX_IN_FLIGHT (<= 0 = unlimited).
    pub max_in_flight: i64,
    pub queue_timeout_sec: f64,
    /// sticky | least-in-flight | round-robin
    pub routing: String,
    /// API_KEYS, comma-separated; empty = no auth.
    pub api_keys: String,
    pub session_reuse: bool,
    pub log_level: String,
    pub extra_env: Vec<(String, String)>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            sidecars: Vec::new(),
            sidecar_token: String::new(),
            max_in_flight: 0,
            queue_timeout_sec: 30.0,
            routing: "sticky".to_owned(),
            api_keys: String::new(),
            session_reuse: true,
            log_level: "warn".to_owned(),
            extra_env: Vec::new(),
        }
    }
}

impl GatewayOptions {
    /// Options pointing at `sidecars` (all sharing the first one's token).
    pub fn for_sidecars(sidecars: &[&Sidecar]) -> Self {
        Self {
            sidecars: sidecars
                .iter()
                .map(|s| (s.options.name.clone(), s.ws_url()))
                .collect(),
            sidecar_token: sidecars
                .first()
                .map(|s| s.options.token.clone())
                .unwrap_or_default(),
            ..Self::default()
        }
    }
}

pub struct Gateway {
    process: ChildProcess,
    bin: PathBuf,
    pub options: GatewayOptions,
    pub port: u16,
}

impl Gateway {
    /// Start a gateway and wait until `/readyz` says a sidecar is ready.
    pub async fn start(bin: &Path, options: GatewayOptions) -> Result<Self> {
        let port = free_port();
        let process = spawn_gateway(bin, &options, port)?;
        let mut gw = Self {
            process,
            bin: bin.to_path_buf(),
            options,
            port,
        };
        gw.wait_ready().await?;
        Ok(gw)
    }

    pub async fn wait_ready(&mut self) -> Result<()> {
        wait_for_http(&format!("{}/readyz", self.base_url()), 200, READY_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "gateway not ready; output:\n{}",
                    tail(&self.process.output())
                )
            })
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn_gateway(&self.bin, &self.options, self.port)?;
        self.wait_ready().await
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    pub fn output(&self) -> String {
        self.process.output()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.base_url())
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        let key = self
            .options
            .api_keys
            .split(',')
            .next()
            .filter(|k| !k.is_empty());
        Metrics::scrape(&format!("{}/metrics", self.base_url()), key).await
    }
}

fn spawn_gateway(bin: &Path, o: &GatewayOptions, port: u16) -> Result<ChildProcess> {
    let sidecars = o
        .sidecars
        .iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut builder = ProcessBuilder::new("gateway", bin)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("GATEWAY_DISCOVERY", "static")
        .env("GATEWAY_SIDECARS", sidecars)
        .env("SIDECAR_TOKEN", &o.sidecar_token)
        .env("GATEWAY_MAX_IN_FLIGHT", o.max_in_flight.to_string())
        .env("GATEWAY_QUEUE_TIMEOUT_SEC", o.queue_timeout_sec.to_string())
        .env("GATEWAY_ROUTING", &o.routing)
        .env("API_KEYS", &o.api_keys)
        .env("SESSION_REUSE_ENABLED", o.session_reuse.to_string())
        .env("LOG_LEVEL", &o.log_level);
    for (k, v) in &o.extra_env {
        builder = builder.env(k, v);
    }
    builder.spawn().context("starting gateway")
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}
