//! The demo stack in this process: the simulators (`lingma_sim::start`), one sidecar per
//! simulator (`sidecar::run::serve`, attached to it) and the gateway (`Gateway::build` +
//! `gateway::serve`), each a task with its own state, all built from the libraries this
//! binary links: no other binary to build or find, no child process.

use anyhow::Context;
use lingma_sim::{SimConfig, SimHandle};
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Settings of each simulated instance.
pub struct SimSettings {
    pub max_concurrent_chats: u32,
    pub first_token_delay_ms: u64,
    pub chunk_delay_ms: u64,
}

/// Everything running, and the switches to stop it in order.
pub struct InProcessStack {
    sims: Vec<SimHandle>,
    sidecars: JoinSet<String>,
    gateway: Option<tokio::task::JoinHandle<String>>,
    stop_gateway: CancellationToken,
    stop_sidecars: CancellationToken,
}

impl InProcessStack {
    pub fn new() -> Self {
        Self {
            sims: Vec::new(),
            sidecars: JoinSet::new(),
            gateway: None,
            stop_gateway: CancellationToken::new(),
            stop_sidecars: CancellationToken::new(),
        }
    }

    /// Start one simulator in `work_dir` on free ports (logged in: no account needed).
    pub async fn start_sim(
        &mut self,
        work_dir: PathBuf,
        settings: &SimSettings,
    ) -> anyhow::Result<&SimHandle> {
        std::fs::create_dir_all(&work_dir)
            .with_context(|| format!("cannot create {}", work_dir.display()))?;
        let config = SimConfig {
            work_dir: Some(work_dir),
            logged_in: true,
            max_concurrent_chats: settings.max_concurrent_chats as usize,
            first_token_delay_ms: settings.first_token_delay_ms,
            chunk_delay_ms: settings.chunk_delay_ms,
            ..SimConfig::default()
        };
        let sim = lingma_sim::start(config)
            .await
            .context("cannot start the simulator")?;
        self.sims.push(sim);
        self.sims.last().context("simulator just added")
    }

    /// Start a sidecar named `name`, configured by its own parser fed `flags` (they win
    /// over the environment, which it reads as the sidecar binary would).
    pub fn start_sidecar(&mut self, name: &str, flags: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["sidecar".to_owned()];
        args.extend_from_slice(flags);
        let config = <sidecar::config::Cli as clap::Parser>::try_parse_from(args)
            .context("sidecar settings")?
            .config;
        let stop = self.stop_sidecars.clone();
        let task_name = name.to_owned();
        self.sidecars.spawn(
            async move {
                match sidecar::run::serve(config, stop.cancelled_owned()).await {
                    Ok(()) => format!("{task_name} stopped"),
                    Err(e) => format!("{task_name} failed: {e}"),
                }
            }
            .instrument(tracing::info_span!("sidecar", name)),
        );
        Ok(())
    }

    /// Build the gateway from its own parser fed `flags` and serve it on `listener`.
    pub fn start_gateway(
        &mut self,
        flags: &[String],
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<()> {
        let mut args = vec!["gateway".to_owned()];
        args.extend_from_slice(flags);
        let config = <gateway::config::GatewayConfig as clap::Parser>::try_parse_from(args)
            .context("gateway settings")?;
        let endpoints = {
            use gateway::discovery::Discovery;
            gateway::discovery::StaticDiscovery::parse(&config.sidecars)
                .context("the sidecar list")?
                .subscribe()
        };
        let built = gateway::Gateway::build(&config, endpoints).context("building the gateway")?;
        let stop = self.stop_gateway.clone();
        self.gateway = Some(tokio::spawn(
            async move {
                match gateway::serve(built, listener, stop.cancelled_owned()).await {
                    Ok(()) => "gateway stopped".to_owned(),
                    Err(e) => format!("gateway failed: {e}"),
                }
            }
            .instrument(tracing::info_span!("gateway")),
        ));
        Ok(())
    }

    /// Resolves with what ended first: a sidecar or the gateway (each runs until stopped).
    pub async fn first_exit(&mut self) -> String {
        let Self {
            gateway, sidecars, ..
        } = self;
        let gateway = async {
            match gateway.as_mut() {
                Some(task) => task
                    .await
                    .unwrap_or_else(|e| format!("gateway panicked: {e}")),
                None => std::future::pending().await,
            }
        };
        let sidecar = async {
            match sidecars.join_next().await {
                Some(done) => done.unwrap_or_else(|e| format!("a sidecar panicked: {e}")),
                None => std::future::pending().await,
            }
        };
        let (why, gateway_ended) = tokio::select! {
            why = gateway => (why, true),
            why = sidecar => (why, false),
        };
        if gateway_ended {
            // Its handle is spent: `stop` must not wait on it again.
            self.gateway = None;
        }
        why
    }

    /// Stop the gateway first (no new chat reaches a sidecar that is going away; open
    /// streams finish), then the sidecars (each drains), then the simulators.
    pub async fn stop(mut self, grace: Duration) {
        self.stop_gateway.cancel();
        if let Some(task) = self.gateway.take() {
            match tokio::time::timeout(grace, task).await {
                Ok(Ok(why)) => tracing::info!("{why}"),
                Ok(Err(e)) => tracing::warn!("gateway task failed: {e}"),
                Err(_) => tracing::warn!("the gateway did not stop in time"),
            }
        }
        self.stop_sidecars.cancel();
        let sidecars = async {
            while let Some(done) = self.sidecars.join_next().await {
                if let Ok(why) = done {
                    tracing::info!("{why}");
                }
            }
        };
        if tokio::time::timeout(grace, sidecars).await.is_err() {
            tracing::warn!("sidecars did not stop in time");
            self.sidecars.abort_all();
        }
        for sim in self.sims {
            sim.shutdown().await;
        }
    }
}
