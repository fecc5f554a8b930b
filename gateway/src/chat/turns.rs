//! The conversation every surface decodes into, before it is flattened to the text turns
//! Lingma sees: plain messages, assistant turns with tool calls, and tool results. The
//! tool contract's instructions and the rendering of calls and results happen here, once,
//! so the three surfaces agree on what Lingma reads (and on the session keys it yields).

use mux_protocol::{ChatMessage, Role};
use tool_calls::{ToolCall, ToolContract, render_assistant_turn, render_tool_result};

/// One turn of a decoded request (serialized only into the response store).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Turn {
    /// System, developer or user text (and assistant text without calls).
    Message(ChatMessage),
    /// An earlier assistant answer that called tools.
    AssistantCalls { text: String, calls: Vec<ToolCall> },
    /// The result of an earlier call. `name` is looked up from the call when the surface
    /// does not send it (OpenAI `tool` messages carry only the id).
    ToolResult {
        call_id: String,
        name: Option<String>,
        content: String,
    },
}

impl Turn {
    pub fn message(role: Role, content: impl Into<String>) -> Self {
        Self::Message(ChatMessage {
            role,
            content: content.into(),
        })
    }
}

/// A surface's request in the core's terms.
#[derive(Debug)]
pub struct ChatInput {
    /// The model name as the client sent it (echoed back).
    pub model: Option<String>,
    pub turns: Vec<Turn>,
    /// The client's end-user id (OpenAI `user`, Anthropic `metadata.user_id`): affinity.
    pub user: Option<String>,
    pub stream: bool,
    /// `None` when the request has no tools.
    pub tools: Option<ToolContract>,
}

/// The text turns Lingma sees. With an active contract its instructions go in as a system
/// message right after the client's leading instructions (so the affinity key, which reads
/// the first system message, stays the client's own).
pub fn render(turns: &[Turn], contract: Option<&ToolContract>) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(turns.len() + 1);
    for turn in turns {
        out.push(match turn {
            Turn::Message(m) => m.clone(),
            Turn::AssistantCalls { text, calls } => ChatMessage {
                role: Role::Assistant,
                content: render_assistant_turn(Some(text), calls),
            },
            Turn::ToolResult {
                call_id,
                name,
                content,
            } => ChatMessage {
                role: Role::Tool,
                content: render_tool_result(
                    call_id,
                    name.as_deref().or_else(|| call_name(turns, call_id)),
                    content,
                ),
            },
        });
    }
    if let Some(contract) = contract.filter(|c| c.is_active()) {
        let at = out
            .iter()
            .position(|m| !matches!(m.role, Role::System | Role::Developer))
            .unwrap_or(out.len());
        out.insert(
            at,
            ChatMessage {
                role: Role::System,
                content: contract.render_instructions(),
            },
        );
    }
    out
}

/// The sidecar's estimate of the prompt tokens of these messages (the same number its
/// `usage.prompt_tokens` will report for a fresh session).
pub fn estimate_prompt_tokens(messages: &[ChatMessage]) -> u32 {
    mux_protocol::estimate_tokens(messages.iter().map(|m| m.content.chars().count()).sum())
}

fn call_name<'a>(turns: &'a [Turn], call_id: &str) -> Option<&'a str> {
    turns.iter().rev().find_map(|t| match t {
        Turn::AssistantCalls { calls, .. } => calls
            .iter()
            .find(|c| c.id == call_id)
            .map(|c| c.name.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tool_calls::{ToolChoice, ToolSpec};

    fn contract() -> ToolContract {
        ToolContract::new(
            vec![ToolSpec {
                name: "read_file".into(),
                description: Some("Read a file".into()),
                parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            }],
            ToolChoice::Auto,
            true,
        )
        .expect("valid contract")
    }

    #[test]
    fn instructions_follow_the_clients_own_system_prompt() {
        let c = contract();
        let turns = vec![
            Turn::message(Role::System, "you are helpful"),
            Turn::message(Role::User, "read a.txt"),
        ];
        let out = render(&turns, Some(&c));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].content, "you are helpful");
        assert_eq!(out[1].role, Role::System);
        assert_eq!(out[1].content, c.render_instructions());
        assert_eq!(out[2].role, Role::User);
    }

    #[test]
    fn tool_results_find_the_name_of_their_call() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "read_file".into(),
            arguments: r#"{"path":"a.txt"}"#.into(),
        };
        let turns = vec![
            Turn::message(Role::User, "read a.txt"),
            Turn::AssistantCalls {
                text: String::new(),
                calls: vec![call.clone()],
            },
            Turn::ToolResult {
                call_id: "call_1".into(),
                name: None,
                content: "hello".into(),
            },
        ];
        let out = render(&turns, None);
        assert_eq!(out.len(), 3, "no instructions without a contract");
        assert_eq!(out[1].role, Role::Assistant);
        assert_eq!(out[1].content, render_assistant_turn(None, &[call]));
        assert_eq!(out[2].role, Role::Tool);
        assert_eq!(
            out[2].content,
            render_tool_result("call_1", Some("read_file"), "hello")
        );
    }
}
