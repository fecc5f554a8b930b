//! JSON-RPC 2.0 messages as Lingma sends them. Integer and string ids both occur.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Num(i64),
    Str(String),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Standard JSON-RPC error codes.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Server-defined: `chat/ask` while logged out. Lingma's own code is not known
    /// (lingma-protocol.md A-items); this is the simulator's, the one the sidecar reads
    /// as the account's fault rather than a refusal of the request.
    pub const NOT_LOGGED_IN: i64 = -32001;
    /// Server-defined: `chat/ask` over the concurrency cap (the simulator's
    /// `--over-limit error`): the instance is busy, the ask never ran.
    pub const TOO_MANY_CHATS: i64 = -32002;
}

/// Any JSON-RPC message. Classified by which fields are present, so the order of the
/// untagged variants matters: a request has `method` and `id`, a notification `method`
/// only, a response `id` and `result` or `error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Id,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Response {
        id: Id,
        result: Result<Value, RpcError>,
    },
}

#[derive(Serialize, Deserialize)]
struct RawMessage {
    #[serde(default)]
    jsonrpc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
    // `Some(Value::Null)` must survive: `"result": null` is a valid (ack) result.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<RpcError>,
}

mod present {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Value::deserialize(d).map(Some)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a JSON-RPC 2.0 message")]
    NotJsonRpc,
}

impl Message {
    pub fn request(id: impl Into<Id>, method: &str, params: Value) -> Self {
        Message::Request {
            id: id.into(),
            method: method.to_owned(),
            params,
        }
    }

    /// The ack Lingma expects for every event it pushes as a request.
    pub fn ack(id: Id) -> Self {
        Message::Response {
            id,
            result: Ok(Value::Null),
        }
    }

    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let raw: RawMessage = serde_json::from_str(text)?;
        if raw.jsonrpc.as_deref().is_some_and(|v| v != "2.0") {
            return Err(DecodeError::NotJsonRpc);
        }
        match (raw.id, raw.method, raw.result, raw.error) {
            (Some(id), Some(method), None, None) => Ok(Message::Request {
                id,
                method,
                params: raw.params.unwrap_or(Value::Null),
            }),
            (None, Some(method), None, None) => Ok(Message::Notification {
                method,
                params: raw.params.unwrap_or(Value::Null),
            }),
            (Some(id), None, Some(result), None) => Ok(Message::Response {
                id,
                result: Ok(result),
            }),
            (Some(id), None, _, Some(error)) => Ok(Message::Response {
                id,
                result: Err(error),
            }),
            _ => Err(DecodeError::NotJsonRpc),
        }
    }

    pub fn encode(&self) -> String {
        let raw = match self.clone() {
            Message::Request { id, method, params } => RawMessage {
                jsonrpc: Some("2.0".into()),
                id: Some(id),
                method: Some(method),
                params: Some(params),
                result: None,
                error: None,
            },
            Message::Notification { method, params } => RawMessage {
                jsonrpc: Some("2.0".into()),
                id: None,
                method: Some(method),
                params: Some(params),
                result: None,
                error: None,
            },
            Message::Response { id, result } => {
                let (result, error) = match result {
                    Ok(v) => (Some(v), None),
                    Err(e) => (None, Some(e)),
                };
                RawMessage {
                    jsonrpc: Some("2.0".into()),
                    id: Some(id),
                    method: None,
                    params: None,
                    result,
                    error,
                }
            }
        };
        // Serialising plain JSON values cannot fail.
        serde_json::to_string(&raw).unwrap_or_default()
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Num(n)
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::Str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_and_round_trips() {
        let ack = Message::ack(Id::Num(5));
        let text = ack.encode();
        assert_eq!(text, r#"{"jsonrpc":"2.0","id":5,"result":null}"#);
        assert_eq!(Message::decode(&text).expect("decode"), ack);

        let req = Message::request(3, "chat/ask", json!({"a":1}));
        assert_eq!(Message::decode(&req.encode()).expect("decode"), req);

        let err = Message::decode(
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"nope"}}"#,
        )
        .expect("decode");
        assert!(matches!(
            err,
            Message::Response {
                result: Err(RpcError { code: -32601, .. }),
                ..
            }
        ));

        let note = Message::decode(r#"{"jsonrpc":"2.0","method":"window/logMessage","params":{}}"#)
            .expect("decode");
        assert!(matches!(note, Message::Notification { .. }));
        assert!(Message::decode(r#"{"jsonrpc":"2.0"}"#).is_err());
        assert!(Message::decode("not json").is_err());
    }
}
