//! The `gateway` binary: parse config, set up telemetry, pick discovery, serve.

use anyhow::Context;
use clap::Parser;
use gateway::config::{DiscoveryKind, GatewayConfig};
use gateway::discovery::{Discovery, StaticDiscovery};

/// jemalloc, not the system allocator, for memory per idle SSE stream: configured in
/// `.cargo/config.toml` (freed pages returned at once, no thread caches), 10,000 idle
/// streams measured 12.8 KiB each against glibc's 16.8 (`bench --only idle`,
/// docs/performance.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = GatewayConfig::parse();
    let _telemetry = gateway::observability::telemetry::init(&config)?;
    // Kubernetes: the ready EndpointSlice addresses of the LingmaInstance Services, each
    // with its instance's token (crate `k8s-discovery`).
    let (endpoints, synced) = match config.discovery {
        DiscoveryKind::Static => (
            StaticDiscovery::parse(&config.sidecars)
                .context("GATEWAY_SIDECARS")?
                .subscribe(),
            tokio::sync::watch::channel(true).1,
        ),
        DiscoveryKind::Kubernetes => {
            let client = kube::Client::try_default().await.context(
                "GATEWAY_DISCOVERY=kubernetes needs a cluster (in-cluster config or a kubeconfig)",
            )?;
            let (rx, synced, _watch_task) = k8s_discovery::watch_sidecars_synced(
                client,
                k8s_discovery::DiscoveryConfig::new(
                    config.k8s_namespace.clone(),
                    config.k8s_label_selector.clone(),
                ),
            );
            (rx, synced)
        }
    };
    let gw = gateway::Gateway::build_with_sync(&config, endpoints, synced)?;
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
