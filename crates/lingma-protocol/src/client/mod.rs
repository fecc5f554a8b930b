//! The async Lingma client: one WebSocket, a reader task and a writer task, calls correlated
//! by id, chats routed by `requestId`. See `ClientError` for how things fail.
//!
//! ```no_run
//! # async fn demo(params: lingma_protocol::wire::ChatAskParams) -> Result<(), lingma_protocol::ClientError> {
//! use futures_util::StreamExt;
//! use lingma_protocol::{ChatEvent, ClientOptions, LingmaClient};
//!
//! let client = LingmaClient::connect("ws://127.0.0.1:36510/", ClientOptions::default()).await?;
//! client.initialize("file:///work").await?;
//! let mut chat = client.chat(params).await?; // Err(Rejected) if not accepted
//! while let Some(event) = chat.next().await {
//!     match event? {
//!         ChatEvent::Answer(delta) => print!("{}", delta.text),
//!         ChatEvent::Finish(finish) => println!("\n[{}]", finish.status_code),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Choices worth knowing:
//! - Every server request is acked by the reader before it is routed; `tool/invoke` is
//!   answered `success:false` instead (chat mode only).
//! - Each chat buffers up to [`CHAT_EVENT_BUFFER`] events. A chat whose consumer falls that
//!   far behind and makes no room within [`CONSUMER_GRACE`] is ended with `ConsumerTooSlow`
//!   and stopped, so one stuck consumer blocks the reader for the other chats at most that
//!   long.
//! - A frame that does not parse is counted (`protocol_errors()`) and ends the chat it names
//!   (found by its `requestId`) with `Protocol`; if it names none, every open chat is ended
//!   with `Protocol`, because one of them lost an event and nobody can tell which.
//! - Events for unknown `requestId`s (late frames, stopped chats) are acked and dropped; an
//!   event repeated with the same JSON-RPC id is dropped.
//! - A disconnect gives `ConnectionLost` (or `Closed` after `close()`) to every open chat and
//!   pending call; a frame cut short by it is counted as a protocol error. A call or chat
//!   begun after it fails `NotSent`: it never reached Lingma, so it may go elsewhere.

mod chat;
mod codec;
mod connection;
mod state;

pub use chat::{ChatEvent, ChatStream};

use crate::error::{ClientError, sanitize};
use crate::methods;
use crate::wire::{
    AuthStatus, ChatAskParams, ChatAskResult, ClientInfo, InitializeParams, InitializeResult,
    QueryModelsResult, WorkspaceFolder,
};
use chat::ChatGuard;
use serde::Serialize;
use serde::de::DeserializeOwned;
use state::{ConnectionState, PendingCallGuard};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Events buffered per chat before its consumer counts as too slow and the chat is ended
/// with a `ConsumerTooSlow` error (the reader never blocks on one chat's consumer).
pub const CHAT_EVENT_BUFFER: usize = 1024;

/// How long the reader waits for a chat whose buffer is full to make room before it ends
/// that chat with `ConsumerTooSlow`. A consumer that keeps up on average can still fall a
/// buffer behind a burst (the reader parses a whole socket read before the consumer's task
/// runs, more so on a loaded machine); a stuck one is ended after this, and the other
/// chats wait at most this long behind it.
pub const CONSUMER_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Deadline of every call, including `chat/ask`'s accept (`LINGMA_RPC_TIMEOUT`).
    pub rpc_timeout: Duration,
    pub connect_timeout: Duration,
    /// A chat stream that receives no event this long yields `Err(Timeout)` and ends.
    pub chat_idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            rpc_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            chat_idle_timeout: Duration::from_secs(120),
        }
    }
}

/// A server push that belongs to no chat (`auth/syncTokenUpdate`, `window/logMessage`, ...).
#[derive(Debug, Clone)]
pub struct ServerEvent {
    pub method: String,
    pub params: serde_json::Value,
}

/// A connection to one Lingma process. Cheap to clone; the connection closes when the last
/// clone (including those held by open chat streams) is dropped, or on `close()`.
#[derive(Clone)]
pub struct LingmaClient {
    handle: Arc<Handle>,
}

struct Handle {
    state: Arc<ConnectionState>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.state.close_requested.store(true, Ordering::Release);
        self.state.stop.cancel();
    }
}

#[derive(Serialize)]
struct NoParams {}

impl LingmaClient {
    pub async fn connect(url: &str, opts: ClientOptions) -> Result<Self, ClientError> {
        let state = connection::open(url, opts).await?;
        Ok(Self {
            handle: Arc::new(Handle { state }),
        })
    }

    fn state(&self) -> &Arc<ConnectionState> {
        &self.handle.state
    }

    /// `initialize` with `clientInfo.name = "lingma-sidecar"` and `root_uri` as the only
    /// workspace folder (Lingma logs errors without one).
    pub async fn initialize(&self, root_uri: &str) -> Result<InitializeResult, ClientError> {
        let name = root_uri
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("workspace");
        let params = InitializeParams {
            process_id: Some(std::process::id()),
            client_info: ClientInfo {
                name: "lingma-sidecar".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            root_uri: root_uri.to_owned(),
            capabilities: serde_json::json!({}),
            workspace_folders: vec![WorkspaceFolder {
                uri: root_uri.to_owned(),
                name: name.to_owned(),
            }],
        };
        self.call(methods::INITIALIZE, &params).await
    }

    /// A request with the default deadline (`rpc_timeout`).
    pub async fn call<P, R>(&self, method: &str, params: &P) -> Result<R, ClientError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with_timeout(method, params, self.state().opts.rpc_timeout)
            .await
    }

    /// A request with its own deadline. Dropping the future frees its entry at once.
    pub async fn call_with_timeout<P, R>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, ClientError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let state = self.state();
        if state.stop.is_cancelled() {
            return Err(not_sent(state.end_reason()));
        }
        let id = state.next_id();
        let frame = codec::request_frame(id, method, params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode `{method}` params: {e}")))?;
        let (tx, rx) = oneshot::channel();
        state.register_call(id, tx).map_err(not_sent)?;
        let mut guard = PendingCallGuard {
            state,
            id,
            armed: true,
        };
        // Outer error: the request never left; inner: what came back for it.
        let exchange = async {
            let sent = tokio::select! {
                biased;
                () = state.stop.cancelled() => false,
                sent = state.outbound.send(frame) => sent.is_ok(),
            };
            if !sent {
                return Err(not_sent(state.end_reason()));
            }
            Ok(rx.await.unwrap_or_else(|_| Err(state.end_reason())))
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::timeout(method))??;
        // Whoever answered (the reader or the disconnect) already removed the entry.
        guard.armed = false;
        let raw = reply?;
        serde_json::from_str(raw.get()).map_err(|e| {
            ClientError::Protocol(sanitize(&format!(
                "`{method}` result has the wrong shape: {e}"
            )))
        })
    }

    pub async fn auth_status(&self) -> Result<AuthStatus, ClientError> {
        self.call(methods::AUTH_STATUS, &NoParams {}).await
    }

    pub async fn query_models(&self) -> Result<QueryModelsResult, ClientError> {
        self.call(methods::CONFIG_QUERY_MODELS, &NoParams {}).await
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call::<_, serde_json::Value>(methods::PING, &NoParams {})
            .await
            .map(drop)
    }

    /// Sends `chat/ask`, waits for the accept (`Rejected` if not accepted) and returns the
    /// stream of this chat's events. The chat is registered before the ask is sent, so no
    /// event can outrun its route.
    pub async fn chat(&self, params: ChatAskParams) -> Result<ChatStream, ClientError> {
        let state = self.state();
        let (tx, rx) = mpsc::channel(CHAT_EVENT_BUFFER);
        state
            .register_chat(&params.request_id, &params.session_id, tx)
            .map_err(not_sent)?;
        let mut guard = ChatGuard::new(
            state.clone(),
            params.request_id.clone(),
            params.session_id.clone(),
        );
        // If this future is dropped or times out, Lingma may have started the chat anyway.
        guard.stop_on_drop = true;
        match self
            .call::<_, ChatAskResult>(methods::CHAT_ASK, &params)
            .await
        {
            Ok(result) if result.accepted() => Ok(ChatStream::new(self.clone(), guard, rx)),
            Ok(result) => {
                guard.stop_on_drop = false;
                let why = if result.error_message.is_empty() {
                    "chat/ask not accepted".to_owned()
                } else {
                    sanitize(&result.error_message)
                };
                Err(ClientError::Rejected(why))
            }
            Err(e @ ClientError::Timeout { .. }) => Err(e),
            Err(e) => {
                guard.stop_on_drop = false;
                Err(e)
            }
        }
    }

    /// Chat streams whose routing entry is live (not yet finished, failed or dropped).
    pub fn open_chats(&self) -> usize {
        self.state().open_chats()
    }

    /// Calls waiting for a response.
    pub fn pending_calls(&self) -> usize {
        self.state().pending_calls()
    }

    /// Frames that could not be parsed since the connection opened.
    pub fn protocol_errors(&self) -> u64 {
        self.state().protocol_errors.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.state().stop.is_cancelled()
    }

    /// Resolves once the connection is gone and every chat and call has been told.
    pub async fn closed(&self) {
        self.state().gone.cancelled().await;
    }

    /// Close the connection: open chats and pending calls get `Closed`.
    pub fn close(&self) {
        self.state().close_requested.store(true, Ordering::Release);
        self.state().stop.cancel();
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<ServerEvent> {
        self.state().events.subscribe()
    }
}

/// Why a request that never left failed: `Closed` after `close()`, `NotSent` after a
/// disconnect (and any refusal to register, e.g. a duplicate id, as it was).
fn not_sent(reason: ClientError) -> ClientError {
    match reason {
        ClientError::ConnectionLost => ClientError::NotSent,
        other => other,
    }
}

impl std::fmt::Debug for LingmaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LingmaClient")
            .field("closed", &self.is_closed())
            .field("open_chats", &self.open_chats())
            .finish_non_exhaustive()
    }
}
