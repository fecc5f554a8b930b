//! Logs (text or JSON, with the request id from the request span) and, when an OTLP
//! endpoint is configured, OpenTelemetry traces.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{GatewayConfig, LogFormat};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("LOG_LEVEL is not a valid filter: {0}")]
    Filter(String),
    #[error("cannot install the log subscriber: {0}")]
    Init(String),
    #[error("cannot set up OTLP traces: {0}")]
    Otlp(String),
}

/// Keeps the trace pipeline alive; flushes on drop.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

pub fn init(config: &GatewayConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter =
        EnvFilter::try_new(&config.log_level).map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let (otel_layer, provider) = if config.otlp_endpoint.trim().is_empty() {
        (None, None)
    } else {
        let (layer, provider) = super::otlp::layer(config)?;
        (Some(layer), Some(provider))
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    result.map_err(|e| TelemetryError::Init(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}
