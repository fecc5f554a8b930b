//! The client side of the gateway's OpenAI surface: request bodies, non-streaming calls and
//! an SSE reader that timestamps every content chunk.

use anyhow::Result;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Response header where the gateway reports its own overhead, in microseconds.
pub const OVERHEAD_HEADER: &str = "x-lingma-overhead-us";
/// Response header saying whether the upstream session was reused, new or migrated.
pub const SESSION_HEADER: &str = "x-lingma-session";

/// A chat completion body; `messages` are (role, content) pairs.
pub fn chat_body(messages: &[(&str, &str)], stream: bool, user: Option<&str>) -> Value {
    let mut body = json!({
        "model": "org_auto",
        "messages": messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect::<Vec<_>>(),
        "stream": stream,
    });
    if let Some(u) = user {
        body["user"] = u.into();
    }
    body
}

/// What one non-streaming call got.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    pub status: u16,
    pub overhead_us: Option<u64>,
    pub session: Option<String>,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl ChatOutcome {
    /// The answer text of a 200, or `None`.
    pub fn content(&self) -> Option<&str> {
        self.body
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
    }

    /// Whether the body is an OpenAI error object (`{"error":{"message","type",...}}`).
    pub fn is_openai_error(&self) -> bool {
        is_openai_error(&self.body)
    }
}

pub fn is_openai_error(body: &Value) -> bool {
    let Some(err) = body.get("error") else {
        return false;
    };
    err.get("message").is_some_and(Value::is_string)
        && err.get("type").is_some_and(Value::is_string)
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub async fn post_chat(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
    body: &Value,
) -> Result<ChatOutcome> {
    let mut req = client.post(url).json(body);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let overhead_us = header(&resp, OVERHEAD_HEADER).and_then(|v| v.trim().parse().ok());
    let session = header(&resp, SESSION_HEADER);
    let retry_after = header(&resp, "retry-after");
    let bytes = resp.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(ChatOutcome {
        status,
        overhead_us,
        session,
        body,
        retry_after,
    })
}

/// What one streaming call got, with times measured from the caller's `start`.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    pub status: u16,
    pub session: Option<String>,
    pub overhead_us: Option<u64>,
    /// Time to the first non-empty content delta.
    pub ttft: Option<Duration>,
    /// Gaps between consecutive content deltas.
    pub chunk_gaps: Vec<Duration>,
    pub content: String,
    /// `data: [DONE]` was seen.
    pub done: bool,
    /// An error object arrived (as the body of a non-200, or as an SSE event).
    pub error: Option<Value>,
    pub total: Duration,
}

pub async fn post_stream(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
    body: &Value,
    start: Instant,
) -> Result<StreamOutcome> {
    let mut req = client.post(url).json(body);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await?;
    let mut out = StreamOutcome {
        status: resp.status().as_u16(),
        session: header(&resp, SESSION_HEADER),
        overhead_us: header(&resp, OVERHEAD_HEADER).and_then(|v| v.trim().parse().ok()),
        ..StreamOutcome::default()
    };
    if out.status != 200 {
        let bytes = resp.bytes().await?;
        out.error = Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        out.total = start.elapsed();
        return Ok(out);
    }
    let mut reader = SseReader::default();
    let mut last_chunk: Option<Instant> = None;
    let mut body = resp.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece?;
        for data in reader.push(&piece) {
            if data == "[DONE]" {
                out.done = true;
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if event.get("error").is_some() {
                out.error = Some(event);
                continue;
            }
            let delta = event
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .unwrap_or("");
            if delta.is_empty() {
                continue;
            }
            let now = Instant::now();
            match last_chunk {
                None => out.ttft = Some(now - start),
                Some(prev) => out.chunk_gaps.push(now - prev),
            }
            last_chunk = Some(now);
            out.content.push_str(delta);
        }
    }
    out.total = start.elapsed();
    Ok(out)
}

/// Splits an SSE byte stream into the `data:` payloads of complete events.
#[derive(Debug, Default)]
pub struct SseReader {
    buf: Vec<u8>,
}

impl SseReader {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end.0 + end.1).collect();
            let text = String::from_utf8_lossy(&event[..end.0]);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

/// (end of the event, length of the separator).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_pieces() {
        let mut r = SseReader::default();
        assert!(r.push(b"data: {\"a\":1}\n").is_empty());
        assert_eq!(r.push(b"\ndata: [DONE]\n\n"), vec!["{\"a\":1}", "[DONE]"]);
        assert_eq!(r.push(b": comment\n\n"), Vec::<String>::new());
    }

    #[test]
    fn openai_error_shape() {
        assert!(is_openai_error(
            &json!({"error":{"message":"m","type":"t","param":null,"code":null}})
        ));
        assert!(!is_openai_error(&json!({"error":"x"})));
    }
}
