//! The one error type of the Lingma client.

/// Everything a call or a chat stream can fail with. `Clone` because one disconnect is
/// delivered to every open chat and pending call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Socket closed, reset or EOF: every open chat and pending call gets this.
    #[error("connection to Lingma lost")]
    ConnectionLost,
    /// An RPC deadline passed, or a chat stream received no event for the idle timeout.
    #[error("Lingma did not answer `{method}` in time")]
    Timeout { method: String },
    /// A JSON-RPC error from Lingma. `message` is sanitised: truncated, token-like strings redacted.
    #[error("Lingma error {code}: {message}")]
    Upstream { code: i64, message: String },
    /// Unparsable frame or JSON, or a message of the wrong shape.
    #[error("Lingma protocol violation: {0}")]
    Protocol(String),
    /// `chat/ask` was answered but not accepted (`success`/`isSuccess` false).
    #[error("Lingma rejected the chat: {0}")]
    Rejected(String),
    /// Could not open the WebSocket.
    #[error("cannot connect to Lingma: {0}")]
    Connect(String),
    /// The connection was already gone when a request was to be sent, so it never reached
    /// Lingma: unlike `ConnectionLost` (which may strike after Lingma took a request), it is
    /// safe to send it elsewhere.
    #[error("not connected to Lingma; the request was not sent")]
    NotSent,
    /// `close()` was called on this client.
    #[error("Lingma client closed")]
    Closed,
    /// The chat's consumer fell [`crate::CHAT_EVENT_BUFFER`] events behind and the chat was
    /// ended (the reader never waits on one consumer). The consumer's fault, not Lingma's.
    #[error("chat consumer too slow: {unread} events unread")]
    ConsumerTooSlow { unread: usize },
}

impl ClientError {
    pub(crate) fn upstream(code: i64, message: &str) -> Self {
        ClientError::Upstream {
            code,
            message: sanitize(message),
        }
    }

    pub(crate) fn timeout(method: &str) -> Self {
        ClientError::Timeout {
            method: method.to_owned(),
        }
    }
}

/// Longest upstream message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 300;
/// A run of token characters at least this long is treated as a secret.
const SECRET_RUN: usize = 24;

/// Make text from Lingma safe to log and to forward: cut to a bounded length and replace
/// anything that looks like a token (a long run of letters, digits, `-`, `_`, `.`, `=`,
/// `+`, `/`) by `[redacted]`. Lingma's messages can echo request headers or URLs with
/// tokens in them.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS + 16));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= SECRET_RUN {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars().take(MAX_MESSAGE_CHARS) {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+' | '/') {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut run, &mut out);
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_redacts_tokens_and_truncates() {
        let msg =
            "auth failed for token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0 at https://x";
        let clean = sanitize(msg);
        assert!(!clean.contains("eyJhbGci"), "{clean}");
        assert!(
            clean.starts_with("auth failed for token [redacted]"),
            "{clean}"
        );
        let long = "word ".repeat(200);
        let clean = sanitize(&long);
        assert!(clean.ends_with("..."));
        assert!(clean.chars().count() <= MAX_MESSAGE_CHARS + 3);
        assert_eq!(
            sanitize("failed to get user plan info: HTTP status 404"),
            "failed to get user plan info: HTTP status 404"
        );
        assert_eq!(sanitize("line\nbreak"), "line break");
    }
}
