//! Shared pieces of the sidecar's integration tests: the real `sidecar` binary (the
//! simulator, `lingma-sim`, comes from `test_support::stack`), and a small gateway-side
//! client of the mux protocol over tokio-tungstenite.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use mux_protocol::{
    ChatMessage, ChatRequest, ClientMessage, ErrorKind, FinishReason, MUX_PATH, Role, SUBPROTOCOL,
    ServerMessage, SessionOutcome, SidecarStatus, StreamId, Usage,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_support::{ChildProcess, ProcessBuilder, binary, free_port, wait_for_port, wait_until};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const TOKEN: &str = "sidecar-test-token-5f1e9c";
/// Control token of the simulators these tests start (also handed to supervised ones).
#[allow(unused_imports)] // not every test file uses every re-export
pub use test_support::stack::SIM_CONTROL_TOKEN as CONTROL_TOKEN;
#[allow(unused_imports)]
pub use test_support::stack::{Sim, SimControl};
pub const WAIT: Duration = Duration::from_secs(20);

pub fn m(role: Role, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.to_owned(),
    }
}

pub fn request(scope: &str, messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        request_id: format!("test-{}", uuid::Uuid::new_v4()),
        model: None,
        messages,
        scope: scope.to_owned(),
        session_reuse: true,
        queue_timeout_ms: 10_000,
        wait_for_slot: true,
    }
}

/// A simulator whose login is an HTML form that accepts only `username` / `password`.
pub async fn form_login_sim(username: &str, password: &str) -> Sim {
    Sim::start_with(&[
        "--login-mode",
        "form",
        "--accept-username",
        username,
        "--accept-password",
        password,
    ])
    .await
}

// ---------------------------------------------------------------------------------------
// The sidecar
// ---------------------------------------------------------------------------------------

pub struct Sidecar {
    pub proc: ChildProcess,
    pub port: u16,
    http: reqwest::Client,
}

/// Spawn the sidecar with the base settings plus `envs`, and wait until it listens.
pub async fn spawn_sidecar(envs: &[(&str, String)]) -> Sidecar {
    let port = free_port();
    let mut builder = ProcessBuilder::new("sidecar", binary("sidecar", "sidecar"))
        .env("SIDECAR_HOST", "127.0.0.1")
        .env("SIDECAR_PORT", port.to_string())
        .env("SIDECAR_NAME", "test-sidecar")
        .env("SIDECAR_TOKEN", TOKEN)
        .env("LOG_LEVEL", "debug")
        .env("LINGMA_STARTUP_TIMEOUT", "20")
        .env("LINGMA_RPC_TIMEOUT", "10")
        .env("SIDECAR_DRAIN_TIMEOUT_SEC", "3");
    for (k, v) in envs {
        builder = builder.env(k, v);
    }
    let proc = builder.spawn().expect("spawn sidecar");
    wait_for_port(port, WAIT).await.expect("sidecar listens");
    Sidecar {
        proc,
        port,
        http: reqwest::Client::new(),
    }
}

impl Drop for Sidecar {
    // SIGTERM first, so a supervised simulator is stopped by the sidecar instead of being
    // orphaned by the SIGKILL of `ChildProcess`'s drop (e.g. when a test fails).
    fn drop(&mut self) {
        if self.proc.is_running() {
            let _ = self.proc.terminate(Duration::from_secs(8));
        }
    }
}

impl Sidecar {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self
            .http
            .get(self.url(path))
            .timeout(Duration::from_secs(5));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("GET sidecar");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self
            .http
            .post(self.url(path))
            .timeout(Duration::from_secs(5));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("POST sidecar");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    pub async fn ready(&self) -> bool {
        self.get("/readyz", None).await.0 == 200
    }

    pub async fn wait_ready(&self) {
        let ok = wait_until(WAIT, || self.ready()).await;
        if ok.is_err() {
            panic!(
                "sidecar not ready: {:?}\n{}",
                self.get("/readyz", None).await,
                self.proc.output()
            );
        }
    }

    /// A metric's value (first series whose line starts with `series`).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics", None).await;
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn wait_metric(&self, series: &str, value: f64) {
        let ok = wait_until(WAIT, || async { self.metric(series).await == value }).await;
        if ok.is_err() {
            panic!(
                "{series} never reached {value}: now {}",
                self.metric(series).await
            );
        }
    }

    pub async fn mux(&self) -> Mux {
        Mux::connect(self.port, Some(TOKEN))
            .await
            .expect("mux connects")
    }
}

// ---------------------------------------------------------------------------------------
// A gateway-side client of the mux protocol
// ---------------------------------------------------------------------------------------

type Routes = Arc<Mutex<HashMap<StreamId, mpsc::UnboundedSender<ServerMessage>>>>;

pub struct Mux {
    out: mpsc::UnboundedSender<Message>,
    routes: Routes,
    pub status: watch::Receiver<Option<SidecarStatus>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

#[derive(Debug, Default)]
pub struct ChatResult {
    pub started: Option<(SessionOutcome, String)>,
    pub content: String,
    pub reasoning: String,
    pub finish: Option<(FinishReason, Usage, String)>,
    pub error: Option<(ErrorKind, String, bool)>,
}

impl ChatResult {
    pub fn ok(&self) -> bool {
        self.finish.is_some() && self.error.is_none()
    }
}

impl Mux {
    pub async fn connect(
        port: u16,
        token: Option<&str>,
    ) -> Result<Mux, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://127.0.0.1:{port}{MUX_PATH}?v=1")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            SUBPROTOCOL.parse().expect("header"),
        );
        if let Some(t) = token {
            req.headers_mut().insert(
                "Authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(SUBPROTOCOL),
            "sub-protocol accepted"
        );
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let (status_tx, status) = watch::channel(None);
        let reader_routes = routes.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let msg: ServerMessage =
                    serde_json::from_str(text.as_str()).expect("valid server message");
                let id = match &msg {
                    ServerMessage::Status(s) => {
                        let _ = status_tx.send(Some(s.clone()));
                        continue;
                    }
                    // Load changes come as `load` since the ownership messages; keep the
                    // last Status's counts current so `wait_status` sees them.
                    ServerMessage::Load(load) => {
                        status_tx.send_modify(|s| {
                            if let Some(s) = s {
                                s.in_flight = load.in_flight;
                                s.queued = load.queued;
                            }
                        });
                        continue;
                    }
                    ServerMessage::Sessions(_) => continue,
                    ServerMessage::Started { id, .. }
                    | ServerMessage::Delta { id, .. }
                    | ServerMessage::Finish { id, .. }
                    | ServerMessage::Error { id, .. } => *id,
                };
                let tx = reader_routes.lock().expect("routes").get(&id).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(msg);
                }
            }
        });
        Ok(Mux {
            out,
            routes,
            status,
            reader,
            writer,
        })
    }

    /// Receive what the sidecar sends for stream `id`.
    pub fn route(&self, id: StreamId) -> mpsc::UnboundedReceiver<ServerMessage> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.lock().expect("routes").insert(id, tx);
        rx
    }

    /// Send a chat; its messages arrive on the returned receiver.
    pub fn start(
        &self,
        id: StreamId,
        request: ChatRequest,
    ) -> mpsc::UnboundedReceiver<ServerMessage> {
        let rx = self.route(id);
        let text = serde_json::to_string(&ClientMessage::Chat { id, request }).expect("json");
        self.out
            .send(Message::Text(text.into()))
            .expect("writer alive");
        rx
    }

    pub fn cancel(&self, id: StreamId) {
        let text = serde_json::to_string(&ClientMessage::Cancel { id }).expect("json");
        self.out
            .send(Message::Text(text.into()))
            .expect("writer alive");
    }

    pub fn send_raw(&self, text: &str) {
        self.out
            .send(Message::Text(text.to_owned().into()))
            .expect("writer alive");
    }

    pub async fn chat(&self, id: StreamId, request: ChatRequest) -> ChatResult {
        let rx = self.start(id, request);
        collect(rx).await
    }

    pub async fn wait_status(&self, pred: impl Fn(&SidecarStatus) -> bool) -> SidecarStatus {
        let mut rx = self.status.clone();
        let got = tokio::time::timeout(WAIT, rx.wait_for(|s| s.as_ref().is_some_and(&pred)))
            .await
            .expect("status in time")
            .expect("connection alive")
            .clone();
        got.expect("status present")
    }
}

/// Read one stream to its end (Finish or Error), bounded in time.
pub async fn collect(mut rx: mpsc::UnboundedReceiver<ServerMessage>) -> ChatResult {
    let mut result = ChatResult::default();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("chat ends in time")
            .expect("stream open");
        match msg {
            ServerMessage::Started {
                session,
                session_id,
                ..
            } => result.started = Some((session, session_id)),
            ServerMessage::Delta {
                content,
                reasoning_content,
                ..
            } => {
                result.content.push_str(content.as_deref().unwrap_or(""));
                result
                    .reasoning
                    .push_str(reasoning_content.as_deref().unwrap_or(""));
            }
            ServerMessage::Finish {
                finish_reason,
                usage,
                session_id,
                ..
            } => {
                result.finish = Some((finish_reason, usage, session_id));
                return result;
            }
            ServerMessage::Error {
                kind,
                message,
                before_output,
                ..
            } => {
                result.error = Some((kind, message, before_output));
                return result;
            }
            ServerMessage::Status(_) | ServerMessage::Sessions(_) | ServerMessage::Load(_) => {}
        }
    }
}

/// Wait for the first delta of a stream (the chat is running upstream).
pub async fn first_delta(rx: &mut mpsc::UnboundedReceiver<ServerMessage>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("delta in time")
            .expect("stream open");
        match msg {
            ServerMessage::Delta { .. } => return,
            ServerMessage::Started { .. } => {}
            other => panic!("expected a delta, got {other:?}"),
        }
    }
}
