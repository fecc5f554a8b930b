//! From the OpenAI request to what Lingma can do: flatten content to text, refuse what
//! cannot be honoured (n > 1, images, forced tool calls, logprobs, audio), ignore the rest.

use mux_protocol::{ChatMessage, Role};
use serde_json::Value;

use super::request::{ChatCompletionRequest, MessageContent, RequestMessage};
use crate::errors::GatewayError;

/// A request the gateway will serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedChat {
    /// The model name as the client sent it (echoed in responses).
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub stream: bool,
    pub include_usage: bool,
    pub user: Option<String>,
}

pub fn parse_chat_request(body: &[u8]) -> Result<ValidatedChat, GatewayError> {
    let request: ChatCompletionRequest = serde_json::from_slice(body).map_err(|e| {
        // Only on the error path: find which field is wrong, for `param`.
        let param = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) if !map.get("messages").is_some_and(Value::is_array) => {
                Some("messages")
            }
            _ => None,
        };
        GatewayError::invalid(
            format!("We could not parse the JSON body of your request: {e}"),
            param,
        )
    })?;
    validate(request)
}

pub fn validate(req: ChatCompletionRequest) -> Result<ValidatedChat, GatewayError> {
    if let Some(n) = req.n
        && n != 1
    {
        return Err(GatewayError::invalid(
            format!(
                "n={n} is not supported: this backend returns exactly one choice (n must be 1)."
            ),
            Some("n"),
        ));
    }
    if req.logprobs == Some(true) {
        return Err(GatewayError::invalid(
            "logprobs are not supported by this backend.",
            Some("logprobs"),
        ));
    }
    if req
        .modalities
        .as_ref()
        .is_some_and(|m| m.iter().any(|x| x != "text"))
        || req.audio.as_ref().is_some_and(|a| !a.is_null())
    {
        return Err(GatewayError::invalid(
            "Only text output is supported by this backend.",
            Some("modalities"),
        ));
    }
    check_forced_tool(req.tool_choice.as_ref(), "tool_choice")?;
    check_forced_tool(req.function_call.as_ref(), "function_call")?;
    let _ignored = (&req.tools, &req.functions, &req.response_format);

    if req.messages.is_empty() {
        return Err(GatewayError::invalid(
            "'messages' must contain at least one message.",
            Some("messages"),
        ));
    }
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| flatten_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(GatewayError::invalid(
            "'messages' must contain at least one message with role 'user'.",
            Some("messages"),
        ));
    }
    let model = req
        .model
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    let user = req.user.filter(|u| !u.is_empty());
    Ok(ValidatedChat {
        model,
        messages,
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        user,
    })
}

/// A client that forces a tool call expects `tool_calls` back; Lingma's chat mode cannot
/// produce them, so silently answering with text would break it.
fn check_forced_tool(choice: Option<&Value>, param: &'static str) -> Result<(), GatewayError> {
    let forced = match choice {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => s == "required",
        Some(Value::Object(_)) => true,
        Some(_) => false,
    };
    if forced {
        return Err(GatewayError::invalid(
            format!(
                "Forcing a tool call ({param}) is not supported by this backend; use \"auto\" or \"none\"."
            ),
            Some(param),
        ));
    }
    Ok(())
}

fn parse_role(role: &str, index: usize) -> Result<Role, GatewayError> {
    Ok(match role {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        "function" => Role::Function,
        other => {
            return Err(GatewayError::invalid(
                format!(
                    "Invalid value '{}' for messages[{index}].role: expected one of system, developer, user, assistant, tool, function.",
                    truncate(other, 40)
                ),
                Some("messages"),
            ));
        }
    })
}

fn flatten_message(index: usize, m: RequestMessage) -> Result<ChatMessage, GatewayError> {
    let role = parse_role(&m.role, index)?;
    let mut text = match m.content {
        None => String::new(),
        Some(MessageContent::Text(s)) => s,
        Some(MessageContent::Parts(parts)) => {
            let mut out = String::new();
            for part in parts {
                let piece = match part.kind.as_str() {
                    "text" | "input_text" => part.text.unwrap_or_default(),
                    "refusal" => part.refusal.unwrap_or_default(),
                    "image_url" | "input_image" | "input_audio" | "file" | "input_file" => {
                        return Err(GatewayError::invalid(
                            format!(
                                "messages[{index}]: content parts of type '{}' are not supported; this backend accepts text only.",
                                part.kind
                            ),
                            Some("messages"),
                        ));
                    }
                    other => {
                        return Err(GatewayError::invalid(
                            format!(
                                "messages[{index}]: unknown content part type '{}'.",
                                truncate(other, 40)
                            ),
                            Some("messages"),
                        ));
                    }
                };
                if !out.is_empty() && !piece.is_empty() {
                    out.push('\n');
                }
                out.push_str(&piece);
            }
            out
        }
    };
    if role == Role::Assistant {
        if text.is_empty()
            && let Some(refusal) = m.refusal
        {
            text = refusal;
        }
        // Earlier tool calls become readable text so the history stays coherent.
        let calls = m
            .tool_calls
            .into_iter()
            .flatten()
            .filter_map(|c| c.function)
            .chain(m.function_call);
        for call in calls {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("[called {}({})]", call.name, call.arguments));
        }
    }
    let _ = (m.name, m.tool_call_id);
    Ok(ChatMessage {
        role,
        content: text,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ValidatedChat, GatewayError> {
        parse_chat_request(v.to_string().as_bytes())
    }

    fn err_param(v: Value) -> (u16, Option<&'static str>, String) {
        match parse(v) {
            Err(e @ GatewayError::InvalidRequest { param, .. }) => {
                (e.status().as_u16(), param, e.to_string())
            }
            other => panic!("expected invalid request, got {other:?}"),
        }
    }

    #[test]
    fn full_schema_with_unknown_fields_is_accepted() {
        let chat = parse(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "system", "content": [{"type": "text", "text": "sys"}]},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "bob"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
                {"role": "function", "name": "f", "content": "43"},
                {"role": "user", "content": "next"}
            ],
            "temperature": 0.2, "top_p": 1, "max_tokens": 10, "max_completion_tokens": 10,
            "n": 1, "stop": ["x"], "user": "u1", "seed": 3, "metadata": {"a": "b"},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "tool_choice": "auto", "response_format": {"type": "json_object"},
            "stream": true, "stream_options": {"include_usage": true},
            "some_future_field": {"x": [1, 2]}
        }))
        .expect("accepted");
        assert!(chat.stream && chat.include_usage);
        assert_eq!(chat.user.as_deref(), Some("u1"));
        assert_eq!(chat.model.as_deref(), Some("gpt-4o"));
        assert_eq!(chat.messages.len(), 7);
        assert_eq!(chat.messages[2].content, "a\nb");
        assert_eq!(chat.messages[3].content, "[called f({})]");
        assert_eq!(chat.messages[4].role, Role::Tool);
    }

    #[test]
    fn n_greater_than_one_is_refused() {
        let (status, param, _) = err_param(
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!((status, param), (400, Some("n")));
    }

    #[test]
    fn images_are_refused_clearly() {
        let (_, param, msg) = err_param(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]}));
        assert_eq!(param, Some("messages"));
        assert!(
            msg.contains("image_url") && msg.contains("text only"),
            "{msg}"
        );
    }

    #[test]
    fn bad_role_and_empty_messages_are_refused() {
        assert_eq!(
            err_param(json!({"messages": [{"role": "robot", "content": "x"}]})).1,
            Some("messages")
        );
        assert_eq!(err_param(json!({"messages": []})).1, Some("messages"));
        assert_eq!(
            err_param(json!({"messages": [{"role": "system", "content": "x"}]})).1,
            Some("messages")
        );
    }

    #[test]
    fn forced_tool_calls_are_refused() {
        let m = json!([{"role": "user", "content": "x"}]);
        assert_eq!(
            err_param(json!({"messages": m, "tool_choice": "required"})).1,
            Some("tool_choice")
        );
        assert_eq!(
            err_param(json!({"messages": m, "tool_choice": {"type": "function", "function": {"name": "f"}}})).1,
            Some("tool_choice")
        );
        assert!(parse(json!({"messages": m, "tool_choice": "none"})).is_ok());
    }

    #[test]
    fn malformed_json_and_wrong_types_are_400() {
        assert!(matches!(
            parse_chat_request(b"{not json"),
            Err(GatewayError::InvalidRequest { .. })
        ));
        assert!(matches!(
            parse_chat_request(b"[]"),
            Err(GatewayError::InvalidRequest { .. })
        ));
        let (_, param, _) = err_param(json!({"messages": "hello"}));
        assert_eq!(param, Some("messages"));
    }

    #[test]
    fn null_content_and_blank_model_are_fine() {
        let chat = parse(json!({"model": "  ", "messages": [{"role": "user", "content": null}, {"role": "user", "content": "x"}]}))
            .expect("accepted");
        assert_eq!(chat.model, None);
        assert_eq!(chat.messages[0].content, "");
        assert!(!chat.stream);
    }
}
