//! One `sidecar` process attached to a [`Sim`], on a free 127.0.0.1 port, waited for until
//! `/readyz` answers 200.

use super::{Sim, uuid_like, wait_for_ok};
use crate::prom::Metrics;
use crate::{ChildProcess, ProcessBuilder, free_port};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SidecarOptions {
    pub name: String,
    pub token: String,
    /// LINGMA_MAX_CONCURRENT_CHATS.
    pub max_concurrent_chats: u32,
    pub session_reuse: bool,
    pub log_level: String,
    pub extra_env: Vec<(String, String)>,
    /// Run inside this network namespace (see [`super::netns`]); None = the test's own.
    pub netns: Option<String>,
    /// SIDECAR_HOST; None = 127.0.0.1.
    pub host: Option<String>,
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
            netns: None,
            host: None,
        }
    }
}

pub struct Sidecar {
    process: ChildProcess,
    bin: PathBuf,
    pub options: SidecarOptions,
    /// How it reaches its simulator (LINGMA_ATTACH and the ports).
    attach: Vec<(&'static str, String)>,
    pub port: u16,
}

impl Sidecar {
    /// Start a sidecar attached to `sim` and wait for `/readyz`.
    pub async fn start(bin: &Path, sim: &Sim, options: SidecarOptions) -> Result<Self> {
        let port = free_port();
        let attach = sim.attach_env();
        let mut sidecar = Self {
            process: spawn(bin, &options, &attach, port)?,
            bin: bin.to_path_buf(),
            options,
            attach,
            port,
        };
        sidecar.wait_ready().await?;
        Ok(sidecar)
    }

    pub async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/readyz", self.http_url());
        wait_for_ok(&url, &self.process, "sidecar not ready").await
    }

    /// Kill it and start it again on the same port.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn(&self.bin, &self.options, &self.attach, self.port)?;
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
        format!("http://{}:{}", self.host(), self.port)
    }

    /// Base URL as the gateway's GATEWAY_SIDECARS wants it.
    pub fn ws_url(&self) -> String {
        format!("ws://{}:{}", self.host(), self.port)
    }

    fn host(&self) -> &str {
        self.options.host.as_deref().unwrap_or("127.0.0.1")
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        Metrics::scrape(
            &format!("{}/metrics", self.http_url()),
            Some(&self.options.token),
        )
        .await
    }
}

fn spawn(
    bin: &Path,
    o: &SidecarOptions,
    attach: &[(&'static str, String)],
    port: u16,
) -> Result<ChildProcess> {
    let mut builder = ProcessBuilder::new(&o.name, bin)
        .netns(o.netns.as_deref())
        .env("SIDECAR_HOST", o.host.as_deref().unwrap_or("127.0.0.1"))
        .env("SIDECAR_PORT", port.to_string())
        .env("SIDECAR_NAME", &o.name)
        .env("SIDECAR_TOKEN", &o.token)
        .env(
            "LINGMA_MAX_CONCURRENT_CHATS",
            o.max_concurrent_chats.to_string(),
        )
        .env("AUTO_LOGIN_ENABLED", "false")
        .env("SESSION_REUSE_ENABLED", o.session_reuse.to_string())
        .env("LOG_LEVEL", &o.log_level);
    for (k, v) in attach {
        builder = builder.env(k, v);
    }
    for (k, v) in &o.extra_env {
        builder = builder.env(k, v);
    }
    builder.spawn().context("starting sidecar")
}
