//! Response headers shared by the chat surfaces: the JSON and SSE content headers and the
//! gateway's own `x-lingma-*` headers of an answer.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::chat::tools::Answer;
use crate::errors::GatewayError;

static SESSION: HeaderName = HeaderName::from_static("x-lingma-session");
static SIDECAR: HeaderName = HeaderName::from_static("x-lingma-sidecar");
static OVERHEAD: HeaderName = HeaderName::from_static("x-lingma-overhead-us");
static ACCEL: HeaderName = HeaderName::from_static("x-accel-buffering");
static QUEUE_WAIT: HeaderName = HeaderName::from_static("x-lingma-queue-wait-ms");

/// `x-lingma-session` (reused/new/migrated), `x-lingma-sidecar`, `x-lingma-overhead-us`
/// and `x-lingma-queue-wait-ms` (time queued for a slot) of an answer (its first attempt: the headers go out before a
/// corrective re-ask could happen).
pub fn answer_headers(headers: &mut HeaderMap, answer: &Answer) {
    headers.insert(
        SESSION.clone(),
        HeaderValue::from_static(answer.session.as_str()),
    );
    if let Ok(v) = HeaderValue::from_str(&answer.sidecar) {
        headers.insert(SIDECAR.clone(), v);
    }
    let overhead_us = u64::try_from(answer.overhead().as_micros()).unwrap_or(u64::MAX);
    headers.insert(OVERHEAD.clone(), HeaderValue::from(overhead_us));
    let queue_wait_ms = u64::try_from(answer.queue_wait.as_millis()).unwrap_or(u64::MAX);
    headers.insert(QUEUE_WAIT.clone(), HeaderValue::from(queue_wait_ms));
}

/// Headers of a JSON answer.
pub fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// Headers of an SSE stream: no caching, and no buffering by proxies (nginx honours
/// `X-Accel-Buffering: no`), so every event reaches the client when it is written.
pub fn sse_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ACCEL.clone(), HeaderValue::from_static("no"));
    headers
}

/// The end of every surface's handler: its answer, or its refusal, logged once (`what`: the
/// log line) and written in the surface's own error shape.
pub fn answer_or_refusal(
    result: Result<axum::response::Response, GatewayError>,
    request_id: &str,
    what: &'static str,
    error_body: impl FnOnce(GatewayError) -> axum::response::Response,
) -> axum::response::Response {
    match result {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(request_id = %request_id, status = e.status().as_u16(), reason = e.reason(), "{what}");
            error_body(e)
        }
    }
}
