//! What every chat surface's HTTP handler shares: reading the JSON body and the headers of
//! an answer (the surfaces themselves live in `openai`, `anthropic` and `responses`).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use super::tools::Answer;
use crate::errors::GatewayError;

static SESSION: HeaderName = HeaderName::from_static("x-lingma-session");
static SIDECAR: HeaderName = HeaderName::from_static("x-lingma-sidecar");
static OVERHEAD: HeaderName = HeaderName::from_static("x-lingma-overhead-us");
static ACCEL: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Read the body with a size limit; a present, non-JSON content type is refused.
pub(crate) async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            crate::auth::drain_body(body).await;
            return Err(GatewayError::UnsupportedMediaType);
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // axum reports the limit through http-body-util's private `LengthLimitError`;
        // its text is the only stable handle on it.
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(err) = source {
            if err.to_string().contains("length limit exceeded") {
                return GatewayError::PayloadTooLarge { limit };
            }
            source = err.source();
        }
        GatewayError::invalid("Could not read the request body.", None)
    })
}

/// `x-lingma-session`, `x-lingma-sidecar` and `x-lingma-overhead-us` of an answer.
pub(crate) fn answer_headers(headers: &mut HeaderMap, answer: &Answer) {
    headers.insert(
        SESSION.clone(),
        HeaderValue::from_static(answer.session.as_str()),
    );
    if let Ok(v) = HeaderValue::from_str(&answer.sidecar) {
        headers.insert(SIDECAR.clone(), v);
    }
    let overhead_us = u64::try_from(answer.overhead().as_micros()).unwrap_or(u64::MAX);
    headers.insert(OVERHEAD.clone(), HeaderValue::from(overhead_us));
}

/// The headers of an SSE response (no caching, no proxy buffering) plus the answer's.
pub(crate) fn sse_headers(answer: &Answer) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ACCEL.clone(), HeaderValue::from_static("no"));
    answer_headers(&mut headers, answer);
    headers
}

/// The headers of a JSON response plus the answer's.
pub(crate) fn json_headers(answer: &Answer) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    answer_headers(&mut headers, answer);
    headers
}
