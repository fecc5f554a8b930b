//! The gateway <-> sidecar messages as either side parses them: arbitrary text must give a
//! message or an error, and a parsed message must round-trip through JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mux_protocol::{ClientMessage, ServerMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = serde_json::from_slice::<ClientMessage>(data) {
        let json = serde_json::to_string(&msg).expect("a parsed message serializes");
        let back: ClientMessage = serde_json::from_str(&json).expect("and parses again");
        assert_eq!(back, msg);
    }
    if let Ok(msg) = serde_json::from_slice::<ServerMessage>(data) {
        let json = serde_json::to_string(&msg).expect("a parsed message serializes");
        let _: ServerMessage = serde_json::from_str(&json).expect("and parses again");
    }
});
