//! The Anthropic `message` object of a non-streaming answer, and the names the core's
//! answer takes in Anthropic's format (stop reasons, tool ids, usage).

use serde::Serialize;
use serde_json::Value;
use tool_calls::ToolCall;

use crate::chat::tools::{Collected, StopReason};

pub fn stop_reason_str(r: StopReason) -> &'static str {
    match r {
        StopReason::Stop => "end_turn",
        StopReason::Length => "max_tokens",
        StopReason::ContentFilter => "refusal",
        StopReason::ToolCalls => "tool_use",
    }
}

/// Anthropic tool ids look like `toolu_…`; the parser's `call_…` is re-prefixed. The id
/// only has to round-trip: the client sends it back in `tool_result.tool_use_id`.
pub fn tool_use_id(call: &ToolCall) -> String {
    match call.id.strip_prefix("call_") {
        Some(rest) => format!("toolu_{rest}"),
        None => call.id.clone(),
    }
}

/// Arguments as a JSON object (the parser only emits valid JSON objects).
pub fn tool_input(call: &ToolCall) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|_| Value::Object(Default::default()))
}

pub fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: String,
        name: &'a str,
        input: Value,
    },
}

#[derive(Debug, Serialize)]
pub struct Message<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: Vec<ContentBlock<'a>>,
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<&'a str>,
    pub usage: Usage,
}

/// The content blocks of a whole answer: thinking (when asked for), text, tool uses.
pub fn content_blocks(out: &Collected, thinking: bool) -> Vec<ContentBlock<'_>> {
    let mut blocks = Vec::with_capacity(out.calls.len() + 2);
    if thinking && !out.reasoning.is_empty() {
        blocks.push(ContentBlock::Thinking {
            thinking: &out.reasoning,
            signature: "",
        });
    }
    if !out.text.is_empty() || out.calls.is_empty() {
        blocks.push(ContentBlock::Text { text: &out.text });
    }
    blocks.extend(out.calls.iter().map(|c| ContentBlock::ToolUse {
        id: tool_use_id(c),
        name: &c.name,
        input: tool_input(c),
    }));
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_the_anthropic_shape() {
        let out = Collected {
            text: "Let me look.".into(),
            reasoning: "thinking".into(),
            calls: vec![ToolCall {
                id: "call_abc".into(),
                name: "Read".into(),
                arguments: r#"{"path":"a"}"#.into(),
            }],
        };
        let m = Message {
            id: "msg_1",
            kind: "message",
            role: "assistant",
            model: "claude-x",
            content: content_blocks(&out, false),
            stop_reason: Some(stop_reason_str(StopReason::ToolCalls)),
            stop_sequence: None,
            usage: Usage {
                input_tokens: 3,
                output_tokens: 4,
            },
        };
        let v = serde_json::to_value(&m).expect("json");
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["stop_sequence"], Value::Null);
        assert_eq!(
            v["content"][0],
            serde_json::json!({"type": "text", "text": "Let me look."})
        );
        assert_eq!(
            v["content"][1],
            serde_json::json!({"type": "tool_use", "id": "toolu_abc", "name": "Read", "input": {"path": "a"}})
        );
        assert_eq!(
            v["content"].as_array().map(Vec::len),
            Some(2),
            "no thinking unless asked"
        );
        assert_eq!(v["usage"]["input_tokens"], 3);
    }
}
