//! Real processes for the gateway's integration tests: `lingma-sim` (a test double of
//! Lingma), `sidecar` attached to it, and `gateway`, each on free 127.0.0.1 ports.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use test_support::{
    ChildProcess, ProcessBuilder, binary, free_port, wait_for_http, wait_for_port, wait_until,
};

pub const API_KEY: &str = "sk-gateway-it-3f9a";
pub const SIDECAR_TOKEN: &str = "sidecar-it-token-77c2";
pub const CONTROL_TOKEN: &str = "sim-it-control";
/// The gateway's admin routes (`/metrics`, `/internal/*`) take this, never a client key.
pub const METRICS_TOKEN: &str = "metrics-it-token-41d0";
pub const WAIT: Duration = Duration::from_secs(20);

pub struct SimProc {
    pub proc: ChildProcess,
    pub ws_port: u16,
    pub http_port: u16,
    _dir: tempfile::TempDir,
    pub work_dir: PathBuf,
}

pub struct SidecarProc {
    pub name: String,
    pub proc: ChildProcess,
    pub port: u16,
    pub sim: SimProc,
}

pub struct GatewayProc {
    pub proc: ChildProcess,
    pub port: u16,
    pub http: reqwest::Client,
}

pub async fn start_sim(extra: &[&str]) -> SimProc {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ws_port, http_port) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "start".into(),
        "--workDir".into(),
        dir.path().display().to_string(),
        "--socketPort".into(),
        ws_port.to_string(),
        "--httpPort".into(),
        http_port.to_string(),
        "--logged-in".into(),
        "--control-token".into(),
        CONTROL_TOKEN.into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let proc = ProcessBuilder::new("lingma-sim", binary("lingma-sim", "lingma-sim"))
        .args(args)
        .spawn()
        .expect("spawn lingma-sim");
    wait_for_port(ws_port, WAIT)
        .await
        .expect("lingma-sim listens");
    SimProc {
        proc,
        ws_port,
        http_port,
        work_dir: dir.path().to_path_buf(),
        _dir: dir,
    }
}

pub async fn start_sidecar(name: &str, sim_extra: &[&str]) -> SidecarProc {
    start_sidecar_with(name, sim_extra, &[]).await
}

/// A sidecar with extra environment (set after the defaults, so it can override them).
pub async fn start_sidecar_with(
    name: &str,
    sim_extra: &[&str],
    env: &[(&str, &str)],
) -> SidecarProc {
    let sim = start_sim(sim_extra).await;
    let port = free_port();
    let mut builder = ProcessBuilder::new(name, binary("sidecar", "sidecar"))
        .env("SIDECAR_HOST", "127.0.0.1")
        .env("SIDECAR_PORT", port.to_string())
        .env("SIDECAR_NAME", name)
        .env("SIDECAR_TOKEN", SIDECAR_TOKEN)
        .env("LINGMA_ATTACH", "true")
        .env("LINGMA_SOCKET_PORT", sim.ws_port.to_string())
        .env("LINGMA_HTTP_PORT", sim.http_port.to_string())
        .env("LINGMA_WORK_DIR", sim.work_dir.display().to_string())
        .env("LINGMA_MAX_CONCURRENT_CHATS", "4")
        .env("SIDECAR_DRAIN_TIMEOUT_SEC", "2");
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let proc = builder.spawn().expect("spawn sidecar");
    wait_for_http(&format!("http://127.0.0.1:{port}/readyz"), 200, WAIT)
        .await
        .expect("sidecar ready");
    SidecarProc {
        name: name.to_owned(),
        proc,
        port,
        sim,
    }
}

/// A gateway over `sidecars` (named URLs, may include unreachable ones) plus `env`.
pub async fn start_gateway(sidecars: &str, env: &[(&str, &str)]) -> GatewayProc {
    let port = free_port();
    let mut builder = ProcessBuilder::new("gateway", binary("gateway", "gateway"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("API_KEYS", API_KEY)
        .env("METRICS_TOKEN", METRICS_TOKEN)
        .env("SIDECAR_TOKEN", SIDECAR_TOKEN)
        .env("GATEWAY_SIDECARS", sidecars)
        .env("GATEWAY_MAX_IN_FLIGHT", "0")
        .env("LOG_FORMAT", "json");
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let proc = builder.spawn().expect("spawn gateway");
    wait_for_http(&format!("http://127.0.0.1:{port}/healthz"), 200, WAIT)
        .await
        .expect("gateway up");
    GatewayProc {
        proc,
        port,
        http: reqwest::Client::new(),
    }
}

pub fn sidecar_list(sidecars: &[&SidecarProc]) -> String {
    sidecars
        .iter()
        .map(|s| format!("{}=ws://127.0.0.1:{}", s.name, s.port))
        .collect::<Vec<_>>()
        .join(",")
}

impl GatewayProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(API_KEY)
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("POST /v1/chat/completions")
    }

    /// GET an admin route (`/internal/*`) with the metrics token.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(METRICS_TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text")
    }

    /// Wait until the gateway reports `n` usable sidecars.
    pub async fn wait_usable(&self, n: usize) {
        wait_until(WAIT, || async {
            let stats = self.get_json("/internal/stats").await;
            stats["pool"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|s| s["state"] == "usable").count())
                == n
        })
        .await
        .expect("sidecars usable");
    }

    pub async fn sidecar_state(&self, name: &str) -> String {
        let stats = self.get_json("/internal/stats").await;
        stats["pool"]
            .as_array()
            .and_then(|p| p.iter().find(|s| s["name"] == name))
            .map(|s| s["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }
}

impl SimProc {
    pub async fn set_fault(&self, fault: &str, times: Option<u32>) {
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/control/fault", self.http_port))
            .bearer_auth(CONTROL_TOKEN)
            .json(&json!({"fault": fault, "times": times}))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("POST /control/fault");
        assert!(resp.status().is_success(), "set fault: {}", resp.status());
    }

    pub async fn stats(&self) -> Value {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/control/stats", self.http_port))
            .bearer_auth(CONTROL_TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET /control/stats")
            .json()
            .await
            .expect("stats JSON")
    }
}

pub fn user(text: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
}

pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Value of a sample line (`name{labels} value`) in a Prometheus text.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}
