//! The client against the REAL simulator binary (`lingma-sim start ...`, a test double of
//! Lingma), over real WebSocket connections on 127.0.0.1 ephemeral ports.

mod chats;
mod faults;
mod harness;
