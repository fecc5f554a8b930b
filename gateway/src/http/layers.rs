//! The layers every request passes through, outermost first (`ServiceBuilder` order):
//!
//! 1. `MapRequest(drop_insane)`: a client's `x-request-id` that could pollute logs is
//!    removed, so the next layer mints one instead.
//! 2. `SetRequestId`: every request carries `x-request-id` and the `RequestId` extension
//!    (handlers read it; the span below records it).
//! 3. `PropagateRequestId`: the id goes back on every response, including 404s, auth
//!    failures and panics (all of those come from inside this layer).
//! 4. `Trace`: one `request` span per request (`request_id`, method, path); the handler,
//!    and the streamed body, run inside it, so every log line of a chat carries the id.
//! 5. `CatchPanic`: a panicking handler answers 500 with the OpenAI error body instead of
//!    dropping the connection; it is inside the trace and request-id layers so that answer
//!    is logged in the request's span and carries its id.
//!
//! Auth is not here: it is a route layer of each route group (`http::router`), so a route
//! that no group lists does not exist rather than being open.

use std::any::Any;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::{Level, Span};

use crate::errors::GatewayError;
use crate::observability::request_id::{self, MintRequestId};

/// Wrap `router` in the layer stack above.
pub fn around(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(MapRequestLayer::new(request_id::drop_insane::<Body>))
            .layer(SetRequestIdLayer::new(request_id::HEADER, MintRequestId))
            .layer(PropagateRequestIdLayer::new(request_id::HEADER))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span as fn(&Request<Body>) -> Span)
                    // 5xx answers are logged where they are decided, with their reason.
                    .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
            )
            .layer(CatchPanicLayer::custom(
                panic_response as fn(Box<dyn Any + Send + 'static>) -> Response,
            )),
    )
}

fn request_span(request: &Request<Body>) -> Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
}

/// The panic's payload is not logged: it may quote request data.
fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    GatewayError::Internal.into_response()
}
