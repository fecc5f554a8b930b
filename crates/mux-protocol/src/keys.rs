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
/// turns before the last user message. `None` when there is nothing before it (a first
/// turn) or no user message at all.
pub fn conversation_key(scope: &str, messages: &[ChatMessage]) -> Option<String> {
    let last_user = messages.iter().rposition(|m| m.role == Role::User)?;
    let prefix = &messages[..last_user];
    if !prefix.iter().any(|m| m.role == Role::User) {
        return None;
    }
    Some(hash_turns(scope, prefix))
}

/// Key under which a successful turn is stored, so the next turn's [`conversation_key`]
/// finds it: scope + every keyed turn up to and including the last user message.
pub fn continuation_key(scope: &str, messages: &[ChatMessage]) -> Option<String> {
    let last_user = messages.iter().rposition(|m| m.role == Role::User)?;
    Some(hash_turns(scope, &messages[..=last_user]))
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
