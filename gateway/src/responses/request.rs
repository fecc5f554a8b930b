//! `POST /v1/responses` request body (OpenAI Responses API) and its decoding into turns.
//! Function tools are emulated; hosted tools (`web_search`, `file_search`, ...), `reasoning`,
//! `include`, `store`, `prompt_cache_key`, `text`, `truncation`, sampling knobs are accepted
//! and ignored. Images and files are refused clearly.

use mux_protocol::Role;
use serde::Deserialize;
use serde_json::Value;
use tool_calls::{ToolCall, ToolChoice, ToolContract, ToolSpec};

use crate::chat::tools::build_contract;
use crate::chat::turns::Turn;
use crate::errors::GatewayError;
use crate::models::accepted_model_name;
use crate::quote::shorten_quoted_runs;

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub input: Option<Input>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// A request the gateway will serve; the new input as turns, joined to a stored
/// conversation by the handler when `previous_response_id` is set.
#[derive(Debug)]
pub struct DecodedResponses {
    pub model: Option<String>,
    pub instructions: Option<String>,
    pub input: Vec<Turn>,
    pub previous_response_id: Option<String>,
    pub stream: bool,
    pub store: bool,
    pub user: Option<String>,
    pub tools: Option<ToolContract>,
    /// Echoed in the `response` object.
    pub echo_tools: Vec<Value>,
    pub echo_tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub metadata: Value,
}

pub fn parse_responses_request(body: &[u8]) -> Result<DecodedResponses, GatewayError> {
    let req: ResponsesRequest = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(
            format!(
                "We could not parse the JSON body of your request: {}",
                shorten_quoted_runs(&e.to_string())
            ),
            None,
        )
    })?;
    decode(req)
}

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::invalid(message, Some(param))
}

pub fn decode(req: ResponsesRequest) -> Result<DecodedResponses, GatewayError> {
    let mut input = Vec::new();
    match req.input {
        None => {}
        Some(Input::Text(t)) => input.push(Turn::message(Role::User, t)),
        Some(Input::Items(items)) => {
            for (i, item) in items.iter().enumerate() {
                decode_item(i, item, &mut input)?;
            }
        }
    }
    if input.is_empty() {
        return Err(invalid("'input' must not be empty.", "input"));
    }
    let tools = req.tools.unwrap_or_default();
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    let contract = contract(&tools, req.tool_choice.as_ref(), parallel)?;
    Ok(DecodedResponses {
        model: accepted_model_name(req.model.as_deref())?,
        instructions: req.instructions.filter(|i| !i.trim().is_empty()),
        input,
        previous_response_id: req.previous_response_id.filter(|p| !p.is_empty()),
        stream: req.stream.unwrap_or(false),
        store: req.store.unwrap_or(true),
        user: req.user.filter(|u| !u.is_empty()),
        tools: contract,
        echo_tools: tools,
        echo_tool_choice: req
            .tool_choice
            .unwrap_or_else(|| Value::String("auto".into())),
        parallel_tool_calls: parallel,
        metadata: req
            .metadata
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Default::default())),
    })
}

fn str_field<'a>(item: &'a Value, field: &str) -> Option<&'a str> {
    item.get(field).and_then(Value::as_str)
}

fn decode_item(index: usize, item: &Value, turns: &mut Vec<Turn>) -> Result<(), GatewayError> {
    // A message may omit `type` (EasyInputMessage).
    let kind = str_field(item, "type").unwrap_or("message");
    match kind {
        "message" => {
            let role = match str_field(item, "role") {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system") => Role::System,
                Some("developer") => Role::Developer,
                _ => {
                    return Err(invalid(
                        format!(
                            "input[{index}].role must be one of user, assistant, system, developer."
                        ),
                        "input",
                    ));
                }
            };
            let text = content_text(index, item.get("content"))?;
            turns.push(Turn::message(role, text));
        }
        "function_call" => {
            let call = ToolCall {
                id: str_field(item, "call_id").unwrap_or_default().to_owned(),
                name: str_field(item, "name").unwrap_or_default().to_owned(),
                arguments: str_field(item, "arguments").unwrap_or("{}").to_owned(),
            };
            match turns.last_mut() {
                Some(Turn::AssistantCalls { calls, .. }) => calls.push(call),
                Some(Turn::Message(m)) if m.role == Role::Assistant => {
                    let text = std::mem::take(&mut m.content);
                    turns.pop();
                    turns.push(Turn::AssistantCalls {
                        text,
                        calls: vec![call],
                    });
                }
                _ => turns.push(Turn::AssistantCalls {
                    text: String::new(),
                    calls: vec![call],
                }),
            }
        }
        "function_call_output" => {
            let content = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                other => content_text(index, other)?,
            };
            turns.push(Turn::ToolResult {
                call_id: str_field(item, "call_id").unwrap_or_default().to_owned(),
                name: None,
                content,
            });
        }
        "input_image" | "input_file" => {
            return Err(invalid(
                format!(
                    "input[{index}]: items of type '{kind}' are not supported; this backend accepts text only."
                ),
                "input",
            ));
        }
        // reasoning, item_reference, hosted tool calls and their outputs: nothing Lingma
        // can use again.
        _ => {}
    }
    Ok(())
}

/// The text of a message's `content`: a string or a list of parts.
fn content_text(index: usize, content: Option<&Value>) -> Result<String, GatewayError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(invalid(
                format!("input[{index}].content must be a string or a list of parts."),
                "input",
            ));
        }
    };
    let mut out = String::new();
    for part in parts {
        let kind = str_field(part, "type").unwrap_or_default();
        let piece = match kind {
            "input_text" | "output_text" | "text" => str_field(part, "text").unwrap_or_default(),
            "refusal" => str_field(part, "refusal").unwrap_or_default(),
            "input_image" | "input_file" | "input_audio" => {
                return Err(invalid(
                    format!(
                        "input[{index}]: content parts of type '{kind}' are not supported; this backend accepts text only."
                    ),
                    "input",
                ));
            }
            _ => "",
        };
        if !out.is_empty() && !piece.is_empty() {
            out.push('\n');
        }
        out.push_str(piece);
    }
    Ok(out)
}

/// Function tools make the contract; hosted tools are ignored.
fn contract(
    tools: &[Value],
    choice: Option<&Value>,
    parallel: bool,
) -> Result<Option<ToolContract>, GatewayError> {
    let specs: Vec<ToolSpec> = tools
        .iter()
        .filter(|t| str_field(t, "type") == Some("function"))
        .map(|t| ToolSpec {
            name: str_field(t, "name").unwrap_or_default().to_owned(),
            description: str_field(t, "description").map(str::to_owned),
            parameters: t
                .get("parameters")
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        })
        .collect();
    if specs.is_empty() {
        return Ok(None);
    }
    let choice = match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(invalid(
                    "tool_choice must be \"none\", \"auto\", \"required\" or a function.",
                    "tool_choice",
                ));
            }
        },
        Some(Value::Object(o)) => match (
            o.get("type").and_then(Value::as_str),
            o.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => ToolChoice::Named(name.to_owned()),
            // allowed_tools and hosted tool choices: the model chooses.
            _ => ToolChoice::Auto,
        },
        Some(_) => {
            return Err(invalid(
                "tool_choice must be a string or an object.",
                "tool_choice",
            ));
        }
    };
    build_contract(specs, choice, parallel, "tool_choice").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<DecodedResponses, GatewayError> {
        parse_responses_request(v.to_string().as_bytes())
    }

    #[test]
    fn codex_shaped_request_is_accepted() {
        let d = parse(json!({
            "model": "gpt-5-codex",
            "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "env"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xx"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Listing."}]},
                {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
            ],
            "tools": [
                {"type": "function", "name": "shell", "description": "run", "strict": false,
                 "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}}},
                {"type": "web_search"}
            ],
            "tool_choice": "auto", "parallel_tool_calls": false, "store": false, "stream": true,
            "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "abc"
        }))
        .expect("accepted");
        assert!(d.stream && !d.store && !d.parallel_tool_calls);
        assert_eq!(d.instructions.as_deref(), Some("You are Codex."));
        assert_eq!(d.input.len(), 4);
        match &d.input[2] {
            Turn::AssistantCalls { text, calls } => {
                assert_eq!(text, "Listing.");
                assert_eq!(calls[0].id, "call_1");
                assert_eq!(calls[0].name, "shell");
            }
            other => panic!("expected calls, got {other:?}"),
        }
        assert!(
            matches!(&d.input[3], Turn::ToolResult { call_id, content, .. } if call_id == "call_1" && content == "a.txt")
        );
        let c = d.tools.expect("function tool makes a contract");
        assert_eq!(c.tools().len(), 1);
        assert_eq!(
            d.echo_tools.len(),
            2,
            "hosted tools are echoed, not emulated"
        );
    }

    #[test]
    fn string_input_and_refusals() {
        let d = parse(json!({"model": "m", "input": "hi"})).expect("string input");
        assert!(
            matches!(&d.input[0], Turn::Message(m) if m.role == Role::User && m.content == "hi")
        );
        assert!(d.store);
        assert!(parse(json!({"model": "m", "input": []})).is_err());
        assert!(parse(json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})).is_err());
        assert!(
            parse(json!({"model": "m", "input": [{"role": "robot", "content": "x"}]})).is_err()
        );
        let tools = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}]);
        let named = parse(
            json!({"input": "x", "tools": tools, "tool_choice": {"type": "function", "name": "f"}}),
        )
        .expect("named");
        assert!(named.tools.is_some_and(|c| c.requires_call()));
        assert!(parse(json!({"input": "x", "tools": tools, "tool_choice": {"type": "function", "name": "g"}})).is_err());
    }
}
