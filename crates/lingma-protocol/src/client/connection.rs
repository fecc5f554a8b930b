//! The WebSocket and its two tasks. The reader decodes frames, acks every server request at
//! once (before routing: the "off-by-one" hazard), and routes; the writer drains a bounded
//! queue of ready-framed text, batching whatever is queued into one flush.

use super::chat::ChatEvent;
use super::codec::{self, Incoming, Kind};
use super::state::{ConnectionState, RESERVED_SLOTS};
use super::{CONSUMER_GRACE, ClientOptions, ServerEvent};
use crate::error::{ClientError, sanitize};
use crate::framing::FrameDecoder;
use crate::methods;
use crate::wire::{
    ChatAnswer, ChatFinish, ChatThink, ProcessStepCallback, SessionTitleUpdate, ToolInvoke,
    ToolInvokeResult,
};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames queued for the writer. Bounded: callers and the reader wait when it is full.
const OUTBOUND_QUEUE: usize = 4096;
/// Frames written per flush at most.
const WRITE_BATCH: usize = 128;

pub(crate) async fn open(
    url: &str,
    opts: ClientOptions,
) -> Result<Arc<ConnectionState>, ClientError> {
    // Nagle off: acks and small requests must not wait for a delayed ACK.
    let connect = tokio_tungstenite::connect_async_with_config(url, None, true);
    let (ws, _) = tokio::time::timeout(opts.connect_timeout, connect)
        .await
        .map_err(|_| {
            ClientError::Connect(format!(
                "no WebSocket handshake within {:?}",
                opts.connect_timeout
            ))
        })?
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let state = Arc::new(ConnectionState::new(tx, opts));
    tokio::spawn(write_loop(sink, rx, state.clone()));
    tokio::spawn(read_loop(stream, state.clone()));
    Ok(state)
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<String>,
    state: Arc<ConnectionState>,
) {
    loop {
        let first = tokio::select! {
            biased;
            () = state.stop.cancelled() => break,
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        let mut result = sink.feed(Message::text(first)).await;
        let mut batched = 1;
        while result.is_ok() && batched < WRITE_BATCH {
            let Ok(frame) = rx.try_recv() else { break };
            result = sink.feed(Message::text(frame)).await;
            batched += 1;
        }
        if let Err(e) = result {
            tracing::debug!(error = %e, "Lingma WebSocket write failed");
            break;
        }
        if let Err(e) = sink.flush().await {
            tracing::debug!(error = %e, "Lingma WebSocket flush failed");
            break;
        }
    }
    state.stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
}

async fn read_loop(mut stream: futures_util::stream::SplitStream<Ws>, state: Arc<ConnectionState>) {
    let mut decoder = FrameDecoder::new();
    loop {
        let message = tokio::select! {
            biased;
            () = state.stop.cancelled() => break,
            message = stream.next() => message,
        };
        let data = match message {
            Some(Ok(Message::Text(text))) => text.into(),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "Lingma WebSocket read failed");
                break;
            }
        };
        decoder.push(&data);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    if !handle_frame(&state, &body).await {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The decoder has dropped the bad bytes (a bad header clears its buffer,
                    // a non-UTF-8 body only that frame); go on with whatever it still holds.
                    // Which chats lost frames is unknown, so none is named.
                    protocol_violation(&state, format!("bad frame: {e}"), None);
                }
            }
        }
    }
    if decoder.pending() > 0 {
        // A frame cut short by the disconnect: counted, but the chats get ConnectionLost,
        // because that is what the caller must act on (reconnect).
        state.protocol_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            bytes = decoder.pending(),
            "Lingma connection ended inside a frame"
        );
    }
    let reason = state.end_reason();
    tracing::debug!(%reason, "Lingma connection ended");
    state.stop.cancel();
    state.end_all(reason);
    state.gone.cancel();
}

/// Queue a frame for the writer; false when the connection is stopping.
async fn send_frame(state: &ConnectionState, frame: String) -> bool {
    let frame = match state.outbound.try_send(frame) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Full(frame)) => frame,
        Err(mpsc::error::TrySendError::Closed(_)) => return false,
    };
    tokio::select! {
        biased;
        () = state.stop.cancelled() => false,
        sent = state.outbound.send(frame) => sent.is_ok(),
    }
}

/// Handle one frame body; false when the connection is stopping.
async fn handle_frame(state: &ConnectionState, body: &str) -> bool {
    let message = match Incoming::parse(body) {
        Ok(message) => message,
        Err(e) => {
            protocol_violation(state, format!("frame is not JSON: {e}"), Some(body));
            return true;
        }
    };
    match message.kind() {
        Some(Kind::Request { id, method }) => {
            let reply = if method == methods::TOOL_INVOKE {
                tool_refusal(id, message.params_text())
            } else {
                codec::ack_frame(id)
            };
            if !send_frame(state, reply).await {
                return false;
            }
            route(
                state,
                &method,
                codec::response_id(id),
                message.params_text(),
            )
            .await;
        }
        Some(Kind::Notification { method }) => {
            route(state, &method, None, message.params_text()).await;
        }
        Some(Kind::Response { id }) => {
            let Some(id) = codec::response_id(id) else {
                // Not an id we could have sent; no chat lost anything, so none is ended.
                state.protocol_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    id = %sanitize(id.get()),
                    "Lingma answered an id this client never used"
                );
                return true;
            };
            let reply = match (&message.error, message.result) {
                (Some(error), _) => Err(ClientError::upstream(error.code, &error.message)),
                (None, Some(result)) => Ok(result.to_owned()),
                (None, None) => Err(ClientError::Protocol("response without result".into())),
            };
            if !state.resolve_call(id, reply) {
                tracing::debug!(
                    id,
                    "response for no pending call (timed out, dropped or detached)"
                );
            }
        }
        None => protocol_violation(state, "not a JSON-RPC 2.0 message".into(), Some(body)),
    }
    true
}

/// Tools are not ours to run (chat mode only): answer `success:false` so Lingma goes on.
fn tool_refusal(id: &serde_json::value::RawValue, params: &str) -> String {
    let invoke: ToolInvoke = serde_json::from_str(params).unwrap_or_default();
    let result = ToolInvokeResult {
        tool_call_id: invoke.tool_call_id,
        name: invoke.name,
        success: false,
        error_message: "tool calls are not supported by this client".into(),
        result: serde_json::Value::Null,
    };
    codec::result_frame(id, &result).unwrap_or_else(|_| codec::ack_frame(id))
}

/// `event_id` (the JSON-RPC id of a pushed request) lets a chat drop an event sent twice.
async fn route(state: &ConnectionState, method: &str, event_id: Option<i64>, params: &str) {
    match method {
        methods::CHAT_ANSWER => {
            route_chat::<ChatAnswer>(state, event_id, params, ChatEvent::Answer).await;
        }
        methods::CHAT_FINISH => {
            route_chat::<ChatFinish>(state, event_id, params, ChatEvent::Finish).await;
        }
        methods::CHAT_THINK => {
            route_chat::<ChatThink>(state, event_id, params, ChatEvent::Think).await;
        }
        methods::CHAT_PROCESS_STEP_CALLBACK => {
            route_chat::<ProcessStepCallback>(state, event_id, params, ChatEvent::Step).await;
        }
        methods::SESSION_TITLE_UPDATE => route_title(state, params),
        _ => publish(state, method, params),
    }
}

async fn route_chat<E: DeserializeOwned>(
    state: &ConnectionState,
    event_id: Option<i64>,
    params: &str,
    wrap: fn(E) -> ChatEvent,
) {
    match serde_json::from_str(params) {
        Ok(event) => {
            let event = wrap(event);
            wait_for_room(state, event.request_id()).await;
            state.deliver(None, event_id, event);
        }
        Err(e) => {
            let what = format!("chat event params have the wrong shape: {e}");
            protocol_violation(state, what, Some(params));
        }
    }
}

/// When `request_id`'s chat has no room, give its consumer up to [`CONSUMER_GRACE`] to
/// make some (`deliver` ends the chat if it still has none).
async fn wait_for_room(state: &ConnectionState, request_id: &str) {
    let Some(tx) = state.full_chat(request_id) else {
        return;
    };
    tokio::select! {
        biased;
        () = state.stop.cancelled() => {}
        _ = tokio::time::timeout(CONSUMER_GRACE, tx.reserve_many(RESERVED_SLOTS + 1)) => {}
    }
}

fn route_title(state: &ConnectionState, params: &str) {
    let title: SessionTitleUpdate = match serde_json::from_str(params) {
        Ok(title) => title,
        Err(e) => {
            protocol_violation(
                state,
                format!("session/title/update has the wrong shape: {e}"),
                None,
            );
            return;
        }
    };
    match state.chat_of_session(&title.session_id) {
        Some(request_id) => {
            state.deliver(Some(&request_id), None, ChatEvent::Title(title));
        }
        None => publish(state, methods::SESSION_TITLE_UPDATE, params),
    }
}

/// Server pushes that belong to no chat go to `subscribe_events` subscribers, if any.
fn publish(state: &ConnectionState, method: &str, params: &str) {
    if state.events.receiver_count() == 0 {
        tracing::debug!(method, "server event with no subscriber");
        return;
    }
    let params = serde_json::from_str(params).unwrap_or(serde_json::Value::Null);
    let _ = state.events.send(ServerEvent {
        method: method.to_owned(),
        params,
    });
}

/// Count and log a frame that does not parse, and end the chat it belonged to. When no
/// chat can be named, every open chat is ended: one of them lost a frame (possibly an
/// answer delta) and a silently incomplete answer is worse than a failed one.
fn protocol_violation(state: &ConnectionState, what: String, text: Option<&str>) {
    state.protocol_errors.fetch_add(1, Ordering::Relaxed);
    // serde errors quote offending values, which could be tokens.
    let error = ClientError::Protocol(sanitize(&what));
    if let Some(request_id) = text.and_then(codec::sniff_request_id)
        && state.fail_chat(request_id, error.clone())
    {
        tracing::warn!(%request_id, %error, "Lingma protocol violation; chat ended");
        return;
    }
    let ended = state.fail_all_chats(&error);
    tracing::warn!(%error, chats_ended = ended, "Lingma protocol violation");
}
