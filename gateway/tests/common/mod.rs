//! Real processes for the gateway's integration tests: `lingma-sim` (a test double of
//! Lingma), `sidecar` attached to it, and `gateway`, each on free 127.0.0.1 ports, started
//! by `test_support::stack`.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use test_support::stack::{Gateway, GatewayOptions, Sidecar, SidecarOptions, Sim};
use test_support::{binary, wait_until};

pub const API_KEY: &str = "sk-gateway-it-3f9a";
pub const SIDECAR_TOKEN: &str = "sidecar-it-token-77c2";
/// The gateway's admin routes (`/metrics`, `/internal/*`) take this, never a client key.
pub const METRICS_TOKEN: &str = "metrics-it-token-41d0";
pub const WAIT: Duration = Duration::from_secs(20);

/// A sidecar attached to its own simulator.
pub struct SidecarProc {
    pub name: String,
    pub sidecar: Sidecar,
    pub sim: Sim,
}

pub struct GatewayProc {
    pub gateway: Gateway,
    pub port: u16,
    pub http: reqwest::Client,
}

/// A logged-in simulator (`sim_extra`: more of its flags) with a sidecar attached.
pub async fn start_sidecar(name: &str, sim_extra: &[&str]) -> SidecarProc {
    start_sidecar_with(name, sim_extra, &[]).await
}

/// A sidecar with extra environment (set after the defaults, so it can override them).
pub async fn start_sidecar_with(
    name: &str,
    sim_extra: &[&str],
    env: &[(&str, &str)],
) -> SidecarProc {
    let sim = Sim::start_logged_in(sim_extra).await;
    let options = SidecarOptions {
        name: name.to_owned(),
        token: SIDECAR_TOKEN.to_owned(),
        max_concurrent_chats: 4,
        log_level: "info".to_owned(),
        extra_env: std::iter::once(("SIDECAR_DRAIN_TIMEOUT_SEC", "2"))
            .chain(env.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..SidecarOptions::default()
    };
    let sidecar = Sidecar::start(&binary("sidecar", "sidecar"), &sim, options)
        .await
        .expect("sidecar ready");
    SidecarProc {
        name: name.to_owned(),
        sidecar,
        sim,
    }
}

/// A gateway over `sidecars` (`name=ws://...`, comma-separated, may include unreachable
/// ones) plus `env`; waits until it serves (`/healthz`), not until a sidecar is usable.
pub async fn start_gateway(sidecars: &str, env: &[(&str, &str)]) -> GatewayProc {
    let options = GatewayOptions {
        sidecars: sidecars
            .split(',')
            .filter_map(|s| s.split_once('='))
            .map(|(name, url)| (name.to_owned(), url.to_owned()))
            .collect(),
        sidecar_token: SIDECAR_TOKEN.to_owned(),
        max_in_flight: 0,
        api_keys: API_KEY.to_owned(),
        admin_token: METRICS_TOKEN.to_owned(),
        log_level: "info".to_owned(),
        extra_env: std::iter::once(("LOG_FORMAT", "json"))
            .chain(env.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..GatewayOptions::default()
    };
    let mut gateway =
        Gateway::spawn(&binary("gateway", "gateway"), options).expect("spawn gateway");
    gateway.wait_live().await.expect("gateway up");
    GatewayProc {
        port: gateway.port,
        gateway,
        http: reqwest::Client::new(),
    }
}

pub fn sidecar_list(sidecars: &[&SidecarProc]) -> String {
    sidecars
        .iter()
        .map(|s| format!("{}={}", s.name, s.sidecar.ws_url()))
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
