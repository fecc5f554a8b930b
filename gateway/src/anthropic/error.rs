//! Errors in the Anthropic shape: `{"type":"error","error":{"type","message"}}` with
//! Anthropic's status codes, mapped once from the gateway's [`GatewayError`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::errors::GatewayError;

/// A [`GatewayError`] answered the Anthropic way.
#[derive(Debug)]
pub struct AnthropicError(pub GatewayError);

impl From<GatewayError> for AnthropicError {
    fn from(e: GatewayError) -> Self {
        Self(e)
    }
}

/// Status and `error.type` per Anthropic's error table: 400 invalid_request_error,
/// 401 authentication_error, 403 permission_error, 404 not_found_error, 413
/// request_too_large, 429 rate_limit_error, 500 api_error, 504 timeout_error, 529
/// overloaded_error (all upstream capacity busy, or no instance ready).
pub fn status_and_type(e: &GatewayError) -> (StatusCode, &'static str) {
    let overloaded = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    match e {
        GatewayError::InvalidRequest { .. } | GatewayError::UnsupportedMediaType => {
            (StatusCode::BAD_REQUEST, "invalid_request_error")
        }
        GatewayError::Unauthorized => (StatusCode::UNAUTHORIZED, "authentication_error"),
        GatewayError::Forbidden | GatewayError::ModelNotAllowed { .. } => {
            (StatusCode::FORBIDDEN, "permission_error")
        }
        GatewayError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found_error"),
        GatewayError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error"),
        GatewayError::PayloadTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
        }
        GatewayError::RateLimited { code, .. } if *code == "upstream_overloaded" => {
            (overloaded, "overloaded_error")
        }
        GatewayError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        GatewayError::Unavailable { .. } => (overloaded, "overloaded_error"),
        GatewayError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
        GatewayError::Upstream { .. } | GatewayError::Internal => {
            (StatusCode::INTERNAL_SERVER_ERROR, "api_error")
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// The error body as JSON text (also the data of an SSE `error` event).
pub fn body_json(e: &GatewayError) -> String {
    let message = match e {
        GatewayError::Unauthorized => {
            "invalid x-api-key: send the gateway API key as 'x-api-key' or 'Authorization: Bearer'."
                .to_owned()
        }
        other => other.message(),
    };
    let body = Body {
        kind: "error",
        error: Detail {
            kind: status_and_type(e).1,
            message: &message,
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|_| {
        r#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#.to_owned()
    })
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let (status, _) = status_and_type(&self.0);
        let mut response = (status, body_json(&self.0)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let GatewayError::RateLimited {
            retry_after_secs, ..
        }
        | GatewayError::Unavailable {
            retry_after_secs: Some(retry_after_secs),
            ..
        } = self.0
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mux_protocol::ErrorKind;

    fn body(e: &GatewayError) -> serde_json::Value {
        serde_json::from_str(&body_json(e)).expect("json")
    }

    #[test]
    fn statuses_and_types_follow_anthropic() {
        let cases = [
            (
                GatewayError::invalid("x", None),
                400,
                "invalid_request_error",
            ),
            (GatewayError::Unauthorized, 401, "authentication_error"),
            (
                GatewayError::PayloadTooLarge { limit: 1 },
                413,
                "request_too_large",
            ),
            (
                GatewayError::from_upstream(ErrorKind::UnknownModel, ""),
                404,
                "not_found_error",
            ),
            (
                GatewayError::from_upstream(ErrorKind::RateLimited, ""),
                429,
                "rate_limit_error",
            ),
            (
                GatewayError::from_upstream(ErrorKind::Overloaded, ""),
                529,
                "overloaded_error",
            ),
            (GatewayError::Timeout, 504, "timeout_error"),
            (
                GatewayError::ModelNotAllowed { model: "m".into() },
                403,
                "permission_error",
            ),
            (
                GatewayError::from_upstream(ErrorKind::Upstream, "boom"),
                500,
                "api_error",
            ),
        ];
        for (e, status, kind) in cases {
            assert_eq!(status_and_type(&e).0.as_u16(), status, "{e:?}");
            let v = body(&e);
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind);
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let r =
            AnthropicError(GatewayError::from_upstream(ErrorKind::RateLimited, "")).into_response();
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        let r =
            AnthropicError(GatewayError::from_upstream(ErrorKind::Overloaded, "")).into_response();
        assert_eq!(r.status().as_u16(), 529);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
    }
}
