//! The `response` object and its output items (`message` with `output_text`,
//! `function_call`), shared by the streaming and non-streaming paths.

use serde_json::{Value, json};
use tool_calls::ToolCall;

use crate::chat::tools::StopReason;

/// What the `response` object echoes from the request.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub metadata: Value,
    pub store: bool,
    pub user: Option<String>,
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// `usage` of a response: the sidecar's estimated counts.
pub fn usage_json(u: mux_protocol::Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens,
    })
}

/// `status` of a finished response and its `incomplete_details`.
pub fn final_status(stop: StopReason) -> (&'static str, Value) {
    match stop {
        StopReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        StopReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        StopReason::Stop | StopReason::ToolCalls => ("completed", Value::Null),
    }
}

impl ResponseMeta {
    /// The `response` object in a given state.
    pub fn response(
        &self,
        status: &str,
        output: &[Value],
        usage: Option<Value>,
        error: Option<Value>,
        incomplete: Value,
    ) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": self.instructions,
            "max_output_tokens": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": self.previous_response_id,
            "reasoning": {"effort": null, "summary": null},
            "store": self.store,
            "temperature": null,
            "text": {"format": {"type": "text"}},
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "top_p": null,
            "truncation": "disabled",
            "usage": usage,
            "user": self.user,
            "metadata": self.metadata,
        })
    }
}

pub fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

pub fn message_item(id: &str, text: Option<&str>, status: &str) -> Value {
    let content: Vec<Value> = text.map(output_text_part).into_iter().collect();
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

pub fn function_call_item(id: &str, call: &ToolCall, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call.id, "name": call.name,
        "arguments": arguments, "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_have_the_published_fields() {
        let m = message_item("msg_1", Some("hi"), "completed");
        assert_eq!(m["content"][0]["type"], "output_text");
        assert_eq!(m["content"][0]["annotations"], json!([]));
        assert_eq!(
            message_item("msg_1", None, "in_progress")["content"],
            json!([])
        );
        let call = ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        let f = function_call_item("fc_1", &call, "{}", "completed");
        assert_eq!(f["call_id"], "call_1");
        assert_eq!(f["id"], "fc_1");
        assert_eq!(final_status(StopReason::ToolCalls).0, "completed");
        assert_eq!(
            final_status(StopReason::Length).1["reason"],
            "max_output_tokens"
        );
    }
}
