//! The gateway's request parsing: any bytes as the body of POST /v1/chat/completions must
//! give a validated chat or a clear error, never a panic; what validates must be keyable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(chat) = gateway::openai::parse_chat_request(body) {
        let scope = mux_protocol::api_key_scope("fuzz");
        let _ = mux_protocol::conversation_key(&scope, &chat.messages);
        let _ = mux_protocol::continuation_key(&scope, &chat.messages);
    }
});
