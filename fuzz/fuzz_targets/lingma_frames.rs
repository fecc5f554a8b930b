//! Lingma's framing decoder and JSON-RPC decoder on arbitrary bytes, fed in arbitrary
//! pieces (the first byte chooses the piece size): errors are fine, panics and unbounded
//! buffering are not. Also checks that a frame we encode decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lingma_protocol::framing::{FrameDecoder, MAX_FRAME_BYTES, encode};
use lingma_protocol::jsonrpc::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new();
    for chunk in rest.chunks(piece) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    if let Ok(msg) = Message::decode(&body) {
                        // What we decode we can encode again.
                        let _ = Message::decode(&msg.encode());
                    }
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        // A header is at most 1 KiB and a body at most MAX_FRAME_BYTES: never more buffered.
        assert!(decoder.pending() <= MAX_FRAME_BYTES + 1024 + piece);
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        let mut d = FrameDecoder::new();
        d.push(encode(text).as_bytes());
        assert_eq!(d.next_frame(), Ok(Some(text.to_owned())));
    }
});
