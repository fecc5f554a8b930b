//! From the OpenAI request to what Lingma can do: flatten content to text, turn tools,
//! tool calls and tool results into the core's [`Turn`]s and tool contract, refuse what
//! cannot be honoured (n > 1, images, logprobs, audio), ignore the rest.

use mux_protocol::Role;
use serde_json::Value;
use tool_calls::{ToolCall, ToolChoice, ToolContract, ToolSpec};

use super::request::{ChatCompletionRequest, FunctionDefinition, MessageContent, RequestMessage};
use crate::chat::tools::build_contract;
use crate::chat::turns::{ChatInput, Turn};
use crate::errors::GatewayError;
use crate::models::accepted_model_name;
use crate::quote::{quoted, shorten_quoted_runs};

/// A request the gateway will serve.
#[derive(Debug)]
pub struct ValidatedChat {
    /// The model name as the client sent it (echoed in responses).
    pub model: Option<String>,
    pub turns: Vec<Turn>,
    pub tools: Option<ToolContract>,
    pub stream: bool,
    pub include_usage: bool,
    pub user: Option<String>,
}

impl ValidatedChat {
    pub fn into_input(self) -> (ChatInput, bool) {
        let include_usage = self.include_usage;
        (
            ChatInput {
                model: self.model,
                turns: self.turns,
                user: self.user,
                stream: self.stream,
                tools: self.tools,
            },
            include_usage,
        )
    }
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
            format!(
                "We could not parse the JSON body of your request: {}",
                shorten_quoted_runs(&e.to_string())
            ),
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
    let tools = contract(&req)?;
    let _ignored = &req.response_format;

    if req.messages.is_empty() {
        return Err(GatewayError::invalid(
            "'messages' must contain at least one message.",
            Some("messages"),
        ));
    }
    let turns = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| to_turn(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    if !turns
        .iter()
        .any(|t| matches!(t, Turn::Message(m) if m.role == Role::User))
    {
        return Err(GatewayError::invalid(
            "'messages' must contain at least one message with role 'user'.",
            Some("messages"),
        ));
    }
    let model = accepted_model_name(req.model.as_deref())?;
    let user = req.user.filter(|u| !u.is_empty());
    Ok(ValidatedChat {
        model,
        turns,
        tools,
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        user,
    })
}

/// The tool contract of `tools` + `tool_choice` (or the legacy `functions` +
/// `function_call`); `None` without function tools.
fn contract(req: &ChatCompletionRequest) -> Result<Option<ToolContract>, GatewayError> {
    let (specs, choice, param): (Vec<ToolSpec>, _, _) = match (&req.tools, &req.functions) {
        (Some(tools), _) if !tools.is_empty() => (
            tools
                .iter()
                .filter(|t| t.kind.as_deref().unwrap_or("function") == "function")
                .filter_map(|t| t.function.as_ref())
                .map(spec)
                .collect(),
            req.tool_choice.as_ref(),
            "tool_choice",
        ),
        (_, Some(functions)) if !functions.is_empty() => (
            functions.iter().map(spec).collect(),
            req.function_call.as_ref(),
            "function_call",
        ),
        _ => return Ok(None),
    };
    if specs.is_empty() {
        return Ok(None);
    }
    let choice = tool_choice(choice, param)?;
    build_contract(
        specs,
        choice,
        req.parallel_tool_calls.unwrap_or(true),
        param,
    )
    .map(Some)
}

fn spec(f: &FunctionDefinition) -> ToolSpec {
    ToolSpec {
        name: f.name.clone(),
        description: f.description.clone(),
        parameters: f
            .parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
    }
}

/// `"auto"`, `"none"`, `"required"`, `{"type":"function","function":{"name"}}`, the legacy
/// `{"name"}`, or `{"type":"allowed_tools",...}` (served as auto).
fn tool_choice(choice: Option<&Value>, param: &'static str) -> Result<ToolChoice, GatewayError> {
    let bad = || {
        GatewayError::invalid(
            format!(
                "Invalid value for '{param}': expected \"none\", \"auto\", \"required\" or a named function."
            ),
            Some(param),
        )
    };
    Ok(match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str);
            match (o.get("type").and_then(Value::as_str), name) {
                (Some("allowed_tools"), _) => ToolChoice::Auto,
                (_, Some(name)) => ToolChoice::Named(name.to_owned()),
                _ => return Err(bad()),
            }
        }
        Some(_) => return Err(bad()),
    })
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
                    quoted(other)
                ),
                Some("messages"),
            ));
        }
    })
}

fn to_turn(index: usize, m: RequestMessage) -> Result<Turn, GatewayError> {
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
                                quoted(&part.kind)
                            ),
                            Some("messages"),
                        ));
                    }
                    other => {
                        return Err(GatewayError::invalid(
                            format!(
                                "messages[{index}]: unknown content part type '{}'.",
                                quoted(other)
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
    match role {
        Role::Assistant => {
            if text.is_empty()
                && let Some(refusal) = m.refusal
            {
                text = refusal;
            }
            let calls: Vec<ToolCall> = m
                .tool_calls
                .into_iter()
                .flatten()
                .filter_map(|c| c.function.map(|f| (c.id, f)))
                .chain(m.function_call.map(|f| (None, f)))
                .map(|(id, f)| ToolCall {
                    id: id.unwrap_or_else(|| f.name.clone()),
                    name: f.name,
                    arguments: f.arguments,
                })
                .collect();
            if calls.is_empty() {
                Ok(Turn::message(role, text))
            } else {
                Ok(Turn::AssistantCalls { text, calls })
            }
        }
        Role::Tool => Ok(Turn::ToolResult {
            call_id: m.tool_call_id.unwrap_or_default(),
            name: m.name,
            content: text,
        }),
        // Legacy function results name the function; its call id was the name too.
        Role::Function => Ok(Turn::ToolResult {
            call_id: m.name.clone().unwrap_or_default(),
            name: m.name,
            content: text,
        }),
        _ => Ok(Turn::message(role, text)),
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
        assert_eq!(chat.turns.len(), 7);
        assert!(matches!(&chat.turns[2], Turn::Message(m) if m.content == "a\nb"));
        match &chat.turns[3] {
            Turn::AssistantCalls { text, calls } => {
                assert_eq!(text, "");
                assert_eq!(
                    calls,
                    &vec![ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: "{}".into()
                    }]
                );
            }
            other => panic!("expected tool calls, got {other:?}"),
        }
        assert!(
            matches!(&chat.turns[4], Turn::ToolResult { call_id, content, .. } if call_id == "c1" && content == "42")
        );
        assert!(matches!(&chat.turns[5], Turn::ToolResult { name: Some(n), .. } if n == "f"));
        assert!(chat.tools.is_some(), "function tools make a contract");
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
    fn forced_tool_calls_are_served_and_unknown_names_refused() {
        let m = json!([{"role": "user", "content": "x"}]);
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        let required = parse(json!({"messages": m, "tools": tools, "tool_choice": "required"}))
            .expect("required is served");
        assert!(required.tools.is_some_and(|c| c.is_active()));
        let named = parse(json!({"messages": m, "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "f"}}}))
        .expect("named is served");
        assert!(named.tools.is_some());
        assert_eq!(
            err_param(json!({"messages": m, "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "nope"}}}))
            .1,
            Some("tool_choice")
        );
        assert_eq!(
            err_param(json!({"messages": m, "tools": tools, "tool_choice": "sometimes"})).1,
            Some("tool_choice")
        );
        let none = parse(json!({"messages": m, "tools": tools, "tool_choice": "none"}))
            .expect("none is fine");
        assert!(none.tools.is_none_or(|c| !c.is_active()));
        assert!(
            parse(json!({"messages": m, "tool_choice": "required"}))
                .expect("no tools: nothing to force")
                .tools
                .is_none()
        );
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
        assert!(matches!(&chat.turns[0], Turn::Message(m) if m.content.is_empty()));
        assert!(!chat.stream);
    }
}
