//! Keys shared by the gateway (pinning) and the sidecar (session map); both sides must
//! compute them identically, so they live here.

use crate::{ChatMessage, Role};
use sha2::{Digest, Sha256};

/// Scope of an API key in the session map: a hash, so the key never leaves the gateway.
pub fn api_key_scope(api_key: &str) -> String {
    let digest = Sha256::digest(format!("lingma-scope:{api_key}").as_bytes());
    hex::encode(&digest[..16])
}

/// Key of the upstream session a request would continue: scope + the keyed (non-assistant)
/// turns before its [new turn](new_turn_start). `None` when there is no user message
/// before the new turn (a first turn) or no user message at all.
pub fn conversation_key(scope: &str, messages: &[ChatMessage]) -> Option<String> {
    let start = new_turn_start(messages)?;
    let prefix = &messages[..start];
    if !prefix.iter().any(|m| m.role == Role::User) {
        return None;
    }
    Some(hash_turns(scope, prefix))
}

/// Key under which a successful turn is stored, so the next turn's [`conversation_key`]
/// finds it: scope + every keyed turn up to and including the end of the new turn (the
/// last user message or tool result).
pub fn continuation_key(scope: &str, messages: &[ChatMessage]) -> Option<String> {
    messages.iter().rposition(|m| m.role == Role::User)?;
    let end = messages.iter().rposition(|m| m.role.is_turn_input())?;
    Some(hash_turns(scope, &messages[..=end]))
}

/// Where the new turn of a request starts: what the client added since the model last
/// spoke. In a chat that is the last user message; in an agent loop it is the tool results
/// (and any user text) that follow the last assistant message, so a tool-result turn
/// continues the session the tool call came from. `None` without a user message.
pub fn new_turn_start(messages: &[ChatMessage]) -> Option<usize> {
    let last_user = messages.iter().rposition(|m| m.role == Role::User)?;
    let boundary = messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .map_or(0, |i| i + 1);
    let first_result = messages[boundary..]
        .iter()
        .position(|m| matches!(m.role, Role::Tool | Role::Function))
        .map(|i| i + boundary);
    let user_in_turn = (last_user >= boundary).then_some(last_user);
    Some(match (first_result, user_in_turn) {
        (Some(r), Some(u)) => r.min(u),
        (Some(r), None) => r,
        (None, _) => last_user,
    })
}

fn hash_turns(scope: &str, turns: &[ChatMessage]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    for m in turns.iter().filter(|m| m.role.is_keyed()) {
        hasher.update([0u8]);
        hasher.update(role_tag(m.role).as_bytes());
        hasher.update([0u8]);
        // Clients trim and re-wrap what they echo back; whitespace must not split sessions.
        for word in m.content.split_whitespace() {
            hasher.update(word.as_bytes());
            hasher.update(b" ");
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

fn role_tag(role: Role) -> &'static str {
    match role {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Tool | Role::Function => "tool",
        Role::Assistant => "assistant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.to_owned(),
        }
    }

    #[test]
    fn follow_up_finds_what_the_previous_turn_stored() {
        let turn1 = vec![m(Role::System, "be brief"), m(Role::User, "hello")];
        let stored = continuation_key("s", &turn1).expect("has a user turn");
        let turn2 = vec![
            m(Role::System, "be brief"),
            m(Role::User, "  hello\n"),
            m(Role::Assistant, "whatever the client echoes"),
            m(Role::User, "and then?"),
        ];
        assert_eq!(conversation_key("s", &turn2), Some(stored));
    }

    #[test]
    fn agent_loop_turns_continue_the_call_they_answer() {
        let turn1 = vec![m(Role::System, "tools"), m(Role::User, "fix the bug")];
        let stored1 = continuation_key("s", &turn1).expect("stored");
        let mut turn2 = turn1.clone();
        turn2.push(m(Role::Assistant, "<call read_file>"));
        turn2.push(m(Role::Tool, "file contents"));
        assert_eq!(new_turn_start(&turn2), Some(3));
        assert_eq!(conversation_key("s", &turn2), Some(stored1));
        let stored2 = continuation_key("s", &turn2).expect("stored");
        let mut turn3 = turn2.clone();
        turn3.push(m(Role::Assistant, "<call write_file>"));
        turn3.push(m(Role::Tool, "ok"));
        turn3.push(m(Role::User, "and run the tests"));
        assert_eq!(new_turn_start(&turn3), Some(5));
        assert_eq!(conversation_key("s", &turn3), Some(stored2));
        assert_ne!(
            continuation_key("s", &turn3),
            continuation_key("s", &turn2),
            "each step of the loop stores a new key"
        );
    }

    #[test]
    fn plain_chats_keep_the_last_user_message_as_new_turn() {
        let t = vec![
            m(Role::User, "a"),
            m(Role::Assistant, "b"),
            m(Role::User, "c"),
            m(Role::System, "late instruction"),
        ];
        assert_eq!(new_turn_start(&t), Some(2));
        assert_eq!(
            continuation_key("s", &t),
            continuation_key("s", &t[..3]),
            "trailing instructions are not part of the stored turn"
        );
        assert_eq!(new_turn_start(&[m(Role::Assistant, "x")]), None);
    }

    #[test]
    fn first_turn_has_no_conversation_key() {
        let turn1 = vec![m(Role::System, "x"), m(Role::User, "hello")];
        assert_eq!(conversation_key("s", &turn1), None);
    }

    #[test]
    fn scopes_do_not_share_keys() {
        let t = vec![
            m(Role::User, "a"),
            m(Role::Assistant, "b"),
            m(Role::User, "c"),
        ];
        assert_ne!(conversation_key("s1", &t), conversation_key("s2", &t));
        assert_ne!(api_key_scope("k1"), api_key_scope("k2"));
        assert!(!api_key_scope("secret-key").contains("secret"));
    }

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let msg = crate::ServerMessage::Error {
            id: 7,
            kind: crate::ErrorKind::RateLimited,
            message: "rate limited".into(),
            before_output: true,
        };
        let json = serde_json::to_string(&msg).expect("serialize");
        assert!(json.contains(r#""type":"error""#) && json.contains(r#""kind":"rate_limited""#));
        let back: crate::ServerMessage = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, msg);
    }
}
