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

/// Room for one frame on the gateway connection, reserved before the frame is made.
pub struct Room(mpsc::OwnedPermit<String>);

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
        let room = self.reserve().await?;
        self.send_reserved(room, msg)
    }

    /// Wait for room for one frame on the connection. The future borrows nothing, so a
    /// chat can take Lingma's events while it waits.
    pub(super) fn reserve(&self) -> impl Future<Output = Result<Room, Gone>> + Send + 'static {
        let tx = self.tx.clone();
        async move { tx.reserve_owned().await.map(Room).map_err(|_| Gone) }
    }

    /// Send `msg` into room reserved with [`Output::reserve`] (never waits).
    pub(super) fn send_reserved(&mut self, room: Room, msg: &ServerMessage) -> Result<(), Gone> {
        let text = serde_json::to_string(msg).map_err(|_| Gone)?;
        if matches!(
            msg,
            ServerMessage::Started { .. } | ServerMessage::Delta { .. }
        ) {
            self.sent_output = true;
        }
        room.0.send(text);
        Ok(())
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
