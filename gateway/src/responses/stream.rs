//! The Responses streaming events, each with its `sequence_number`: `response.created`,
//! `response.in_progress`, then per output item `response.output_item.added`, for a
//! message `response.content_part.added`, `response.output_text.delta`s,
//! `response.output_text.done`, `response.content_part.done`, for a function call
//! `response.function_call_arguments.delta` and `.done`, then `response.output_item.done`;
//! finally `response.completed` (or `response.incomplete`) or `response.failed`.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};
use tool_calls::ToolCall;

use super::output::{
    ResponseMeta, final_status, function_call_item, message_item, new_id, output_text_part,
    usage_json,
};
use crate::chat::tools::StopReason;
use crate::errors::GatewayError;

struct OpenMessage {
    id: String,
    index: usize,
    text: String,
}

/// Builds the events of one streamed response and the final `response` object.
pub struct EventWriter {
    meta: ResponseMeta,
    sequence: u64,
    output: Vec<Value>,
    message: Option<OpenMessage>,
}

impl EventWriter {
    pub fn new(meta: ResponseMeta) -> Self {
        Self {
            meta,
            sequence: 0,
            output: Vec::new(),
            message: None,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> Bytes {
        if let Value::Object(map) = &mut data {
            map.insert("type".into(), Value::String(kind.to_owned()));
            map.insert("sequence_number".into(), Value::from(self.sequence));
        }
        self.sequence += 1;
        let mut buf = BytesMut::with_capacity(256);
        buf.put_slice(b"event: ");
        buf.put_slice(kind.as_bytes());
        buf.put_slice(b"\ndata: ");
        buf.put_slice(data.to_string().as_bytes());
        buf.put_slice(b"\n\n");
        buf.freeze()
    }

    pub fn start(&mut self) -> Vec<Bytes> {
        let response = self
            .meta
            .response("in_progress", &[], None, None, Value::Null);
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    pub fn text(&mut self, delta: &str) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(3);
        if self.message.is_none() {
            let open = OpenMessage {
                id: new_id("msg"),
                index: self.output.len(),
                text: String::new(),
            };
            let item = message_item(&open.id, None, "in_progress");
            out.push(self.event(
                "response.output_item.added",
                json!({"output_index": open.index, "item": item}),
            ));
            out.push(self.event(
                "response.content_part.added",
                json!({"item_id": open.id, "output_index": open.index, "content_index": 0,
                    "part": output_text_part("")}),
            ));
            // Placeholder until the item is done, so output indexes stay in order.
            self.output.push(Value::Null);
            self.message = Some(open);
        }
        let Some(open) = self.message.as_mut() else {
            return out;
        };
        open.text.push_str(delta);
        let data = json!({"item_id": open.id, "output_index": open.index, "content_index": 0,
            "delta": delta, "logprobs": []});
        out.push(self.event("response.output_text.delta", data));
        out
    }

    fn close_message(&mut self, out: &mut Vec<Bytes>) {
        let Some(open) = self.message.take() else {
            return;
        };
        let (id, index, text) = (open.id, open.index, open.text);
        out.push(self.event(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
        ));
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text_part(&text)}),
        ));
        let item = message_item(&id, Some(&text), "completed");
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        if let Some(slot) = self.output.get_mut(index) {
            *slot = item;
        }
    }

    pub fn call(&mut self, call: &ToolCall) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(6);
        self.close_message(&mut out);
        let id = new_id("fc");
        let index = self.output.len();
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": function_call_item(&id, call, "", "in_progress")}),
        ));
        out.push(self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": call.arguments}),
        ));
        out.push(self.event(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "name": call.name, "arguments": call.arguments}),
        ));
        let item = function_call_item(&id, call, &call.arguments, "completed");
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        self.output.push(item);
        out
    }

    /// The closing events and the final `response` object (to store).
    pub fn finish(&mut self, stop: StopReason, usage: mux_protocol::Usage) -> (Vec<Bytes>, Value) {
        let mut out = Vec::with_capacity(4);
        self.close_message(&mut out);
        let (status, incomplete) = final_status(stop);
        let response = self.meta.response(
            status,
            &self.output,
            Some(usage_json(usage)),
            None,
            incomplete,
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        out.push(self.event(kind, json!({"response": response})));
        (out, response)
    }

    /// `response.failed` with the error in the response object.
    pub fn failed(&mut self, e: &GatewayError) -> Bytes {
        let code = match e {
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            _ => "server_error",
        };
        let error = json!({"code": code, "message": e.message()});
        let response = self
            .meta
            .response("failed", &[], None, Some(error), Value::Null);
        self.event("response.failed", json!({"response": response}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "resp_1".into(),
            created_at: 1,
            model: "m".into(),
            instructions: None,
            previous_response_id: None,
            tools: vec![],
            tool_choice: json!("auto"),
            parallel_tool_calls: true,
            metadata: json!({}),
            store: true,
            user: None,
        }
    }

    fn parse(frames: &[Bytes]) -> Vec<Value> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).expect("utf8");
                let (event, data) = text
                    .strip_suffix("\n\n")
                    .and_then(|t| t.split_once('\n'))
                    .expect("event and data lines");
                let v: Value =
                    serde_json::from_str(data.strip_prefix("data: ").expect("data")).expect("json");
                assert_eq!(
                    Some(v["type"].as_str().expect("type")),
                    event.strip_prefix("event: ")
                );
                v
            })
            .collect()
    }

    #[test]
    fn text_then_call_sequence_with_numbers() {
        let mut w = EventWriter::new(meta());
        let mut frames = w.start();
        frames.extend(w.text("Hel"));
        frames.extend(w.text("lo"));
        frames.extend(w.call(&ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: r#"{"a":1}"#.into(),
        }));
        let (end, response) = w.finish(StopReason::ToolCalls, mux_protocol::Usage::default());
        frames.extend(end);
        let events = parse(&frames);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        assert_eq!(events[6]["text"], "Hello");
        assert_eq!(events[9]["output_index"], 1);
        assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(response["output"][1]["type"], "function_call");
        assert_eq!(response["status"], "completed");
    }

    #[test]
    fn failure_is_a_failed_response() {
        let mut w = EventWriter::new(meta());
        let _ = w.start();
        let v = parse(&[w.failed(&GatewayError::Timeout)]);
        assert_eq!(v[0]["type"], "response.failed");
        assert_eq!(v[0]["response"]["status"], "failed");
        assert_eq!(v[0]["response"]["error"]["code"], "server_error");
        assert_eq!(v[0]["sequence_number"], 2);
    }
}
