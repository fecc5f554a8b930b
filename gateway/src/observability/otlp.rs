//! OTLP/HTTP trace export. The batch processor runs on the Tokio runtime: the async
//! reqwest client the exporter uses needs a Tokio reactor, which the SDK's default
//! processor thread does not have.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::registry::LookupSpan;

use super::telemetry::TelemetryError;
use crate::config::GatewayConfig;

pub type OtelLayer<S> =
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// The tracing layer and its provider (kept to flush at exit). Call inside the runtime.
pub fn layer<S>(config: &GatewayConfig) -> Result<(OtelLayer<S>, SdkTracerProvider), TelemetryError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let base = config.otlp_endpoint.trim().trim_end_matches('/');
    let endpoint = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
    let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(config.otel_service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("lingma-gateway");
    Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
}
