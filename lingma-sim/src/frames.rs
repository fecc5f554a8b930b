//! Building outgoing frames: JSON-RPC serialised straight from borrowed data into a reused
//! per-thread buffer, then wrapped in `Content-Length` framing: one allocation per frame.

use lingma_protocol::framing::encode;
use lingma_protocol::jsonrpc::Id;
use serde::Serialize;
use std::cell::RefCell;

/// JSON-RPC error codes of the simulator (server-error range).
pub mod sim_codes {
    /// `chat/ask` while logged out (or the `not_logged_in` fault).
    pub const NOT_LOGGED_IN: i64 = lingma_protocol::jsonrpc::codes::NOT_LOGGED_IN;
    /// `chat/ask` over the concurrency cap with `--over-limit error`.
    pub const TOO_MANY_CHATS: i64 = lingma_protocol::jsonrpc::codes::TOO_MANY_CHATS;
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

#[derive(Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: i64,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct Notification<'a, P> {
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct Response<'a, R> {
    jsonrpc: &'static str,
    id: &'a Id,
    result: &'a R,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    id: &'a Id,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i64,
    message: &'a str,
}

fn framed(value: &impl Serialize) -> String {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        buf.clear();
        if let Err(e) = serde_json::to_writer(&mut *buf, value) {
            // Our own plain data always serialises; keep the stream alive regardless.
            tracing::error!(error = %e, "cannot serialise an outgoing frame");
            buf.clear();
            buf.extend_from_slice(b"{}");
        }
        encode(std::str::from_utf8(&buf).unwrap_or("{}"))
    })
}

/// A request the simulator pushes (an event the client must ack).
pub fn request(id: i64, method: &str, params: &impl Serialize) -> String {
    framed(&Request {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
}

/// A notification the simulator pushes (no id, no ack expected).
pub fn notification(method: &str, params: &impl Serialize) -> String {
    framed(&Notification {
        jsonrpc: "2.0",
        method,
        params,
    })
}

pub fn response(id: &Id, result: &impl Serialize) -> String {
    framed(&Response {
        jsonrpc: "2.0",
        id,
        result,
    })
}

pub fn error(id: &Id, code: i64, message: &str) -> String {
    framed(&ErrorResponse {
        jsonrpc: "2.0",
        id,
        error: ErrorBody { code, message },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingma_protocol::framing::FrameDecoder;
    use lingma_protocol::jsonrpc::Message;

    #[test]
    fn frames_decode_as_the_protocol_crate_expects() {
        let mut d = FrameDecoder::new();
        d.push(request(7, "chat/answer", &serde_json::json!({"text": "é"})).as_bytes());
        d.push(response(&Id::Str("x".into()), &serde_json::Value::Null).as_bytes());
        d.push(error(&Id::Num(3), -32601, "nope").as_bytes());
        let a = Message::decode(&d.next_frame().expect("ok").expect("frame")).expect("json");
        assert!(matches!(a, Message::Request { id: Id::Num(7), .. }));
        let b = Message::decode(&d.next_frame().expect("ok").expect("frame")).expect("json");
        assert!(matches!(
            b,
            Message::Response {
                result: Ok(serde_json::Value::Null),
                ..
            }
        ));
        let c = Message::decode(&d.next_frame().expect("ok").expect("frame")).expect("json");
        assert!(matches!(c, Message::Response { result: Err(_), .. }));
    }
}
