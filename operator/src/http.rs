//! `/metrics`, `/healthz` and `/readyz` of the operator.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;

use crate::metrics::Metrics;

pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(render))
        // The process answers: alive. Readiness means the same here: a standby replica waiting
        // for the Lease is healthy and ready to take over.
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics)
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics and health");
    // Small answers (probes, metrics) must not wait for the peer's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(metrics)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_health_and_metrics_over_http() {
        let metrics = Metrics::new().expect("metrics");
        metrics.reconciled("success");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, router(metrics)).await });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("client");
        for path in ["/healthz", "/readyz"] {
            let r = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("response");
            assert_eq!(r.status(), 200, "{path}");
        }
        let body = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("response")
            .text()
            .await
            .expect("body");
        assert!(body.contains("controller_runtime_reconcile_total"));
        server.abort();
    }
}
