//! The simulator harness (start the real `lingma-sim` binary, control API) and the helpers
//! the tests share. `pub use` makes this module their prelude.

pub use futures_util::StreamExt;
pub use lingma_protocol::wire::{AskExtra, ChatAskParams, ModelConfig};
pub use lingma_protocol::{ChatEvent, ChatStream, ClientError, ClientOptions, LingmaClient};
pub use std::time::{Duration, Instant};
use test_support::{ChildProcess, ProcessBuilder, free_port, wait_for_port};

pub const CONTROL_TOKEN: &str = "client-test-control-token";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Sim {
    pub process: ChildProcess,
    pub ws_port: u16,
    pub http_port: u16,
    _work_dir: tempfile::TempDir,
}

impl Sim {
    pub async fn start(extra: &[&str]) -> Sim {
        let bin = tokio::task::spawn_blocking(|| test_support::binary("lingma-sim", "lingma-sim"))
            .await
            .expect("build lingma-sim");
        let work_dir = tempfile::tempdir().expect("temp workDir");
        let (ws_port, http_port) = (free_port(), free_port());
        let process = ProcessBuilder::new("lingma-sim", bin)
            .arg("start")
            .arg("--workDir")
            .arg(work_dir.path())
            .args(["--socketPort", &ws_port.to_string()])
            .args(["--httpPort", &http_port.to_string()])
            .args(["--logged-in", "--control-token", CONTROL_TOKEN])
            .args(extra)
            .spawn()
            .expect("spawn lingma-sim");
        let sim = Sim {
            process,
            ws_port,
            http_port,
            _work_dir: work_dir,
        };
        wait_for_port(ws_port, WAIT)
            .await
            .expect("lingma-sim WebSocket listens");
        wait_for_port(http_port, WAIT)
            .await
            .expect("lingma-sim HTTP listens");
        sim
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.ws_port)
    }

    pub async fn client(&self, opts: ClientOptions) -> LingmaClient {
        let client = LingmaClient::connect(&self.url(), opts)
            .await
            .expect("connect to lingma-sim");
        let init = client
            .initialize("file:///tmp/client-test")
            .await
            .expect("initialize");
        assert_eq!(init.server_info.name, "lingma-sim");
        client
    }

    /// Switch the fault at run time through the control API.
    pub async fn set_fault(&self, fault: &str, times: Option<u32>) {
        let mut body = serde_json::json!({ "fault": fault });
        if let Some(n) = times {
            body["times"] = n.into();
        }
        let status = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/control/fault", self.http_port))
            .bearer_auth(CONTROL_TOKEN)
            .json(&body)
            .timeout(WAIT)
            .send()
            .await
            .expect("control API reachable")
            .status();
        assert!(status.is_success(), "POST /control/fault -> {status}");
    }
}

pub fn ask(request_id: &str, session_id: &str, question: &str, is_reply: bool) -> ChatAskParams {
    ChatAskParams {
        request_id: request_id.into(),
        session_id: session_id.into(),
        question_text: question.into(),
        chat_task: "FREE_INPUT".into(),
        is_reply,
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

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Everything a finished chat produced.
#[derive(Debug, Default)]
pub struct Transcript {
    pub deltas: String,
    pub answers: usize,
    pub foreign: usize,
    pub events: Vec<&'static str>,
    pub finish: Option<lingma_protocol::wire::ChatFinish>,
    pub error: Option<ClientError>,
}

pub async fn collect(mut stream: ChatStream) -> Transcript {
    let own = stream.request_id().to_owned();
    let mut t = Transcript::default();
    loop {
        let item = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("chat stream stalled");
        match item {
            None => break,
            Some(Err(e)) => t.error = Some(e),
            Some(Ok(ChatEvent::Answer(a))) => {
                t.events.push("answer");
                t.answers += 1;
                t.foreign += usize::from(a.request_id != own);
                t.deltas.push_str(&a.text);
            }
            Some(Ok(ChatEvent::Finish(f))) => {
                t.events.push("finish");
                t.foreign += usize::from(f.request_id != own);
                t.finish = Some(f);
            }
            Some(Ok(ChatEvent::Step(s))) => {
                t.events.push("step");
                t.foreign += usize::from(s.request_id != own);
            }
            Some(Ok(ChatEvent::Think(_))) => t.events.push("think"),
            Some(Ok(ChatEvent::Title(_))) => t.events.push("title"),
        }
    }
    t
}

impl Sim {
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/control/stats", self.http_port))
            .bearer_auth(CONTROL_TOKEN)
            .timeout(WAIT)
            .send()
            .await
            .expect("control API reachable")
            .json()
            .await
            .expect("stats JSON")
    }
}

/// Open `n` chats that are still streaming, for the mid-stream faults.
pub async fn open_streams(client: &LingmaClient, n: usize) -> (Vec<ChatStream>, Vec<ClientError>) {
    let mut streams = Vec::new();
    let mut refused = Vec::new();
    for i in 0..n {
        match client
            .chat(ask(&uuid(), &uuid(), &format!("chat {i}"), false))
            .await
        {
            Ok(s) => streams.push(s),
            Err(e) => refused.push(e),
        }
    }
    (streams, refused)
}

pub async fn assert_all_connection_lost(
    client: &LingmaClient,
    streams: Vec<ChatStream>,
    refused: Vec<ClientError>,
) {
    assert!(
        !streams.is_empty(),
        "no chat was open when the fault struck"
    );
    for e in refused {
        assert_eq!(e, ClientError::ConnectionLost);
    }
    for stream in streams {
        let t = collect(stream).await;
        assert_eq!(t.error, Some(ClientError::ConnectionLost), "{t:?}");
        assert!(t.finish.is_none());
    }
    tokio::time::timeout(WAIT, client.closed())
        .await
        .expect("closed() resolves");
    assert!(client.is_closed());
    assert_eq!(client.open_chats(), 0);
    assert_eq!(client.pending_calls(), 0);
    assert_eq!(client.ping().await, Err(ClientError::NotSent));
}
