//! What the sidecar tells every gateway beyond chats: which conversation keys its session
//! map holds (so any gateway replica routes a follow-up turn to its session) and its load
//! over all gateways (so bounded-load routing sees the other replicas' chats).
//!
//! Both are additive `ServerMessage` types of protocol version 1 (`sessions`, `load`); see
//! docs/mux-protocol.md.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A fixed-size digest of a session-map key ([`crate::continuation_key`] /
/// [`crate::conversation_key`]): the first 64 bits of the key. Keys are already 128-bit
/// SHA-256 prefixes in hex, so their first 16 hex digits are as uniform as any hash of
/// them; a key that is not hex (never produced by this crate) is hashed with FNV-1a.
///
/// On the wire it is those 16 lowercase hex digits (a JSON string: exact in every
/// language, unlike a JSON number above 2^53). A collision only costs a routing choice:
/// the sidecar still matches the whole key before it continues a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyDigest(pub u64);

impl KeyDigest {
    /// The digest of a session-map key.
    pub fn of(key: &str) -> Self {
        if let Some(prefix) = key.get(..16)
            && let Ok(v) = u64::from_str_radix(prefix, 16)
        {
            return Self(v);
        }
        Self(fnv1a(key.as_bytes()))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Serialize for KeyDigest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", self.0))
    }
}

impl<'de> Deserialize<'de> for KeyDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.len() != 16 {
            return Err(serde::de::Error::custom("a key digest is 16 hex digits"));
        }
        u64::from_str_radix(&s, 16)
            .map(Self)
            .map_err(|_| serde::de::Error::custom("a key digest is 16 hex digits"))
    }
}

/// `sessions`: the keys the sidecar's session map holds. On every connection, right after
/// the first `status`, a snapshot (`snapshot: true`: the gateway replaces what it knew of
/// this sidecar with `held`; a large map comes as one snapshot message followed by
/// `snapshot: false` messages adding the rest); then changes, coalesced over a few ms.
/// A claimed (running) session is dropped until its turn is stored again under its
/// continuation key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKeys {
    #[serde(default)]
    pub snapshot: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<KeyDigest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<KeyDigest>,
}

/// Most digests in one `sessions` message (about 19 bytes each on the wire), so a large
/// session map is announced in messages of at most ~80 KB.
pub const MAX_DIGESTS_PER_MESSAGE: usize = 4096;

/// `load`: chats running upstream and waiting in the sidecar, over all gateways. Sent
/// whenever either changes (coalesced over a few ms; the first change after a quiet
/// period goes out at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarLoad {
    pub in_flight: u32,
    pub queued: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerMessage;

    #[test]
    fn digest_is_the_key_prefix_and_round_trips_as_hex() {
        let key = "0123456789abcdef0011223344556677";
        assert_eq!(KeyDigest::of(key), KeyDigest(0x0123_4567_89ab_cdef));
        let json = serde_json::to_string(&KeyDigest::of(key)).expect("json");
        assert_eq!(json, r#""0123456789abcdef""#);
        let back: KeyDigest = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, KeyDigest::of(key));
        assert_ne!(KeyDigest::of("not hex at all!!!"), KeyDigest::of("other"));
        assert!(serde_json::from_str::<KeyDigest>(r#""12""#).is_err());
        assert!(serde_json::from_str::<KeyDigest>(r#""zzzzzzzzzzzzzzzz""#).is_err());
    }

    #[test]
    fn sessions_and_load_are_tagged_messages() {
        let msg = ServerMessage::Sessions(SessionKeys {
            snapshot: true,
            held: vec![KeyDigest(1), KeyDigest(u64::MAX)],
            dropped: vec![],
        });
        let json = serde_json::to_string(&msg).expect("json");
        assert_eq!(
            json,
            r#"{"type":"sessions","snapshot":true,"held":["0000000000000001","ffffffffffffffff"]}"#
        );
        assert_eq!(
            serde_json::from_str::<ServerMessage>(&json).expect("parse"),
            msg
        );
        let load = ServerMessage::Load(SidecarLoad {
            in_flight: 2,
            queued: 1,
        });
        let json = serde_json::to_string(&load).expect("json");
        assert_eq!(json, r#"{"type":"load","in_flight":2,"queued":1}"#);
        assert_eq!(
            serde_json::from_str::<ServerMessage>(&json).expect("parse"),
            load
        );
    }

    #[test]
    fn unknown_types_are_recognised_as_such() {
        assert!(crate::is_unknown_server_type(
            r#"{"type":"from_the_future","x":1}"#
        ));
        assert!(!crate::is_unknown_server_type(
            r#"{"type":"load","in_flight":"bad"}"#
        ));
        assert!(!crate::is_unknown_server_type("not json"));
    }
}
