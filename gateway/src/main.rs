//! The `gateway` binary: parse config, set up telemetry, pick discovery, serve.

use anyhow::Context;
use clap::Parser;
use gateway::config::{DiscoveryKind, GatewayConfig};
use gateway::discovery::{Discovery, StaticDiscovery};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = GatewayConfig::parse();
    let _telemetry = gateway::observability::telemetry::init(&config)?;
    let discovery: Box<dyn Discovery> = match config.discovery {
        DiscoveryKind::Static => {
            Box::new(StaticDiscovery::parse(&config.sidecars).context("GATEWAY_SIDECARS")?)
        }
        DiscoveryKind::Kubernetes => {
            anyhow::bail!(
                "GATEWAY_DISCOVERY=kubernetes is provided by the k8s-discovery crate and not wired into this build yet"
            )
        }
    };
    let gw = gateway::Gateway::build(&config, discovery.subscribe())?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, routing = ?config.routing, "gateway listening");
    gateway::serve(gw, listener, shutdown_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
