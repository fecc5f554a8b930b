//! `x-request-id`: kept when the client sends a sane one, minted otherwise, echoed on
//! every response, and recorded on the request's span.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: &str = "x-request-id";

/// The request id, as an extension for handlers.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// Accept ids of 1..=128 visible ASCII characters without spaces or quotes; anything else
/// could pollute logs.
pub fn sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

pub fn mint() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub async fn propagate(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_owned)
        .unwrap_or_else(mint);
    let header = HeaderValue::from_str(&id).ok();
    let id: Arc<str> = Arc::from(id);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Some(h) = header {
        response.headers_mut().insert(HEADER, h);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanity_rules() {
        assert!(sane("abc-123_X.y"));
        assert!(!sane(""));
        assert!(!sane("has space"));
        assert!(!sane("quote\""));
        assert!(!sane(&"x".repeat(129)));
        assert!(sane(&mint()));
    }
}
