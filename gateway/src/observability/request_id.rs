//! `x-request-id`: kept when the client sends a sane one, minted otherwise, echoed on
//! every response, and recorded on the request's span. The layers that do it are
//! tower-http's `SetRequestId`/`PropagateRequestId` (see `http::layers`); this module says
//! which ids are kept and how new ones are made.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

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

/// Drop a client's `x-request-id` that is not [`sane`], so `SetRequestId` mints one instead
/// of keeping it.
pub fn drop_insane<B>(mut request: Request<B>) -> Request<B> {
    let keep = request
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().is_ok_and(sane));
    if keep == Some(false) {
        request.headers_mut().remove(HEADER);
    }
    request
}

/// Mints a fresh id for requests that came without a (sane) one.
#[derive(Debug, Clone, Copy, Default)]
pub struct MintRequestId;

impl MakeRequestId for MintRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&mint()).ok().map(RequestId::new)
    }
}

/// The id as text, for logs and the chat core. Ids are sane ASCII (checked or minted), so
/// the fallback never shows in practice.
pub fn text(id: &RequestId) -> Arc<str> {
    Arc::from(id.header_value().to_str().unwrap_or("-"))
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

    #[test]
    fn insane_ids_are_dropped_and_sane_ones_kept() {
        let with = |id: &str| {
            Request::builder()
                .header(HEADER, id)
                .body(())
                .expect("request")
        };
        assert!(drop_insane(with("bad id")).headers().get(HEADER).is_none());
        assert_eq!(drop_insane(with("good-1")).headers()[HEADER], "good-1");
        let none = Request::builder().body(()).expect("request");
        assert!(drop_insane(none).headers().get(HEADER).is_none());
    }
}
