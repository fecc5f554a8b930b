//! One `gateway` process over static sidecars, on a free 127.0.0.1 port.

use super::{Sidecar, wait_for_ok};
use crate::prom::Metrics;
use crate::{ChildProcess, ProcessBuilder, free_port};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

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
    /// METRICS_TOKEN: the admin routes (`/metrics`, `/internal/*`) take it, never a client key.
    pub admin_token: String,
    pub session_reuse: bool,
    pub log_level: String,
    pub extra_env: Vec<(String, String)>,
    /// Run inside this network namespace (see [`super::netns`]); None = the test's own.
    pub netns: Option<String>,
    /// HOST; None = 127.0.0.1.
    pub host: Option<String>,
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
            admin_token: "test-admin-token".to_owned(),
            session_reuse: true,
            log_level: "warn".to_owned(),
            extra_env: Vec::new(),
            netns: None,
            host: None,
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

    /// These options with the sidecar list and token of `sidecars`.
    pub fn in_front_of(self, sidecars: &[&Sidecar]) -> Self {
        let base = Self::for_sidecars(sidecars);
        Self {
            sidecars: base.sidecars,
            sidecar_token: base.sidecar_token,
            ..self
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
        let mut gw = Self::spawn(bin, options)?;
        gw.wait_ready().await?;
        Ok(gw)
    }

    /// Start a gateway without waiting (see [`Gateway::wait_live`], [`Gateway::wait_ready`]).
    pub fn spawn(bin: &Path, options: GatewayOptions) -> Result<Self> {
        let port = free_port();
        Ok(Self {
            process: spawn(bin, &options, port)?,
            bin: bin.to_path_buf(),
            options,
            port,
        })
    }

    /// Wait until a sidecar is usable: `/healthz` reports `ready >= 1` (`/readyz` only says
    /// the gateway serves and its discovery synced).
    pub async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/healthz", self.base_url());
        let client = reqwest::Client::new();
        let usable = crate::wait_until(super::READY_TIMEOUT, || async {
            let health = match client.get(&url).send().await {
                Ok(r) => r.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            };
            health.is_some_and(|h| h["ready"].as_u64().unwrap_or(0) >= 1)
        })
        .await;
        usable.with_context(|| {
            format!(
                "gateway: no usable sidecar; output:\n{}",
                super::tail(&self.process.output())
            )
        })
    }

    /// Wait until `/healthz` answers 200 (it serves, whatever its sidecars do).
    pub async fn wait_live(&mut self) -> Result<()> {
        self.wait_for("/healthz").await
    }

    async fn wait_for(&self, path: &str) -> Result<()> {
        let url = format!("{}{path}", self.base_url());
        let what = format!("gateway: no 200 from {path}");
        wait_for_ok(&url, &self.process, &what).await
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn(&self.bin, &self.options, self.port)?;
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
        let host = self.options.host.as_deref().unwrap_or("127.0.0.1");
        format!("http://{host}:{}", self.port)
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.base_url())
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        let token = Some(self.options.admin_token.as_str()).filter(|t| !t.is_empty());
        Metrics::scrape(&format!("{}/metrics", self.base_url()), token).await
    }
}

fn spawn(bin: &Path, o: &GatewayOptions, port: u16) -> Result<ChildProcess> {
    let sidecars = o
        .sidecars
        .iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut builder = ProcessBuilder::new("gateway", bin)
        .netns(o.netns.as_deref())
        .env("HOST", o.host.as_deref().unwrap_or("127.0.0.1"))
        .env("PORT", port.to_string())
        .env("GATEWAY_DISCOVERY", "static")
        .env("GATEWAY_SIDECARS", sidecars)
        .env("SIDECAR_TOKEN", &o.sidecar_token)
        .env("GATEWAY_MAX_IN_FLIGHT", o.max_in_flight.to_string())
        .env("GATEWAY_QUEUE_TIMEOUT_SEC", o.queue_timeout_sec.to_string())
        .env("GATEWAY_ROUTING", &o.routing)
        .env("API_KEYS", &o.api_keys)
        .env("METRICS_TOKEN", &o.admin_token)
        .env("SESSION_REUSE_ENABLED", o.session_reuse.to_string())
        .env("LOG_LEVEL", &o.log_level);
    for (k, v) in &o.extra_env {
        builder = builder.env(k, v);
    }
    builder.spawn().context("starting gateway")
}
