//! The scripted peer (a test double of Lingma's side of one WebSocket) and the helpers the
//! scripted-peer tests share. `pub use` makes this module their prelude.

pub use futures_util::{SinkExt, StreamExt};
pub use lingma_protocol::framing::{FrameDecoder, encode};
pub use lingma_protocol::wire::{AskExtra, ChatAskParams, ModelConfig};
pub use lingma_protocol::{ChatEvent, ChatStream, ClientError, ClientOptions, LingmaClient};
pub use serde_json::{Value, json};
pub use std::time::Duration;
pub use tokio::net::{TcpListener, TcpStream};
pub use tokio_tungstenite::WebSocketStream;
pub use tokio_tungstenite::tungstenite::Message;

pub const WAIT: Duration = Duration::from_secs(5);

/// The scripted Lingma side of one connection.
pub struct Peer {
    pub ws: WebSocketStream<TcpStream>,
    decoder: FrameDecoder,
}

impl Peer {
    /// Next JSON-RPC message from the client.
    pub async fn recv(&mut self) -> Value {
        loop {
            if let Some(body) = self.decoder.next_frame().expect("client sent a bad frame") {
                return serde_json::from_str(&body).expect("client sent bad JSON");
            }
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("client sent nothing in time")
                .expect("client closed")
                .expect("read failed");
            if let Message::Text(t) = msg {
                self.decoder.push(t.as_bytes());
            }
        }
    }

    pub async fn recv_method(&mut self, method: &str) -> Value {
        let msg = self.recv().await;
        assert_eq!(msg["method"], method, "unexpected message {msg}");
        msg
    }

    /// One WebSocket text message, sent as is.
    pub async fn send_raw(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("peer send failed");
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_raw(encode(&msg.to_string())).await;
    }

    pub async fn reply(&mut self, request: &Value, result: Value) {
        self.send(json!({"jsonrpc":"2.0","id":request["id"],"result":result}))
            .await;
    }

    /// Answer the next `chat/ask` as accepted; returns its params.
    pub async fn accept_ask(&mut self) -> Value {
        let ask = self.recv_method("chat/ask").await;
        let rid = ask["params"]["requestId"].clone();
        self.reply(&ask, json!({"success":true,"requestId":rid}))
            .await;
        ask["params"].clone()
    }
}

pub fn event(id: i64, method: &str, params: Value) -> String {
    encode(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string())
}

pub fn answer(id: i64, rid: &str, text: &str) -> String {
    event(
        id,
        "chat/answer",
        json!({"requestId":rid,"sessionId":"s-1","text":text}),
    )
}

pub fn finish(id: i64, rid: &str, full: &str) -> String {
    event(
        id,
        "chat/finish",
        json!({"requestId":rid,"sessionId":"s-1","reason":"success","statusCode":200,"fullAnswer":full}),
    )
}

pub async fn start(opts: ClientOptions) -> (LingmaClient, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake")
    });
    let client = LingmaClient::connect(&format!("ws://127.0.0.1:{port}/"), opts)
        .await
        .expect("connect");
    let ws = tokio::time::timeout(WAIT, accept)
        .await
        .expect("accept in time")
        .expect("accept task");
    (
        client,
        Peer {
            ws,
            decoder: FrameDecoder::new(),
        },
    )
}

pub fn ask(rid: &str) -> ChatAskParams {
    ChatAskParams {
        request_id: rid.into(),
        session_id: "s-1".into(),
        question_text: "hi".into(),
        chat_task: "FREE_INPUT".into(),
        source: 1,
        stream: true,
        extra: AskExtra {
            model_config: ModelConfig {
                key: "dashscope_qwen3_coder".into(),
            },
            context: vec![],
        },
        session_type: "chat".into(),
        mode: "chat".into(),
        ..Default::default()
    }
}

pub async fn next(stream: &mut ChatStream) -> Option<Result<ChatEvent, ClientError>> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("stream yielded nothing in time")
}

pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
