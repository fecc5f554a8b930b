//! The Messages streaming event sequence: `message_start`, then per content block
//! `content_block_start`, `content_block_delta`s (`text_delta`, `thinking_delta`,
//! `input_json_delta`) and `content_block_stop` (with one `ping` after the first block
//! opens), then `message_delta` (stop reason, usage) and `message_stop`; an error after
//! the start is an `error` event.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};
use tool_calls::ToolCall;

use super::error::body_json;
use super::response::{Usage, stop_reason_str, tool_use_id};
use crate::chat::tools::StopReason;
use crate::errors::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
}

/// Builds the events of one streamed message; tracks the open block and its index.
pub struct EventWriter {
    thinking: bool,
    next_index: u32,
    open: Option<Open>,
    pinged: bool,
}

pub fn frame(event: &str, data: &Value) -> Bytes {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_slice(b"event: ");
    buf.put_slice(event.as_bytes());
    buf.put_slice(b"\ndata: ");
    buf.put_slice(data.to_string().as_bytes());
    buf.put_slice(b"\n\n");
    buf.freeze()
}

impl EventWriter {
    /// `thinking`: whether reasoning is sent as thinking blocks (the request enabled it).
    pub fn new(thinking: bool) -> Self {
        Self {
            thinking,
            next_index: 0,
            open: None,
            pinged: false,
        }
    }

    pub fn start(&self, id: &str, model: &str, input_tokens: u32) -> Bytes {
        frame(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 0},
            }}),
        )
    }

    fn open_block(&mut self, out: &mut Vec<Bytes>, block: Value) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        out.push(frame(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if !self.pinged {
            self.pinged = true;
            out.push(frame("ping", &json!({"type": "ping"})));
        }
        index
    }

    fn close_open(&mut self, out: &mut Vec<Bytes>) {
        if self.open.take().is_some() {
            out.push(frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next_index - 1}),
            ));
        }
    }

    fn delta(&mut self, out: &mut Vec<Bytes>, kind: Open, delta: Value) {
        if self.open != Some(kind) {
            self.close_open(out);
            let block = match kind {
                Open::Text => json!({"type": "text", "text": ""}),
                Open::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            };
            self.open_block(out, block);
            self.open = Some(kind);
        }
        out.push(frame(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.next_index - 1, "delta": delta}),
        ));
    }

    pub fn text(&mut self, text: &str) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(3);
        self.delta(
            &mut out,
            Open::Text,
            json!({"type": "text_delta", "text": text}),
        );
        out
    }

    /// Lingma's reasoning: a thinking block when the request enabled thinking, else nothing.
    pub fn reasoning(&mut self, text: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.thinking {
            self.delta(
                &mut out,
                Open::Thinking,
                json!({"type": "thinking_delta", "thinking": text}),
            );
        }
        out
    }

    /// One complete call: its own `tool_use` block with the input as one JSON delta.
    pub fn call(&mut self, call: &ToolCall) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(4);
        self.close_open(&mut out);
        let index = self.open_block(
            &mut out,
            json!({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}}),
        );
        out.push(frame(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": call.arguments}}),
        ));
        out.push(frame(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        out
    }

    pub fn finish(&mut self, stop: StopReason, usage: Usage) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(4);
        if self.next_index == 0 {
            // An empty answer still has one (empty) text block, as Anthropic sends it.
            self.open_block(&mut out, json!({"type": "text", "text": ""}));
            self.open = Some(Open::Text);
        }
        self.close_open(&mut out);
        out.push(frame(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason_str(stop), "stop_sequence": null},
                "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}}),
        ));
        out.push(frame("message_stop", &json!({"type": "message_stop"})));
        out
    }

    pub fn error(e: &GatewayError) -> Bytes {
        let mut buf = BytesMut::with_capacity(128);
        buf.put_slice(b"event: error\ndata: ");
        buf.put_slice(body_json(e).as_bytes());
        buf.put_slice(b"\n\n");
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(frames: &[Bytes]) -> Vec<(String, Value)> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).expect("utf8");
                let body = text.strip_suffix("\n\n").expect("frame end");
                let (event, data) = body.split_once('\n').expect("two lines");
                let event = event.strip_prefix("event: ").expect("event line");
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").expect("data")).expect("json");
                assert_eq!(data["type"], event, "event name = data.type");
                (event.to_owned(), data)
            })
            .collect()
    }

    #[test]
    fn text_then_tool_use_follows_the_documented_sequence() {
        let mut w = EventWriter::new(false);
        let mut frames = vec![w.start("msg_1", "claude-x", 10)];
        frames.extend(w.reasoning("hidden"));
        frames.extend(w.text("Let me "));
        frames.extend(w.text("look."));
        frames.extend(w.call(&ToolCall {
            id: "call_1".into(),
            name: "Read".into(),
            arguments: r#"{"path":"a"}"#.into(),
        }));
        frames.extend(w.finish(
            StopReason::ToolCalls,
            Usage {
                input_tokens: 10,
                output_tokens: 5,
            },
        ));
        let ev = events(&frames);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], 10);
        assert_eq!(ev[1].1["content_block"]["type"], "text");
        assert_eq!(ev[3].1["delta"]["text"], "Let me ");
        assert_eq!(ev[6].1["index"], 1);
        assert_eq!(ev[6].1["content_block"]["id"], "toolu_1");
        assert_eq!(ev[7].1["delta"]["type"], "input_json_delta");
        assert_eq!(ev[7].1["delta"]["partial_json"], r#"{"path":"a"}"#);
        assert_eq!(ev[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[9].1["usage"]["output_tokens"], 5);
    }

    #[test]
    fn thinking_blocks_only_when_asked_and_empty_answers_have_a_block() {
        let mut w = EventWriter::new(true);
        let mut frames = w.reasoning("hmm");
        frames.extend(w.text("ok"));
        let ev = events(&frames);
        assert_eq!(ev[0].1["content_block"]["type"], "thinking");
        assert_eq!(ev[2].1["delta"]["type"], "thinking_delta");
        assert_eq!(ev[3].0, "content_block_stop");
        assert_eq!(ev[4].1["content_block"]["type"], "text");
        assert_eq!(ev[4].1["index"], 1);

        let mut empty = EventWriter::new(false);
        let ev = events(&empty.finish(
            StopReason::Stop,
            Usage {
                input_tokens: 1,
                output_tokens: 0,
            },
        ));
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content_block_start",
                "ping",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn errors_are_error_events() {
        let ev = events(&[EventWriter::error(&GatewayError::Timeout)]);
        assert_eq!(ev[0].0, "error");
        assert_eq!(ev[0].1["error"]["type"], "timeout_error");
    }
}
