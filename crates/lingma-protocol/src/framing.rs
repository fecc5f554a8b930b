//! LSP base-protocol framing (`Content-Length: N\r\n\r\n<json>`) carried inside WebSocket
//! text messages. One WebSocket message may hold several frames or part of one, so the
//! decoder buffers across messages.

use thiserror::Error;

/// Largest frame body accepted; a larger declared length is a protocol violation.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("frame header is not `Content-Length: <n>`")]
    BadHeader,
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("frame body is not UTF-8")]
    NotUtf8,
}

/// Wrap one JSON body in its header.
pub fn encode(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 24);
    out.push_str("Content-Length: ");
    out.push_str(&json.len().to_string());
    out.push_str("\r\n\r\n");
    out.push_str(json);
    out
}

/// Incremental decoder: feed it WebSocket message payloads, take out complete frame bodies.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame body, `Ok(None)` when more data is needed. After an error the
    /// buffer is cleared: the stream cannot be resynchronised reliably.
    pub fn next_frame(&mut self) -> Result<Option<String>, FramingError> {
        // A header starts with a letter. Checking now catches unframed JSON at once, instead
        // of waiting for a `\r\n\r\n` that would make it swallow the next valid frame.
        if self.buf.first().is_some_and(|b| !b.is_ascii_alphabetic()) {
            self.buf.clear();
            return Err(FramingError::BadHeader);
        }
        let Some(header_end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > 1024 {
                self.buf.clear();
                return Err(FramingError::BadHeader);
            }
            return Ok(None);
        };
        let len = match parse_header(&self.buf[..header_end]) {
            Ok(len) => len,
            Err(e) => {
                self.buf.clear();
                return Err(e);
            }
        };
        let start = header_end + 4;
        if self.buf.len() < start + len {
            return Ok(None);
        }
        let body = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        String::from_utf8(body)
            .map(Some)
            .map_err(|_| FramingError::NotUtf8)
    }
}

fn parse_header(header: &[u8]) -> Result<usize, FramingError> {
    let text = std::str::from_utf8(header).map_err(|_| FramingError::BadHeader)?;
    let mut len = None;
    for line in text.split("\r\n") {
        let (name, value) = line.split_once(':').ok_or(FramingError::BadHeader)?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            let n: usize = value.trim().parse().map_err(|_| FramingError::BadHeader)?;
            len = Some(n);
        }
        // Other headers (Content-Type) are allowed by the LSP base protocol and ignored.
    }
    let len = len.ok_or(FramingError::BadHeader)?;
    if len > MAX_FRAME_BYTES {
        return Err(FramingError::TooLarge(len));
    }
    Ok(len)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesced_and_split_frames() {
        let mut d = FrameDecoder::new();
        let two = format!("{}{}", encode(r#"{"a":1}"#), encode(r#"{"b":"é"}"#));
        let (first, second) = two.as_bytes().split_at(30);
        d.push(first);
        assert_eq!(d.next_frame(), Ok(Some(r#"{"a":1}"#.to_owned())));
        assert_eq!(d.next_frame(), Ok(None));
        d.push(second);
        assert_eq!(d.next_frame(), Ok(Some(r#"{"b":"é"}"#.to_owned())));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn unframed_json_is_an_error_not_a_panic() {
        let mut d = FrameDecoder::new();
        d.push(b"{\"jsonrpc\":\"2.0\"}\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FramingError::BadHeader));
        // Unframed JSON without a blank line is caught at once and does not eat the next frame.
        d.push(br#"{"jsonrpc":"2.0"}"#);
        assert_eq!(d.next_frame(), Err(FramingError::BadHeader));
        d.push(encode("{}").as_bytes());
        assert_eq!(d.next_frame(), Ok(Some("{}".to_owned())));
        d.push(b"Content-Length: 99999999999\r\n\r\n");
        assert!(d.next_frame().is_err());
    }
}
