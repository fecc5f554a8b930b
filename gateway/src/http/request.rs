//! Reading request bodies, shared by every surface: a JSON body with a size limit and a
//! content-type check, and draining a body before an early answer.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::LengthLimitError;

use crate::errors::GatewayError;

/// Read the body with a size limit; a present, non-JSON content type is refused (415). A
/// body over `limit` (declared or actually sent) is 413.
pub async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            drain_body(body).await;
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
        if is_length_limit(&e) {
            GatewayError::PayloadTooLarge { limit }
        } else {
            GatewayError::invalid("Could not read the request body.", None)
        }
    })
}

/// Whether reading stopped at the limit: `to_bytes` wraps http-body-util's typed
/// `LengthLimitError` in `axum::Error`, so look for it along the source chain.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = source {
        if err.is::<LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Read (and drop) a small unread request body before answering early. A server that
/// closes a connection with unread bytes in its receive buffer sends a TCP reset, which
/// can reach the client before the response and turn a clear 401 into a connection error.
pub async fn drain_body(body: Body) {
    const DRAIN_LIMIT: usize = 256 * 1024;
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        axum::body::to_bytes(body, DRAIN_LIMIT),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("value"),
        );
        h
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413_even_undeclared() {
        let body = Body::from(vec![b'x'; 100]);
        let err = read_json_body(&json_headers(), body, 10)
            .await
            .expect_err("too large");
        assert_eq!(err.status(), 413);
        let ok = read_json_body(&json_headers(), Body::from("{}"), 10)
            .await
            .expect("small body");
        assert_eq!(&ok[..], b"{}");
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_413_and_wrong_type_415() {
        let mut h = json_headers();
        h.insert(header::CONTENT_LENGTH, "1000".parse().expect("value"));
        let err = read_json_body(&h, Body::empty(), 10)
            .await
            .expect_err("413");
        assert_eq!(err.status(), 413);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/plain".parse().expect("value"));
        let err = read_json_body(&h, Body::from("{}"), 10)
            .await
            .expect_err("415");
        assert_eq!(err.status(), 415);
        h.insert(
            header::CONTENT_TYPE,
            "application/vnd.x+json; charset=utf-8"
                .parse()
                .expect("value"),
        );
        assert!(read_json_body(&h, Body::from("{}"), 10).await.is_ok());
    }
}
