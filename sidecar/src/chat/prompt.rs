//! What one chat sends to Lingma: the session plan (continue a stored session or start a
//! fresh one), the question text and the `chat/ask` params.
//!
//! `chat/ask` has no field for a system prompt or earlier turns, so a fresh session gets the
//! whole conversation flattened into `questionText` (as prior art does,
//! lingma-protocol.md section 6); a continued session gets only the new turn
//! ([`mux_protocol::new_turn_start`]): the new user message, or in an agent loop the tool
//! results (and any user text) since the model's last answer.

use crate::config::AskMode;
use lingma_protocol::wire::{AskExtra, ChatAskParams, ModelConfig, PluginPayloadConfig};
use mux_protocol::{ChatMessage, Role};

/// The text of a fresh session's first ask: the message itself when the conversation is
/// a single user message, else instructions, transcript and the latest user message.
/// `None` when there is no user message.
pub fn flatten(messages: &[ChatMessage]) -> Option<String> {
    let last_user = messages.iter().rposition(|m| m.role == Role::User)?;
    let is_instruction = |m: &&ChatMessage| matches!(m.role, Role::System | Role::Developer);
    let instructions: Vec<&str> = messages
        .iter()
        .filter(is_instruction)
        .map(|m| m.content.trim())
        .filter(|c| !c.is_empty())
        .collect();
    let transcript: Vec<String> = messages[..last_user]
        .iter()
        .filter(|m| !is_instruction(m))
        .filter_map(transcript_line)
        .collect();
    let trailing: Vec<String> = messages[last_user + 1..]
        .iter()
        .filter(|m| !is_instruction(m))
        .filter_map(transcript_line)
        .collect();
    let latest = messages[last_user].content.trim();
    if instructions.is_empty() && transcript.is_empty() && trailing.is_empty() {
        return Some(messages[last_user].content.clone());
    }
    let mut text = String::new();
    if !instructions.is_empty() {
        text.push_str("System instructions:\n");
        text.push_str(&instructions.join("\n\n"));
        text.push_str("\n\n");
    }
    if !transcript.is_empty() {
        text.push_str("Conversation transcript:\n");
        text.push_str(&transcript.join("\n"));
        text.push_str("\n\n");
    }
    text.push_str("Latest user message:\n");
    text.push_str(latest);
    if !trailing.is_empty() {
        text.push('\n');
        text.push_str(&trailing.join("\n"));
    }
    text.push_str("\n\nAnswer the latest user message only, following the instructions above.");
    Some(text)
}

fn transcript_line(m: &ChatMessage) -> Option<String> {
    let content = m.content.trim();
    if content.is_empty() {
        return None;
    }
    let who = match m.role {
        Role::User => "User",
        Role::Assistant => "Assistant",
        // Lingma has no tool role: tool results travel as user-side text.
        Role::Tool | Role::Function => "User (tool result)",
        Role::System | Role::Developer => "System",
    };
    // A multi-line turn (a tool result or call as the gateway renders it) starts on its
    // own line, so its markers stay at line starts.
    let sep = if content.contains('\n') { "\n" } else { " " };
    Some(format!("{who}:{sep}{content}"))
}

/// Whether a stored session may continue this conversation: only when the request ends
/// with its new turn, a user message or a tool result (an assistant prefill or a trailing
/// instruction could not be sent with isReply).
pub fn may_continue(messages: &[ChatMessage]) -> bool {
    messages.last().is_some_and(|m| m.role.is_turn_input())
}

/// What a continued session is asked: the new turn alone. A single user message is sent
/// as is (as before tool turns existed); several pieces (tool results, user text, a new
/// instruction) are joined in order, each already self-describing (the gateway renders
/// tool results with their call id and tool name).
pub fn new_turn_text(messages: &[ChatMessage]) -> Option<String> {
    let start = mux_protocol::new_turn_start(messages)?;
    let turn = &messages[start..];
    if let [only] = turn {
        return Some(only.content.clone());
    }
    let pieces: Vec<String> = turn
        .iter()
        .filter(|m| m.role != Role::Assistant)
        .filter(|m| !m.content.trim().is_empty())
        .map(|m| match m.role {
            Role::System | Role::Developer => {
                format!("System instructions:\n{}", m.content.trim())
            }
            _ => m.content.trim().to_owned(),
        })
        .collect();
    Some(pieces.join("\n\n"))
}

/// `sessionType` and `mode` for the ask mode. `agent` -> `assistant`/`agent` is an
/// assumption (lingma-protocol.md A1); `chat` is what live tests used.
fn session_type_and_mode(mode: AskMode) -> (&'static str, &'static str) {
    match mode {
        AskMode::Chat => ("chat", "chat"),
        AskMode::Agent => ("assistant", "agent"),
    }
}

pub struct AskSpec<'a> {
    pub request_id: String,
    pub session_id: &'a str,
    pub question_text: String,
    pub is_reply: bool,
    pub model_key: &'a str,
    pub ask_mode: AskMode,
}

pub fn ask_params(spec: AskSpec<'_>) -> ChatAskParams {
    let (session_type, mode) = session_type_and_mode(spec.ask_mode);
    ChatAskParams {
        request_id: spec.request_id,
        session_id: spec.session_id.to_owned(),
        question_text: spec.question_text,
        chat_context: serde_json::Value::Null,
        chat_task: "FREE_INPUT".to_owned(),
        is_reply: spec.is_reply,
        source: 1,
        stream: true,
        task_definition_type: String::new(),
        code_language: String::new(),
        extra: AskExtra {
            model_config: ModelConfig {
                key: spec.model_key.to_owned(),
            },
            context: Vec::new(),
        },
        session_type: session_type.to_owned(),
        target_agent: String::new(),
        plugin_payload_config: PluginPayloadConfig::default(),
        mode: mode.to_owned(),
        shell_type: String::new(),
        custom_model: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, c: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: c.into(),
        }
    }

    #[test]
    fn single_user_message_is_sent_as_is() {
        assert_eq!(flatten(&[m(Role::User, "  hi ")]).as_deref(), Some("  hi "));
        assert_eq!(flatten(&[m(Role::Assistant, "x")]), None);
    }

    #[test]
    fn conversation_is_flattened_in_order() {
        let text = flatten(&[
            m(Role::System, "be brief"),
            m(Role::User, "hello"),
            m(Role::Assistant, "hi there"),
            m(Role::Tool, "{\"temp\":3}"),
            m(Role::Developer, "use metric"),
            m(Role::User, "and then?"),
        ])
        .expect("has a user message");
        let sys = text.find("be brief\n\nuse metric").expect("instructions");
        let user = text.find("User: hello").expect("transcript user");
        let asst = text
            .find("Assistant: hi there")
            .expect("transcript assistant");
        let tool = text
            .find("User (tool result): {\"temp\":3}")
            .expect("tool as user text");
        let latest = text
            .find("Latest user message:\nand then?")
            .expect("latest");
        assert!(
            sys < user && user < asst && asst < tool && tool < latest,
            "{text}"
        );
    }

    #[test]
    fn rendered_tool_turns_keep_their_markers_at_line_starts() {
        let result = "<tool_result call_id=\"c1\" name=\"f\">\n42\n</tool_result>";
        let text = flatten(&[
            m(Role::User, "go"),
            m(Role::Assistant, "<tool_call>\n{}\n</tool_call>"),
            m(Role::Tool, result),
            m(Role::User, "next"),
        ])
        .expect("has a user message");
        assert!(
            text.contains(&format!("User (tool result):\n{result}")),
            "{text}"
        );
        assert!(text.contains("Assistant:\n<tool_call>"), "{text}");
    }

    #[test]
    fn continuation_only_when_the_request_ends_with_its_new_turn() {
        assert!(may_continue(&[m(Role::User, "a")]));
        // An agent loop's follow-up turn is a tool result: it continues the session.
        assert!(may_continue(&[
            m(Role::User, "a"),
            m(Role::Assistant, "call"),
            m(Role::Tool, "r")
        ]));
        assert!(!may_continue(&[
            m(Role::User, "a"),
            m(Role::Assistant, "b")
        ]));
        assert!(!may_continue(&[
            m(Role::User, "a"),
            m(Role::System, "late")
        ]));
    }

    #[test]
    fn a_continued_session_gets_only_the_new_turn() {
        let chat = [
            m(Role::User, "hello"),
            m(Role::Assistant, "hi"),
            m(Role::User, " next "),
        ];
        assert_eq!(new_turn_text(&chat).as_deref(), Some(" next "));
        let agent = [
            m(Role::System, "tools"),
            m(Role::User, "fix it"),
            m(Role::Assistant, "<call a><call b>"),
            m(Role::Tool, "result a"),
            m(Role::Tool, "result b"),
            m(Role::User, "hurry"),
        ];
        assert_eq!(
            new_turn_text(&agent).as_deref(),
            Some("result a\n\nresult b\n\nhurry")
        );
    }

    #[test]
    fn ask_params_carry_the_fixed_fields() {
        let p = ask_params(AskSpec {
            request_id: "r".into(),
            session_id: "s",
            question_text: "q".into(),
            is_reply: true,
            model_key: "dashscope_qwen3_coder",
            ask_mode: AskMode::Chat,
        });
        let v = serde_json::to_value(&p).expect("serialize");
        assert_eq!(v["chatTask"], "FREE_INPUT");
        assert_eq!(v["source"], 1);
        assert_eq!(v["stream"], true);
        assert_eq!(v["isReply"], true);
        assert_eq!(v["sessionType"], "chat");
        assert_eq!(v["mode"], "chat");
        assert_eq!(v["extra"]["modelConfig"]["key"], "dashscope_qwen3_coder");
    }
}
