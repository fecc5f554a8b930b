//! A client of the sidecar's mux protocol: the bench's "direct to the sidecar" path, the
//! baseline the gateway's added latency is measured against. One WebSocket, many chats,
//! exactly as the gateway uses it.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use mux_protocol::{ChatRequest, ClientMessage, ServerMessage, SidecarStatus, StreamId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type Routes = Arc<Mutex<HashMap<StreamId, mpsc::UnboundedSender<ServerMessage>>>>;

pub struct MuxClient {
    outgoing: mpsc::UnboundedSender<Message>,
    routes: Routes,
    next_id: AtomicU64,
    status: watch::Receiver<Option<SidecarStatus>>,
}

/// The messages of one chat, in order, ending with `Finish` or `Error`.
pub struct ChatStream {
    pub id: StreamId,
    rx: mpsc::UnboundedReceiver<ServerMessage>,
}

impl ChatStream {
    /// Next message; `None` when the connection is gone.
    pub async fn next(&mut self) -> Option<ServerMessage> {
        self.rx.recv().await
    }
}

impl MuxClient {
    /// Connect to `ws_base` (e.g. `ws://127.0.0.1:8318`) with the bearer `token`.
    pub async fn connect(ws_base: &str, token: &str) -> Result<Self> {
        let url = format!(
            "{ws_base}{}?v={}",
            mux_protocol::MUX_PATH,
            mux_protocol::PROTOCOL_VERSION
        );
        let mut request = url.as_str().into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))
                .context("token is not a header value")?,
        );
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(mux_protocol::SUBPROTOCOL),
        );
        // TCP_NODELAY: the client side of a latency measurement must not add Nagle's delay.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let routes: Routes = Arc::default();
        let (status_tx, status) = watch::channel(None);

        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let reader_routes = routes.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(parsed) = serde_json::from_str::<ServerMessage>(&text) else {
                    continue;
                };
                let (id, last) = match &parsed {
                    ServerMessage::Status(s) => {
                        let _ = status_tx.send(Some(s.clone()));
                        continue;
                    }
                    ServerMessage::Started { id, .. } | ServerMessage::Delta { id, .. } => {
                        (*id, false)
                    }
                    ServerMessage::Finish { id, .. } | ServerMessage::Error { id, .. } => {
                        (*id, true)
                    }
                    ServerMessage::Sessions(_) | ServerMessage::Load(_) => continue,
                };
                let mut routes = reader_routes.lock().unwrap_or_else(|e| e.into_inner());
                let tx = if last {
                    routes.remove(&id)
                } else {
                    routes.get(&id).cloned()
                };
                if let Some(tx) = tx {
                    let _ = tx.send(parsed);
                }
            }
            // Connection gone: dropping the senders ends every open ChatStream.
            reader_routes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        });
        let client = Self {
            outgoing,
            routes,
            next_id: AtomicU64::new(1),
            status,
        };
        client.wait_status().await?;
        Ok(client)
    }

    /// Wait for the first `Status` message (the sidecar sends it on every connection).
    async fn wait_status(&self) -> Result<SidecarStatus> {
        let mut rx = self.status.clone();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                if let Some(s) = rx.borrow_and_update().clone() {
                    return Ok(s);
                }
                rx.changed()
                    .await
                    .map_err(|_| anyhow!("connection closed before status"))?;
            }
        })
        .await;
        got.map_err(|_| anyhow!("no status from the sidecar within 10 s"))?
    }

    pub fn status(&self) -> Option<SidecarStatus> {
        self.status.borrow().clone()
    }

    /// Every `Status` the sidecar pushes (it sends one whenever a field changes).
    pub fn status_watch(&self) -> watch::Receiver<Option<SidecarStatus>> {
        self.status.clone()
    }

    /// Start a chat.
    pub fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let text = serde_json::to_string(&ClientMessage::Chat { id, request })?;
        if self.outgoing.send(Message::text(text)).is_err() {
            bail!("mux connection closed");
        }
        Ok(ChatStream { id, rx })
    }

    pub fn cancel(&self, id: StreamId) -> Result<()> {
        let text = serde_json::to_string(&ClientMessage::Cancel { id })?;
        self.outgoing
            .send(Message::text(text))
            .map_err(|_| anyhow!("mux connection closed"))
    }

    /// Run a chat to its end, timing its content deltas; an error naming the kind unless it
    /// ends with `Finish`.
    pub async fn chat_delta_times(&self, request: ChatRequest) -> Result<DeltaTimes> {
        let start = Instant::now();
        let mut stream = self.chat(request)?;
        let mut times = DeltaTimes::default();
        let mut last: Option<Instant> = None;
        while let Some(msg) = stream.next().await {
            match msg {
                ServerMessage::Delta {
                    content: Some(c), ..
                } if !c.is_empty() => {
                    let now = Instant::now();
                    match last {
                        None => times.first = Some(now - start),
                        Some(prev) => times.gaps.push(now - prev),
                    }
                    last = Some(now);
                }
                ServerMessage::Finish { .. } => return Ok(times),
                ServerMessage::Error { kind, .. } => bail!("sidecar error {kind:?}"),
                _ => {}
            }
        }
        bail!("mux connection closed mid-chat")
    }

    /// Run a chat to its end; `Ok(answer)` on `Finish`, an error naming the kind otherwise.
    pub async fn chat_to_end(&self, request: ChatRequest) -> Result<String> {
        let mut stream = self.chat(request)?;
        let mut answer = String::new();
        while let Some(msg) = stream.next().await {
            match msg {
                ServerMessage::Delta {
                    content: Some(c), ..
                } => answer.push_str(&c),
                ServerMessage::Finish { .. } => return Ok(answer),
                ServerMessage::Error { kind, .. } => bail!("sidecar error {kind:?}"),
                _ => {}
            }
        }
        bail!("mux connection closed mid-chat")
    }
}

/// When the content deltas of one chat arrived.
#[derive(Debug, Clone, Default)]
pub struct DeltaTimes {
    /// From the send to the first non-empty content delta.
    pub first: Option<Duration>,
    /// Between consecutive non-empty content deltas.
    pub gaps: Vec<Duration>,
}

/// A one-user-message chat request as the gateway would hand it over.
pub fn simple_request(request_id: &str, text: &str) -> ChatRequest {
    ChatRequest {
        request_id: request_id.to_owned(),
        model: None,
        messages: vec![mux_protocol::ChatMessage {
            role: mux_protocol::Role::User,
            content: text.to_owned(),
        }],
        scope: String::new(),
        session_reuse: true,
        queue_timeout_ms: 30_000,
        wait_for_slot: true,
    }
}
