//! The one error type of the HTTP surface and its single mapping to status + OpenAI body.

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mux_protocol::ErrorKind;
use serde::Serialize;

/// Every way a request can fail, as the client will see it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
        code: Option<&'static str>,
    },
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("invalid API key")]
    Unauthorized,
    /// A valid client key on an admin route.
    #[error("this key may not use this endpoint")]
    Forbidden,
    /// The client's key may not use this model (API_KEYS_FILE `models`).
    #[error("This API key may not use the model '{model}'.")]
    ModelNotAllowed { model: String },
    #[error("{message}")]
    NotFound {
        message: String,
        param: Option<&'static str>,
        code: &'static str,
    },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge { limit: usize },
    #[error("{message}")]
    RateLimited {
        message: &'static str,
        code: &'static str,
        retry_after_secs: u64,
    },
    /// The sidecar or Lingma failed.
    #[error("{message}")]
    Upstream { kind: ErrorKind, message: String },
    /// No instance can take the request; `retry_after_secs` when it is known when one
    /// will (every account paused).
    #[error("{message}")]
    Unavailable {
        message: &'static str,
        retry_after_secs: Option<u64>,
    },
    #[error("the upstream model timed out")]
    Timeout,
    #[error("internal error")]
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// OpenAI's error object; `param` and `code` are always present (null when unknown).
#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param,
            code: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream { kind, .. } => upstream_status(*kind),
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short label for metrics and logs (never contains request data).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } | Self::UnsupportedMediaType => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::ModelNotAllowed { .. } => "model_not_allowed",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "too_large",
            Self::RateLimited { code, .. } => code,
            Self::Upstream { .. } => "upstream",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Self::UnsupportedMediaType => {
                "Expected a JSON body with 'Content-Type: application/json'.".to_owned()
            }
            Self::Unauthorized => {
                "Incorrect API key provided. Send 'Authorization: Bearer <key>'.".to_owned()
            }
            Self::Forbidden => "You have insufficient permissions for this operation: admin endpoints take the admin token, not an API key.".to_owned(),
            Self::MethodNotAllowed => "Method not allowed for this endpoint.".to_owned(),
            Self::PayloadTooLarge { limit } => {
                format!("Request body is larger than the limit of {limit} bytes.")
            }
            other => other.to_string(),
        }
    }

    /// The OpenAI error body as JSON text (also used inside an SSE stream).
    pub fn body_json(&self) -> String {
        let message = self.message();
        let (kind, param, code) = match self {
            Self::InvalidRequest { param, code, .. } => ("invalid_request_error", *param, *code),
            Self::UnsupportedMediaType => (
                "invalid_request_error",
                None,
                Some("unsupported_media_type"),
            ),
            Self::Unauthorized => ("invalid_request_error", None, Some("invalid_api_key")),
            Self::Forbidden => (
                "invalid_request_error",
                None,
                Some("insufficient_permissions"),
            ),
            Self::ModelNotAllowed { .. } => (
                "invalid_request_error",
                Some("model"),
                Some("model_not_allowed"),
            ),
            Self::NotFound { param, code, .. } => ("invalid_request_error", *param, Some(*code)),
            Self::MethodNotAllowed => ("invalid_request_error", None, Some("method_not_allowed")),
            Self::PayloadTooLarge { .. } => {
                ("invalid_request_error", None, Some("request_too_large"))
            }
            Self::RateLimited { code, .. } => ("rate_limit_error", None, Some(*code)),
            Self::Upstream { kind, .. } => (upstream_type(*kind), None, Some(openai_code(*kind))),
            Self::Unavailable { .. } => ("server_error", None, Some("no_upstream_available")),
            Self::Timeout => ("server_error", None, Some("upstream_timeout")),
            Self::Internal => ("server_error", None, Some("internal_error")),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                message: &message,
                kind,
                param,
                code,
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#
                .to_owned()
        })
    }

    /// From the sidecar's error class (message is already safe text).
    pub fn from_upstream(kind: ErrorKind, message: &str) -> Self {
        match kind {
            ErrorKind::RateLimited => Self::RateLimited {
                message: "The upstream account is rate limited; retry later.",
                code: "upstream_rate_limited",
                retry_after_secs: 10,
            },
            ErrorKind::Overloaded => Self::RateLimited {
                message: "All upstream capacity is busy; retry later.",
                code: "upstream_overloaded",
                retry_after_secs: 1,
            },
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::UnknownModel => Self::NotFound {
                message: "The model does not exist or you do not have access to it.".to_owned(),
                param: Some("model"),
                code: "model_not_found",
            },
            ErrorKind::BadRequest => Self::invalid(message.to_owned(), None),
            _ => Self::Upstream {
                kind,
                message: message.to_owned(),
            },
        }
    }
}

fn upstream_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn upstream_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Internal => "server_error",
        _ => "api_error",
    }
}

/// The OpenAI body's `code` of an upstream failure: the protocol's word, except the two
/// OpenAI already has a name for. Metric labels use [`ErrorKind::as_str`] instead.
fn openai_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::UnknownModel => "model_not_found",
        ErrorKind::Upstream => "upstream_error",
        other => other.as_str(),
    }
}

/// How one API surface writes a [`GatewayError`] into a body. Status, `Retry-After` and
/// the metric reason stay the error's own, so a new surface (Anthropic Messages, OpenAI
/// Responses) only says how its body looks.
pub trait ErrorShape {
    fn body_json(error: &GatewayError) -> String;
}

/// OpenAI's `{"error": {"message", "type", "param", "code"}}`, the default shape.
pub struct OpenAiShape;

impl ErrorShape for OpenAiShape {
    fn body_json(error: &GatewayError) -> String {
        error.body_json()
    }
}

impl GatewayError {
    /// The HTTP answer with the body in shape `S`.
    pub fn into_response_as<S: ErrorShape>(self) -> Response {
        let mut response = (self.status(), S::body_json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Self::RateLimited {
            retry_after_secs, ..
        }
        | Self::Unavailable {
            retry_after_secs: Some(retry_after_secs),
            ..
        } = self
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        self.into_response_as::<OpenAiShape>()
    }
}

impl From<JsonRejection> for GatewayError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            other => Self::invalid(
                format!(
                    "We could not parse the JSON body of your request: {}",
                    other.body_text()
                ),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &GatewayError) -> serde_json::Value {
        serde_json::from_str(&e.body_json()).expect("valid json")
    }

    #[test]
    fn every_body_has_the_four_openai_fields() {
        let all = [
            GatewayError::invalid("x", Some("n")),
            GatewayError::UnsupportedMediaType,
            GatewayError::Unauthorized,
            GatewayError::Forbidden,
            GatewayError::MethodNotAllowed,
            GatewayError::PayloadTooLarge { limit: 10 },
            GatewayError::Timeout,
            GatewayError::Internal,
            GatewayError::from_upstream(ErrorKind::ConnectionLost, "lost"),
        ];
        for e in all {
            let v = body(&e);
            let err = v.get("error").expect("error object");
            for field in ["message", "type", "param", "code"] {
                assert!(err.get(field).is_some(), "{field} missing in {v}");
            }
            assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(GatewayError::invalid("x", None).status(), 400);
        assert_eq!(GatewayError::Unauthorized.status(), 401);
        assert_eq!(GatewayError::Forbidden.status(), 403);
        assert_eq!(GatewayError::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(
            GatewayError::from_upstream(ErrorKind::UnknownModel, "").status(),
            404
        );
        assert_eq!(
            GatewayError::from_upstream(ErrorKind::RateLimited, "").status(),
            429
        );
        assert_eq!(
            GatewayError::from_upstream(ErrorKind::Upstream, "").status(),
            502
        );
        assert_eq!(
            GatewayError::from_upstream(ErrorKind::ConnectionLost, "").status(),
            502
        );
        assert_eq!(
            GatewayError::from_upstream(ErrorKind::Unavailable, "").status(),
            503
        );
        assert_eq!(
            GatewayError::from_upstream(ErrorKind::Timeout, "").status(),
            504
        );
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let r = GatewayError::RateLimited {
            message: "busy",
            code: "queue_timeout",
            retry_after_secs: 3,
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn a_model_outside_the_key_is_403_on_model() {
        let e = GatewayError::ModelNotAllowed { model: "o3".into() };
        assert_eq!(e.status(), 403);
        let v = body(&e);
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "model_not_allowed");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("'o3'"))
        );
    }

    #[test]
    fn param_is_reported() {
        let v = body(&GatewayError::invalid("n must be 1", Some("n")));
        assert_eq!(v["error"]["param"], "n");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}
