//! The params of the events a chat pushes (serialised from borrowed data) and the sink
//! they go through: straight to the connection's writer, or batched when coalescing.

use crate::conn::{Closed, Conn};
use crate::frames;
use crate::state::Sim;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Accepted<'a> {
    pub success: bool,
    pub is_success: bool,
    pub request_id: &'a str,
    pub error_message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Step<'a> {
    pub request_id: &'a str,
    pub session_id: &'a str,
    pub step: &'a str,
    pub description: &'a str,
    pub status: &'a str,
    pub result: Option<()>,
    pub message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Title<'a> {
    pub session_id: &'a str,
    pub session_title: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Think<'a> {
    pub request_id: &'a str,
    pub session_id: &'a str,
    pub text: &'a str,
    pub step: &'a str,
    pub timestamp: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionTypeExtra<'a> {
    pub session_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer<'a> {
    pub request_id: &'a str,
    pub session_id: &'a str,
    pub text: &'a str,
    pub overwrite: bool,
    pub is_filtered: bool,
    pub timestamp: i64,
    pub extra: SessionTypeExtra<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Finish<'a> {
    pub request_id: &'a str,
    pub session_id: &'a str,
    pub reason: &'a str,
    pub status_code: i64,
    pub full_answer: &'a str,
    pub extra: SessionTypeExtra<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Usage {
    pub used_tokens: u64,
    pub limit_tokens: u64,
}

pub(crate) enum Pause {
    Continue,
    Stopped,
}

/// Where a chat's frames go: straight to the connection's writer, or (coalescing) into a
/// batch sent whenever the chat is about to wait.
pub(crate) struct EventSink<'a> {
    pub conn: &'a Conn,
    pub sim: &'a Sim,
    pub batch: Option<String>,
}

impl EventSink<'_> {
    pub async fn raw(&mut self, frame: String) -> Result<(), Closed> {
        match &mut self.batch {
            Some(batch) => {
                batch.push_str(&frame);
                Ok(())
            }
            None => self.conn.send(frame).await,
        }
    }

    pub async fn flush(&mut self) -> Result<(), Closed> {
        match &mut self.batch {
            Some(batch) if !batch.is_empty() => {
                let frames = std::mem::take(batch);
                self.conn.send(frames).await
            }
            _ => Ok(()),
        }
    }

    /// Push an event as a request with the next id and track its ack.
    pub async fn event(
        &mut self,
        method: &'static str,
        params: &impl Serialize,
    ) -> Result<(), Closed> {
        let id = self.conn.next_event_id();
        let frame = frames::request(id, method, params);
        self.push_tracked(id, method, frame).await
    }

    /// The `duplicate_request_id` fault: the same frame (same id) twice.
    pub async fn event_twice(
        &mut self,
        method: &'static str,
        params: &impl Serialize,
    ) -> Result<(), Closed> {
        let id = self.conn.next_event_id();
        let frame = frames::request(id, method, params);
        self.raw(frame.clone()).await?;
        self.push_tracked(id, method, frame).await
    }

    pub async fn push_tracked(
        &mut self,
        id: i64,
        method: &'static str,
        frame: String,
    ) -> Result<(), Closed> {
        let waiter = self.conn.track(id, method, self.sim.config.wait_for_ack);
        self.sim.stats.events_sent.fetch_add(1, Ordering::Relaxed);
        self.raw(frame).await?;
        if let Some(acked) = waiter {
            self.flush().await?;
            let timeout = Duration::from_millis(self.sim.config.ack_timeout_ms);
            tokio::select! {
                _ = acked => {}
                _ = tokio::time::sleep(timeout) => {}
                _ = self.conn.closed.cancelled() => return Err(Closed),
            }
        }
        Ok(())
    }

    /// Wait `delay` (not at all when zero) unless the chat is stopped or the connection
    /// closes.
    pub async fn pause(
        &mut self,
        delay: Duration,
        stop: &CancellationToken,
    ) -> Result<Pause, Closed> {
        if delay.is_zero() {
            return Ok(if stop.is_cancelled() {
                Pause::Stopped
            } else {
                Pause::Continue
            });
        }
        self.flush().await?;
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(Pause::Continue),
            _ = stop.cancelled() => Ok(Pause::Stopped),
            _ = self.conn.closed.cancelled() => Err(Closed),
        }
    }
}
