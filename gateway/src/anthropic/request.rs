//! `POST /v1/messages` request body (Anthropic Messages API) and its decoding into the
//! core's [`ChatInput`]. What Lingma cannot do (`thinking` budgets, `context_management`,
//! cache control, server tools, `temperature`...) is accepted and ignored; images and
//! documents are refused clearly.

use mux_protocol::Role;
use serde::Deserialize;
use serde_json::Value;
use tool_calls::{ToolCall, ToolChoice, ToolContract, ToolSpec};

use crate::chat::tools::build_contract;
use crate::chat::turns::{ChatInput, Turn};
use crate::errors::GatewayError;
use crate::models::accepted_model_name;
use crate::quote::{quoted, shorten_quoted_runs};

#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub system: Option<Content>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoiceParam>,
    #[serde(default)]
    pub thinking: Option<Thinking>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    // Accepted and ignored: temperature, top_k, top_p, context_management, container,
    // mcp_servers, service_tier, betas, and anything newer.
}

#[derive(Debug, Deserialize)]
pub struct InputMessage {
    pub role: String,
    pub content: Content,
}

/// `content` (or `system`): a string or a list of blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// One content block. Fields of all kinds the gateway reads; the rest is ignored.
#[derive(Debug, Deserialize)]
pub struct Block {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub tool_use_id: Option<String>,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub is_error: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A client tool (`input_schema`), or a server tool (`type: "web_search_20250305"`, ...)
/// which has none and is ignored: Lingma cannot run it.
#[derive(Debug, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ToolChoiceParam {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: String,
}

/// A decoded request and what the answer's rendering needs to know.
#[derive(Debug)]
pub struct DecodedMessages {
    pub input: ChatInput,
    /// Whether Lingma's reasoning is sent back as `thinking` blocks.
    pub thinking: bool,
}

pub fn parse_messages_request(body: &[u8]) -> Result<DecodedMessages, GatewayError> {
    let req: MessagesRequest = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(
            format!(
                "Invalid request body: {}",
                shorten_quoted_runs(&e.to_string())
            ),
            None,
        )
    })?;
    decode(req)
}

pub fn decode(req: MessagesRequest) -> Result<DecodedMessages, GatewayError> {
    if req.max_tokens == Some(0) {
        return Err(GatewayError::invalid(
            "max_tokens: must be greater than or equal to 1",
            Some("max_tokens"),
        ));
    }
    let _accepted = &req.stop_sequences;
    let mut turns = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            turns.push(Turn::message(Role::System, text));
        }
    }
    for (i, message) in req.messages.into_iter().enumerate() {
        decode_message(i, message, &mut turns)?;
    }
    if !turns
        .iter()
        .any(|t| matches!(t, Turn::Message(m) if m.role == Role::User))
    {
        return Err(GatewayError::invalid(
            "messages: at least one user message with text is required",
            Some("messages"),
        ));
    }
    let tools = contract(req.tools.as_deref(), req.tool_choice.as_ref())?;
    let model = accepted_model_name(Some(&req.model))?;
    Ok(DecodedMessages {
        input: ChatInput {
            model,
            turns,
            user: req
                .metadata
                .and_then(|m| m.user_id)
                .filter(|u| !u.is_empty()),
            stream: req.stream.unwrap_or(false),
            tools,
        },
        thinking: req.thinking.is_some_and(|t| t.kind == "enabled"),
    })
}

fn decode_message(
    index: usize,
    message: InputMessage,
    turns: &mut Vec<Turn>,
) -> Result<(), GatewayError> {
    let role = match message.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        // Not in Anthropic's published schema, but Claude Code sends system-role entries in
        // `messages` (tried: 2.1.197 with `-p`); refusing them would break it. They are
        // system turns like the top-level `system`.
        "system" => Role::System,
        other => {
            return Err(GatewayError::invalid(
                format!(
                    "messages.{index}.role: Input should be 'user', 'assistant' or 'system' (got '{}')",
                    quoted(other)
                ),
                Some("messages"),
            ));
        }
    };
    let blocks = match message.content {
        Content::Text(t) => {
            turns.push(Turn::message(role, t));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.kind.as_str() {
            "text" => push_line(&mut text, block.text.as_deref().unwrap_or_default()),
            "tool_use" if role == Role::Assistant => calls.push(ToolCall {
                id: block.id.unwrap_or_default(),
                name: block.name.unwrap_or_default(),
                arguments: block
                    .input
                    .unwrap_or_else(|| Value::Object(Default::default()))
                    .to_string(),
            }),
            "tool_result" if role == Role::User => {
                if !text.is_empty() {
                    turns.push(Turn::message(Role::User, std::mem::take(&mut text)));
                }
                let mut content = match block.content {
                    Some(c) => text_of(c, "tool_result.content")?,
                    None => String::new(),
                };
                if block.is_error == Some(true) {
                    content.insert_str(0, "Error: ");
                }
                turns.push(Turn::ToolResult {
                    call_id: block.tool_use_id.unwrap_or_default(),
                    name: None,
                    content,
                });
            }
            "image" | "document" => {
                return Err(GatewayError::invalid(
                    format!(
                        "messages.{index}.content: '{}' blocks are not supported; this backend accepts text only.",
                        block.kind
                    ),
                    Some("messages"),
                ));
            }
            // thinking, redacted_thinking, server tool blocks, search results...: what the
            // model cannot use again is left out.
            _ => {}
        }
    }
    if !calls.is_empty() {
        turns.push(Turn::AssistantCalls { text, calls });
    } else if !text.is_empty() || role == Role::User && !ends_with_results(turns) {
        turns.push(Turn::message(role, text));
    }
    Ok(())
}

fn ends_with_results(turns: &[Turn]) -> bool {
    matches!(turns.last(), Some(Turn::ToolResult { .. }))
}

fn push_line(out: &mut String, piece: &str) {
    if !out.is_empty() && !piece.is_empty() {
        out.push('\n');
    }
    out.push_str(piece);
}

/// The text of a string or a list of text blocks (`system`, tool result content).
fn text_of(content: Content, field: &str) -> Result<String, GatewayError> {
    match content {
        Content::Text(t) => Ok(t),
        Content::Blocks(blocks) => {
            let mut out = String::new();
            for b in blocks {
                match b.kind.as_str() {
                    "text" => push_line(&mut out, b.text.as_deref().unwrap_or_default()),
                    "image" | "document" => {
                        return Err(GatewayError::invalid(
                            format!(
                                "{field}: '{}' blocks are not supported; this backend accepts text only.",
                                b.kind
                            ),
                            Some("messages"),
                        ));
                    }
                    _ => {}
                }
            }
            Ok(out)
        }
    }
}

fn contract(
    tools: Option<&[Tool]>,
    choice: Option<&ToolChoiceParam>,
) -> Result<Option<ToolContract>, GatewayError> {
    let specs: Vec<ToolSpec> = tools
        .unwrap_or_default()
        .iter()
        .filter(|t| t.kind.as_deref().is_none_or(|k| k == "custom") && t.input_schema.is_some())
        .map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.input_schema.clone().unwrap_or_default(),
        })
        .collect();
    if specs.is_empty() {
        return Ok(None);
    }
    let parallel = choice.is_none_or(|c| c.disable_parallel_tool_use != Some(true));
    let choice = match choice.map(|c| (c.kind.as_str(), c.name.as_deref())) {
        None | Some(("auto", _)) => ToolChoice::Auto,
        Some(("any", _)) => ToolChoice::Required,
        Some(("none", _)) => ToolChoice::None,
        Some(("tool", Some(name))) => ToolChoice::Named(name.to_owned()),
        Some(_) => {
            return Err(GatewayError::invalid(
                "tool_choice: expected {\"type\": \"auto\" | \"any\" | \"none\"} or {\"type\": \"tool\", \"name\": ...}",
                Some("tool_choice"),
            ));
        }
    };
    build_contract(specs, choice, parallel, "tool_choice").map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode_json(v: Value) -> Result<DecodedMessages, GatewayError> {
        parse_messages_request(v.to_string().as_bytes())
    }

    #[test]
    fn claude_code_shaped_request_is_accepted() {
        let d = decode_json(json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 32000,
            "stream": true,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "metadata": {"user_id": "user_abc"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "context_management": {"edits": []},
            "temperature": 1,
            "tools": [
                {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
            ],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "read a.txt"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.txt"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "hello"}]},
                    {"type": "text", "text": "now summarise"}
                ]}
            ]
        }))
        .expect("accepted");
        assert!(d.thinking);
        assert!(d.input.stream);
        assert_eq!(d.input.user.as_deref(), Some("user_abc"));
        assert_eq!(d.input.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        let contract = d.input.tools.expect("one client tool makes a contract");
        assert_eq!(contract.tools().len(), 1, "server tools are ignored");
        let t = &d.input.turns;
        assert_eq!(t.len(), 5);
        assert!(
            matches!(&t[0], Turn::Message(m) if m.role == Role::System && m.content == "You are Claude Code.")
        );
        match &t[2] {
            Turn::AssistantCalls { text, calls } => {
                assert_eq!(text, "Reading.");
                assert_eq!(calls[0].id, "toolu_1");
                assert_eq!(calls[0].arguments, r#"{"path":"a.txt"}"#);
            }
            other => panic!("expected calls, got {other:?}"),
        }
        assert!(
            matches!(&t[3], Turn::ToolResult { call_id, content, .. } if call_id == "toolu_1" && content == "hello")
        );
        assert!(
            matches!(&t[4], Turn::Message(m) if m.role == Role::User && m.content == "now summarise")
        );
    }

    #[test]
    fn tool_choice_maps_to_the_contract() {
        let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
        let base = |choice: Value| {
            decode_json(
                json!({"model": "m", "max_tokens": 5, "tools": tools, "tool_choice": choice,
                "messages": [{"role": "user", "content": "x"}]}),
            )
        };
        let any = base(json!({"type": "any"})).expect("any");
        assert!(any.input.tools.is_some_and(|c| c.requires_call()));
        let named = base(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}))
            .expect("tool");
        let c = named.input.tools.expect("contract");
        assert_eq!(c.choice(), &ToolChoice::Named("f".into()));
        assert!(!c.parallel());
        assert!(base(json!({"type": "tool", "name": "g"})).is_err());
        assert!(base(json!({"type": "sometimes"})).is_err());
    }

    #[test]
    fn system_entries_in_messages_are_system_turns() {
        // What Claude Code sends: a system-role entry between the user's turns.
        let t = decode_json(json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hello"},
            {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": "again"}
        ]}))
        .expect("accepted")
        .input
        .turns;
        assert!(
            t.iter().any(|t| matches!(t, Turn::Message(m) if m.role == Role::System && m.content == "be brief")),
            "{t:?}"
        );
    }

    #[test]
    fn images_and_bad_roles_are_refused() {
        let img = decode_json(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]}]}),
        );
        assert!(
            matches!(img, Err(GatewayError::InvalidRequest { message, .. }) if message.contains("'image'"))
        );
        assert!(decode_json(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]})).is_err());
        // A system entry alone is no conversation: a user turn is still required.
        assert!(decode_json(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})).is_err());
        assert!(decode_json(json!({"model": "m", "max_tokens": 5, "messages": []})).is_err());
        assert!(
            decode_json(json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
                .is_err()
        );
    }
}
