//! The gateway side of one chat: frames for one stream id on one mux connection.

use super::Failure;
use mux_protocol::{ServerMessage, StreamId};
use tokio::sync::mpsc;

/// The gateway connection this chat writes to (already serialised frames, so the JSON
/// work happens in the chat's task, not in the connection's single writer).
pub struct Output {
    tx: mpsc::Sender<String>,
    pub(super) id: StreamId,
    /// Whether `Started` or a `Delta` went out (then no retry, and `before_output` false).
    pub(super) sent_output: bool,
}

/// The gateway side is gone; stop work for it.
#[derive(Debug)]
pub struct Gone;

impl Output {
    pub fn new(tx: mpsc::Sender<String>, id: StreamId) -> Self {
        Self {
            tx,
            id,
            sent_output: false,
        }
    }

    pub(super) async fn send(&mut self, msg: &ServerMessage) -> Result<(), Gone> {
        let text = serde_json::to_string(msg).map_err(|_| Gone)?;
        if matches!(
            msg,
            ServerMessage::Started { .. } | ServerMessage::Delta { .. }
        ) {
            self.sent_output = true;
        }
        self.tx.send(text).await.map_err(|_| Gone)
    }

    pub(super) async fn error(&mut self, f: Failure) -> Result<(), Gone> {
        let msg = ServerMessage::Error {
            id: self.id,
            kind: f.kind,
            message: f.message.to_owned(),
            before_output: !self.sent_output,
        };
        self.send(&msg).await
    }
}
