//! Shared by the integration tests: run the real `lingma-sim` binary and talk to it over a
//! raw WebSocket with hand-written `Content-Length` frames.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use lingma_protocol::framing::{FrameDecoder, encode};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::{ChildProcess, ProcessBuilder, free_port, wait_for_port};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);
pub const TOKEN: &str = "test-control-token";

pub struct SimProcess {
    pub child: ChildProcess,
    pub ws_port: u16,
    pub http_port: u16,
}

impl SimProcess {
    pub async fn start(work_dir: &Path, extra: &[&str]) -> SimProcess {
        let ws_port = free_port();
        let http_port = free_port();
        let child = ProcessBuilder::new(
            "lingma-sim",
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_lingma-sim")),
        )
        .arg("start")
        .arg(format!("--workDir={}", work_dir.display()))
        .args(["--socketPort", &ws_port.to_string()])
        .args(["--httpPort", &http_port.to_string()])
        .args(["--control-token", TOKEN])
        .args(extra.iter().copied())
        .spawn()
        .expect("spawn lingma-sim");
        wait_for_port(ws_port, WAIT).await.expect("WebSocket port");
        wait_for_port(http_port, WAIT).await.expect("HTTP port");
        SimProcess {
            child,
            ws_port,
            http_port,
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http_port, path)
    }

    pub async fn client(&self) -> RawClient {
        RawClient::connect(self.ws_port).await
    }

    pub async fn stats(&self) -> Value {
        reqwest::Client::new()
            .get(self.http("/control/stats"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET stats")
            .json()
            .await
            .expect("stats JSON")
    }

    pub async fn control(&self, path: &str, body: Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.http(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("POST control")
    }
}

pub fn temp_work_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lingma-sim-test-")
        .tempdir()
        .expect("tempdir")
}

pub fn log_of(work_dir: &Path) -> String {
    std::fs::read_to_string(work_dir.join("logs").join("lingma.log")).unwrap_or_default()
}

/// A hand-rolled client: frames are written by hand, events are acked (unless told not to)
/// and every WebSocket message received is kept for framing assertions.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    decoder: FrameDecoder,
    next_id: i64,
    inbox: VecDeque<Value>,
    pub auto_ack: bool,
    pub messages: Vec<String>,
    /// Frame bodies that were not JSON.
    pub bad_frames: Vec<String>,
}

impl RawClient {
    pub async fn connect(port: u16) -> RawClient {
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/")),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        RawClient {
            ws,
            decoder: FrameDecoder::new(),
            next_id: 1,
            inbox: VecDeque::new(),
            auto_ack: true,
            messages: Vec::new(),
            bad_frames: Vec::new(),
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(WsMessage::text(text))
            .await
            .expect("send message");
    }

    pub async fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_text(encode(&body.to_string())).await;
        id
    }

    /// The next frame (request, response or notification) within `WAIT`; events are acked.
    pub async fn next_frame(&mut self) -> Value {
        self.try_next_frame(WAIT).await.expect("a frame in time")
    }

    /// The next frame, or None at timeout or when the connection ends.
    pub async fn try_next_frame(&mut self, wait: Duration) -> Option<Value> {
        if let Some(v) = self.inbox.pop_front() {
            return Some(v);
        }
        self.read_wire_frame(wait).await
    }

    /// The next frame from the connection itself (not the kept ones).
    pub async fn read_wire_frame(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(body) = self.decoder.next_frame().expect("well-formed framing") {
                let Ok(value) = serde_json::from_str::<Value>(&body) else {
                    self.bad_frames.push(body);
                    continue;
                };
                if self.auto_ack && value.get("method").is_some() && value.get("id").is_some() {
                    let ack = json!({"jsonrpc": "2.0", "id": value["id"], "result": null});
                    // The connection may be gone already (drop and crash faults).
                    let _ = self
                        .ws
                        .send(WsMessage::text(encode(&ack.to_string())))
                        .await;
                }
                return Some(value);
            }
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg.ok()? {
                WsMessage::Text(t) => {
                    self.decoder.push(t.as_bytes());
                    self.messages.push(t.to_string());
                }
                WsMessage::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Send a request and wait for its response (other frames are kept for later).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params).await;
        self.response_to(id).await
    }

    pub async fn response_to(&mut self, id: i64) -> Value {
        let mut others = Vec::new();
        let response = loop {
            let frame = self.read_wire_frame(WAIT).await.expect("a frame in time");
            if frame.get("method").is_none() && frame["id"] == json!(id) {
                break frame;
            }
            others.push(frame);
        };
        self.inbox.extend(others);
        response
    }

    pub async fn login(&mut self) {
        let r = self
            .call(
                "auth/device_login",
                json!({"token": "t", "refreshToken": "r", "expiresIn": "3600", "expireTime": "0", "userId": "42", "username": "dev@example.com"}),
            )
            .await;
        assert_eq!(r["result"]["success"], true, "{r}");
    }

    /// Send a chat/ask and collect every frame of that chat up to and including chat/finish.
    pub async fn chat(
        &mut self,
        request_id: &str,
        session_id: &str,
        question: &str,
        is_reply: bool,
    ) -> Chat {
        let id = self
            .send_request(
                "chat/ask",
                ask_params(request_id, session_id, question, is_reply),
            )
            .await;
        let mut chat = Chat::default();
        loop {
            let frame = self.next_frame().await;
            if frame.get("method").is_none() && frame["id"] == json!(id) {
                chat.ask_response = frame;
                if chat.ask_response.get("error").is_some() {
                    return chat;
                }
                continue;
            }
            if frame["params"]["requestId"] != json!(request_id)
                && frame["method"] != json!("session/title/update")
            {
                continue;
            }
            let method = frame["method"].as_str().unwrap_or_default().to_owned();
            chat.frames.push(frame.clone());
            if method == "chat/finish" {
                chat.finish = frame["params"].clone();
                return chat;
            }
        }
    }
}

pub fn ask_params(request_id: &str, session_id: &str, question: &str, is_reply: bool) -> Value {
    json!({
        "requestId": request_id,
        "sessionId": session_id,
        "questionText": question,
        "chatContext": null,
        "chatTask": "FREE_INPUT",
        "isReply": is_reply,
        "source": 1,
        "stream": true,
        "taskDefinitionType": "",
        "codeLanguage": "",
        "extra": {"modelConfig": {"key": "dashscope_qwen3_coder"}},
        "sessionType": "chat",
        "targetAgent": "",
        "pluginPayloadConfig": {"isEnableAutoMemory": false, "isEnableProjectRule": false, "isEnableAskAgent": false},
        "mode": "chat",
        "shellType": "",
    })
}

#[derive(Default, Debug)]
pub struct Chat {
    pub ask_response: Value,
    pub frames: Vec<Value>,
    pub finish: Value,
}

impl Chat {
    /// Method names in order, steps spelled out (`step:step_start`).
    pub fn shape(&self) -> Vec<String> {
        self.frames
            .iter()
            .map(|f| match f["method"].as_str().unwrap_or_default() {
                "chat/process_step_callback" => {
                    format!("step:{}", f["params"]["step"].as_str().unwrap_or_default())
                }
                "chat/think" => {
                    format!("think:{}", f["params"]["step"].as_str().unwrap_or_default())
                }
                other => other.to_owned(),
            })
            .collect()
    }

    pub fn deltas(&self) -> String {
        self.frames
            .iter()
            .filter(|f| f["method"] == "chat/answer")
            .map(|f| f["params"]["text"].as_str().unwrap_or_default())
            .collect()
    }

    pub fn full_answer(&self) -> String {
        self.finish["fullAnswer"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub fn work_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}
