//! The route layers of the route groups (see `http::router`): each lets a request through
//! or answers 401 itself, so handlers never look at credentials.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::request::drain_body;
use crate::auth::ApiKeys;
use crate::errors::GatewayError;

/// Client routes: a configured API key (any request when none is configured); puts the
/// caller's [`crate::auth::ClientIdentity`] into the request. A refusal on an Anthropic
/// route takes the Anthropic error shape.
pub async fn client(State(keys): State<ApiKeys>, mut request: Request, next: Next) -> Response {
    match keys.check(request.headers()) {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(e) if crate::anthropic::is_anthropic_path(request.uri().path()) => {
            drain_body(request.into_body()).await;
            crate::anthropic::AnthropicError(e).into_response()
        }
        Err(e) => refuse(request, e).await,
    }
}

/// Admin routes: METRICS_TOKEN or ADMIN_TOKEN; a client key gets 403 (all open when no
/// token and no key is configured).
pub async fn admin(State(keys): State<ApiKeys>, request: Request, next: Next) -> Response {
    match keys.check_admin(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => refuse(request, e).await,
    }
}

async fn refuse(request: Request, error: GatewayError) -> Response {
    drain_body(request.into_body()).await;
    error.into_response()
}
