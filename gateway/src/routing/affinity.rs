//! The affinity key: which conversation "family" a request belongs to, so every turn (and
//! every gateway replica) lands on the same sidecar.

use mux_protocol::{ChatMessage, Role};

use super::hash::fnv1a;

/// API key scope and `user` when the client names its user; else scope, the system
/// prompt and the first user turn (constant over a conversation's turns). Whitespace is
/// normalised, as in the session keys, because clients re-wrap what they resend.
pub fn affinity_key(scope: &str, user: Option<&str>, messages: &[ChatMessage]) -> u64 {
    if let Some(user) = user {
        return fnv1a(&[b"user", scope.as_bytes(), user.as_bytes()]);
    }
    let system = messages
        .iter()
        .find(|m| matches!(m.role, Role::System | Role::Developer))
        .map(|m| normalized(&m.content))
        .unwrap_or_default();
    let first_user = messages
        .iter()
        .find(|m| m.role == Role::User)
        .map(|m| normalized(&m.content))
        .unwrap_or_default();
    fnv1a(&[
        b"conv",
        scope.as_bytes(),
        system.as_bytes(),
        first_user.as_bytes(),
    ])
}

fn normalized(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
    fn turns_of_one_conversation_share_the_key() {
        let t1 = [m(Role::System, "be brief"), m(Role::User, "hello")];
        let t2 = [
            m(Role::System, "be  brief"),
            m(Role::User, "hello\n"),
            m(Role::Assistant, "hi"),
            m(Role::User, "more"),
        ];
        assert_eq!(affinity_key("s", None, &t1), affinity_key("s", None, &t2));
        assert_ne!(
            affinity_key("s", None, &t1),
            affinity_key("other", None, &t1)
        );
        assert_ne!(
            affinity_key("s", None, &t1),
            affinity_key("s", None, &[m(Role::User, "bye")])
        );
    }

    #[test]
    fn user_field_wins() {
        let a = [m(Role::User, "one")];
        let b = [m(Role::User, "two")];
        assert_eq!(
            affinity_key("s", Some("u"), &a),
            affinity_key("s", Some("u"), &b)
        );
        assert_ne!(
            affinity_key("s", Some("u"), &a),
            affinity_key("s", Some("v"), &a)
        );
    }
}
