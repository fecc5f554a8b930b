//! Metrics, request ids, logs and traces.

pub mod metrics;
pub mod otlp;
pub mod request_id;
pub mod telemetry;
