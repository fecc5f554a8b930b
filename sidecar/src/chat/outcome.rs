//! How Lingma's results map onto the mux protocol: `chat/finish.statusCode` (section 7 of
//! lingma-protocol.md) and client errors to a finish reason or an error kind with a short,
//! fixed, safe message (never upstream text), and the usage estimate.

use crate::quota::QuotaSettings;
use lingma_protocol::ClientError;
use lingma_protocol::jsonrpc::codes;
use lingma_protocol::wire::{ChatFinish, finish_codes};
use mux_protocol::{ErrorKind, FinishReason, PauseReason, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: &'static str,
    /// Lingma said the account is limited: the sidecar pauses it (`crate::quota`).
    pub limit: Option<PauseReason>,
}

impl Failure {
    pub const fn new(kind: ErrorKind, message: &'static str) -> Self {
        Self {
            kind,
            message,
            limit: None,
        }
    }

    /// The account is rate limited or out of quota: `rate_limited` (429) for this chat,
    /// and a pause of the account.
    pub const fn limited(reason: PauseReason) -> Self {
        let message = match reason {
            PauseReason::RateLimited => "Lingma account is rate limited",
            PauseReason::QuotaExhausted => "Lingma account is out of quota",
        };
        Self {
            kind: ErrorKind::RateLimited,
            message,
            limit: Some(reason),
        }
    }

    /// Whether a failure on a continued session is worth one retry as a fresh session:
    /// not when the account itself is the problem.
    pub fn retry_fresh(&self) -> bool {
        !matches!(
            self.kind,
            ErrorKind::RateLimited | ErrorKind::UpstreamAuth | ErrorKind::Cancelled
        )
    }
}

/// A whole `chat/finish` -> a finish reason, or a failure: first what it says about the
/// account (a 429 or a quota code, `QuotaSettings::limit_of`), then its status code.
pub fn classify_finish_event(
    finish: &ChatFinish,
    quota: &QuotaSettings,
) -> Result<FinishReason, Failure> {
    match quota.limit_of(finish) {
        Some(reason) => Err(Failure::limited(reason)),
        None => classify_finish(finish.status_code),
    }
}

/// `chat/finish.statusCode` -> a finish reason, or a failure.
pub fn classify_finish(status_code: i64) -> Result<FinishReason, Failure> {
    match status_code {
        // Some builds leave the code at 0 on success (the plugin audits "status code 0").
        finish_codes::OK | 0 => Ok(FinishReason::Stop),
        finish_codes::FILTERED | finish_codes::FILTERED_ALT => Ok(FinishReason::ContentFilter),
        finish_codes::RATE_LIMITED => Err(Failure::new(
            ErrorKind::RateLimited,
            "Lingma account is rate limited",
        )),
        finish_codes::UNAUTHORIZED | finish_codes::FORBIDDEN => Err(Failure::new(
            ErrorKind::UpstreamAuth,
            "Lingma account was refused (auth or quota)",
        )),
        finish_codes::TIMEOUT => Err(Failure::new(
            ErrorKind::Timeout,
            "Lingma timed out or gave an empty answer",
        )),
        finish_codes::INTERNAL => Err(Failure::new(ErrorKind::Upstream, "Lingma failed the chat")),
        // A code Lingma does not document is its verdict on this request (a refusal), not
        // a sign the instance is broken: the request's fault (no ejection, no retry).
        _ => Err(Failure::new(
            ErrorKind::BadRequest,
            "Lingma refused this request",
        )),
    }
}

/// An error answering `chat/ask` itself -> a failure. A JSON-RPC error or a rejection is
/// Lingma refusing this request (invalid params, a prompt it will not run): the request's
/// fault, so it neither counts against the instance nor moves to another one. Transport
/// failures stay the instance's.
pub fn classify_ask_error(e: &ClientError) -> Failure {
    match e {
        ClientError::Upstream {
            code: codes::NOT_LOGGED_IN,
            ..
        } => Failure::new(ErrorKind::UpstreamAuth, "Lingma account is not logged in"),
        ClientError::Upstream {
            code: codes::TOO_MANY_CHATS,
            ..
        } => Failure::new(ErrorKind::Overloaded, "Lingma is at capacity"),
        ClientError::Upstream { .. } | ClientError::Rejected(_) => {
            Failure::new(ErrorKind::BadRequest, "Lingma refused this request")
        }
        other => classify_client_error(other),
    }
}

/// A client error -> a failure. The error's own text is never forwarded.
pub fn classify_client_error(e: &ClientError) -> Failure {
    match e {
        ClientError::ConnectionLost => {
            Failure::new(ErrorKind::ConnectionLost, "connection to Lingma lost")
        }
        ClientError::Timeout { .. } => {
            Failure::new(ErrorKind::Timeout, "Lingma did not answer in time")
        }
        ClientError::Upstream { .. } => {
            Failure::new(ErrorKind::Upstream, "Lingma answered with an error")
        }
        ClientError::Protocol(_) => {
            Failure::new(ErrorKind::Upstream, "Lingma sent an invalid message")
        }
        ClientError::Rejected(_) => Failure::new(ErrorKind::Upstream, "Lingma refused the chat"),
        ClientError::Connect(_) | ClientError::Closed | ClientError::NotSent => {
            Failure::new(ErrorKind::Unavailable, "not connected to Lingma")
        }
        // This chat's own reader fell behind Lingma (it waited on a slow gateway
        // connection): the gateway's or its client's doing, never the instance's.
        ClientError::ConsumerTooSlow { .. } => Failure::new(
            ErrorKind::Cancelled,
            "the gateway connection did not keep up with the answer",
        ),
    }
}

use mux_protocol::estimate_tokens;

pub fn estimated_usage(prompt_chars: usize, completion_chars: usize) -> Usage {
    let prompt_tokens = estimate_tokens(prompt_chars);
    let completion_tokens = estimate_tokens(completion_chars);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens.saturating_add(completion_tokens),
        estimated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_too_slow_never_blames_the_instance() {
        let f = classify_client_error(&ClientError::ConsumerTooSlow { unread: 1024 });
        assert_eq!(f.kind, ErrorKind::Cancelled);
        assert!(!f.kind.blames_instance());
        assert!(
            classify_client_error(&ClientError::ConnectionLost)
                .kind
                .blames_instance()
        );
    }

    #[test]
    fn finish_codes_map_as_section_7_says() {
        assert_eq!(classify_finish(200), Ok(FinishReason::Stop));
        assert_eq!(classify_finish(601), Ok(FinishReason::ContentFilter));
        assert_eq!(classify_finish(406), Ok(FinishReason::ContentFilter));
        let kind = |c| classify_finish(c).err().map(|f| f.kind);
        assert_eq!(kind(429), Some(ErrorKind::RateLimited));
        assert_eq!(kind(401), Some(ErrorKind::UpstreamAuth));
        assert_eq!(kind(403), Some(ErrorKind::UpstreamAuth));
        assert_eq!(kind(408), Some(ErrorKind::Timeout));
        assert_eq!(kind(500), Some(ErrorKind::Upstream));
        assert_eq!(
            kind(90000),
            Some(ErrorKind::BadRequest),
            "unlisted: a refusal"
        );
    }

    #[test]
    fn limited_accounts_fail_the_chat_as_rate_limited_and_name_the_pause() {
        let quota = QuotaSettings::default();
        let finish = |status_code, extra| ChatFinish {
            status_code,
            extra,
            ..ChatFinish::default()
        };
        let f = classify_finish_event(&finish(429, serde_json::Value::Null), &quota)
            .expect_err("429 fails");
        assert_eq!(f.kind, ErrorKind::RateLimited);
        assert_eq!(f.limit, Some(PauseReason::RateLimited));
        let f = classify_finish_event(&finish(403, serde_json::json!({"errorCode": 110})), &quota)
            .expect_err("quota fails");
        assert_eq!(f.kind, ErrorKind::RateLimited);
        assert_eq!(f.limit, Some(PauseReason::QuotaExhausted));
        assert!(
            !f.retry_fresh(),
            "a fresh session would meet the same limit"
        );
        let f = classify_finish_event(&finish(403, serde_json::json!({})), &quota)
            .expect_err("403 fails");
        assert_eq!((f.kind, f.limit), (ErrorKind::UpstreamAuth, None));
        assert_eq!(
            classify_finish_event(&finish(200, serde_json::json!({"errorCode": 110})), &quota),
            Ok(FinishReason::Stop),
            "an answered chat is no limit"
        );
    }

    #[test]
    fn refusals_of_the_ask_are_the_requests_fault() {
        let invalid = ClientError::Upstream {
            code: -32602,
            message: "unknown model".into(),
        };
        assert_eq!(classify_ask_error(&invalid).kind, ErrorKind::BadRequest);
        assert_eq!(
            classify_ask_error(&ClientError::Rejected("no".into())).kind,
            ErrorKind::BadRequest
        );
        assert!(!classify_ask_error(&invalid).kind.blames_instance());
        let logged_out = ClientError::Upstream {
            code: codes::NOT_LOGGED_IN,
            message: "user not logged in".into(),
        };
        assert_eq!(
            classify_ask_error(&logged_out).kind,
            ErrorKind::UpstreamAuth
        );
        let busy = ClientError::Upstream {
            code: codes::TOO_MANY_CHATS,
            message: "too many".into(),
        };
        assert_eq!(classify_ask_error(&busy).kind, ErrorKind::Overloaded);
        assert_eq!(
            classify_ask_error(&ClientError::ConnectionLost).kind,
            ErrorKind::ConnectionLost
        );
        // An ask that never left (Lingma was already gone) may go elsewhere.
        let not_sent = classify_ask_error(&ClientError::NotSent).kind;
        assert_eq!(not_sent, ErrorKind::Unavailable);
        assert!(not_sent.retriable_elsewhere());
    }

    #[test]
    fn client_errors_never_carry_upstream_text() {
        let e = ClientError::Upstream {
            code: -32603,
            message: "secret-token-text".into(),
        };
        let f = classify_client_error(&e);
        assert_eq!(f.kind, ErrorKind::Upstream);
        assert!(!f.message.contains("secret"));
        assert_eq!(
            classify_client_error(&ClientError::ConnectionLost).kind,
            ErrorKind::ConnectionLost
        );
    }

    #[test]
    fn usage_is_estimated() {
        let u = estimated_usage(10, 4);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (3, 1, 4)
        );
        assert!(u.estimated);
    }
}
