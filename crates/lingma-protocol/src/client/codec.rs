//! The client's hot-path encoding and decoding. Incoming messages are decoded with borrowed
//! fields (`&RawValue`) so that params are parsed once, straight into their typed struct,
//! and acks echo the raw id text without building a `Value` tree per event.

use crate::jsonrpc::RpcError;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// One incoming JSON-RPC message, fields borrowed from the frame text.
#[derive(Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(default, borrow)]
    pub id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
    // `"result": null` (an ack result) must read as present.
    #[serde(default, borrow, deserialize_with = "present")]
    pub result: Option<&'a RawValue>,
    #[serde(default)]
    pub error: Option<RpcError>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

pub(crate) enum Kind<'a> {
    /// A server request (has an id): must be acked.
    Request {
        id: &'a RawValue,
        method: Cow<'a, str>,
    },
    Notification {
        method: Cow<'a, str>,
    },
    Response {
        id: &'a RawValue,
    },
}

impl<'a> Incoming<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn kind(&self) -> Option<Kind<'a>> {
        // A `null` id is a notification in JSON-RPC terms.
        let id = self.id.filter(|id| id.get() != "null");
        match (id, &self.method) {
            (Some(id), Some(method)) => Some(Kind::Request {
                id,
                method: method.clone(),
            }),
            (None, Some(method)) => Some(Kind::Notification {
                method: method.clone(),
            }),
            (Some(id), None) if self.result.is_some() || self.error.is_some() => {
                Some(Kind::Response { id })
            }
            _ => None,
        }
    }

    pub fn params_text(&self) -> &'a str {
        self.params.map_or("null", RawValue::get)
    }
}

/// The numeric value of a response id (we only send integer ids; a string of digits is
/// accepted because some servers echo ids as strings).
pub(crate) fn response_id(raw: &RawValue) -> Option<i64> {
    let text = raw.get();
    let digits = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    digits.parse().ok()
}

const FRAME_PREFIX: &str = "Content-Length: ";
const FRAME_SEPARATOR: &str = "\r\n\r\n";

/// Frame a JSON body in one allocation.
fn frame_parts(parts: &[&str]) -> String {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len_text = len.to_string();
    let mut out =
        String::with_capacity(FRAME_PREFIX.len() + len_text.len() + FRAME_SEPARATOR.len() + len);
    out.push_str(FRAME_PREFIX);
    out.push_str(&len_text);
    out.push_str(FRAME_SEPARATOR);
    for p in parts {
        out.push_str(p);
    }
    out
}

/// The framed ack `{"jsonrpc":"2.0","id":<id>,"result":null}` for a server request.
pub(crate) fn ack_frame(id: &RawValue) -> String {
    frame_parts(&[r#"{"jsonrpc":"2.0","id":"#, id.get(), r#","result":null}"#])
}

/// A framed response with a result (used for `tool/invoke`).
pub(crate) fn result_frame<R: Serialize>(
    id: &RawValue,
    result: &R,
) -> Result<String, serde_json::Error> {
    let result = serde_json::to_string(result)?;
    Ok(frame_parts(&[
        r#"{"jsonrpc":"2.0","id":"#,
        id.get(),
        r#","result":"#,
        &result,
        "}",
    ]))
}

#[derive(Serialize)]
struct OutgoingRequest<'a, P: ?Sized> {
    jsonrpc: &'static str,
    id: i64,
    method: &'a str,
    params: &'a P,
}

/// A framed request.
pub(crate) fn request_frame<P: Serialize + ?Sized>(
    id: i64,
    method: &str,
    params: &P,
) -> Result<String, serde_json::Error> {
    let body = serde_json::to_string(&OutgoingRequest {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })?;
    Ok(frame_parts(&[&body]))
}

/// Best-effort `requestId` of a message that failed to parse, so its chat can be told.
pub(crate) fn sniff_request_id(text: &str) -> Option<&str> {
    let key = "\"requestId\"";
    let mut rest = &text[text.find(key)? + key.len()..];
    rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::FrameDecoder;
    use crate::jsonrpc::Message;

    #[test]
    fn classifies_borrowed_messages() {
        let req = Incoming::parse(
            r#"{"jsonrpc":"2.0","id":101,"method":"chat/answer","params":{"requestId":"r"}}"#,
        )
        .expect("parse");
        assert!(matches!(req.kind(), Some(Kind::Request { .. })));
        assert_eq!(req.params_text(), r#"{"requestId":"r"}"#);
        let ack = Incoming::parse(r#"{"jsonrpc":"2.0","id":"7","result":null}"#).expect("parse");
        let Some(Kind::Response { id }) = ack.kind() else {
            panic!("not a response")
        };
        assert_eq!(response_id(id), Some(7));
        let err = Incoming::parse(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"x"}}"#)
            .expect("parse");
        assert!(matches!(err.kind(), Some(Kind::Response { .. })));
        let note =
            Incoming::parse(r#"{"jsonrpc":"2.0","method":"window/logMessage"}"#).expect("parse");
        assert!(matches!(note.kind(), Some(Kind::Notification { .. })));
        assert!(
            Incoming::parse(r#"{"jsonrpc":"2.0"}"#)
                .expect("parse")
                .kind()
                .is_none()
        );
        assert!(Incoming::parse("{nope").is_err());
    }

    #[test]
    fn frames_match_the_lead_codec() {
        let id = RawValue::from_string("\"abc\"".to_owned()).expect("raw");
        let mut d = FrameDecoder::new();
        d.push(ack_frame(&id).as_bytes());
        let body = d.next_frame().expect("frame").expect("complete");
        assert_eq!(
            Message::decode(&body).expect("decode"),
            Message::ack(crate::jsonrpc::Id::Str("abc".into()))
        );
        let frame = request_frame(9, "ping", &serde_json::json!({})).expect("encode");
        d.push(frame.as_bytes());
        let body = d.next_frame().expect("frame").expect("complete");
        assert_eq!(
            Message::decode(&body).expect("decode"),
            Message::request(9, "ping", serde_json::json!({}))
        );
    }

    #[test]
    fn sniffs_request_ids_from_garbage() {
        assert_eq!(
            sniff_request_id(r#"{"params":{"requestId" : "r-1","te"#),
            Some("r-1")
        );
        assert_eq!(sniff_request_id("garbage"), None);
    }
}
