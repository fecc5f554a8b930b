//! What every fault test checks after its fault: a stack of the real binaries (simulators,
//! sidecars, one gateway) with known secrets, and the invariants "every request got a result
//! or an OpenAI error", "gauges back to 0", "no growth across rounds", "no secret in a log".

use serde_json::Value;
use std::time::{Duration, Instant};
use test_support::Binaries;
use test_support::openai::{self, ChatOutcome, StreamOutcome};
pub use test_support::stack::{Footprint, footprint};
use test_support::stack::{Gateway, GatewayOptions, Sidecar, SidecarOptions, Sim, SimOptions};

/// The client API key every request uses; must never appear in a log.
pub const API_KEY: &str = "sk-faultsuite-SECRET-7f3a9c2e41d8";
/// A wrong key clients try; also a secret as far as logs go.
pub const WRONG_KEY: &str = "sk-faultsuite-WRONG-b61e0d93aa47";

/// How a stack is built.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub sidecars: usize,
    pub sim: SimOptions,
    pub sidecar_concurrency: u32,
    pub sidecar_env: Vec<(String, String)>,
    pub sidecar_log_level: String,
    pub gateway: GatewayOptions,
}

impl Default for StackSpec {
    fn default() -> Self {
        Self {
            sidecars: 1,
            sim: SimOptions::default(),
            sidecar_concurrency: 64,
            // Short deadlines, so hangs end within a test's time.
            sidecar_env: vec![
                ("LINGMA_CHAT_IDLE_TIMEOUT_SEC".into(), "3".into()),
                ("LINGMA_RPC_TIMEOUT".into(), "3".into()),
                // Short account pauses (rate limited, out of quota), so an instance whose
                // account met a limit is back within a test's time.
                ("SIDECAR_QUOTA_PAUSE_SEC".into(), "1".into()),
            ],
            sidecar_log_level: "debug".to_owned(),
            gateway: GatewayOptions {
                max_in_flight: 0,
                api_keys: API_KEY.to_owned(),
                log_level: "debug".to_owned(),
                ..GatewayOptions::default()
            },
        }
    }
}

pub struct Stack {
    pub sims: Vec<Sim>,
    pub sidecars: Vec<Sidecar>,
    pub gateway: Gateway,
    pub http: reqwest::Client,
}

impl Stack {
    pub async fn start(spec: StackSpec) -> Self {
        let t = Instant::now();
        let bins = Binaries::debug();
        eprintln!("binaries ready in {:?}", t.elapsed());
        let mut sims = Vec::new();
        let mut sidecars: Vec<Sidecar> = Vec::new();
        let token = SidecarOptions::default().token;
        for i in 0..spec.sidecars {
            let sim = Sim::start(&bins.sim, spec.sim.clone())
                .await
                .expect("simulator starts");
            let sidecar = Sidecar::start(
                &bins.sidecar,
                &sim,
                SidecarOptions {
                    name: format!("sidecar-{i}"),
                    token: token.clone(),
                    max_concurrent_chats: spec.sidecar_concurrency,
                    log_level: spec.sidecar_log_level.clone(),
                    extra_env: spec.sidecar_env.clone(),
                    ..SidecarOptions::default()
                },
            )
            .await
            .expect("sidecar becomes ready");
            sims.push(sim);
            sidecars.push(sidecar);
        }
        let refs: Vec<&Sidecar> = sidecars.iter().collect();
        let options = spec.gateway.in_front_of(&refs);
        let gateway = Gateway::start(&bins.gateway, options)
            .await
            .expect("gateway becomes ready");
        Self {
            sims,
            sidecars,
            gateway,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    pub async fn chat(&self, body: &Value) -> ChatOutcome {
        openai::post_chat(&self.http, &self.gateway.chat_url(), Some(API_KEY), body)
            .await
            .expect("the gateway answers over HTTP")
    }

    pub async fn stream(&self, body: &Value) -> StreamOutcome {
        openai::post_stream(
            &self.http,
            &self.gateway.chat_url(),
            Some(API_KEY),
            body,
            Instant::now(),
        )
        .await
        .expect("the gateway answers over HTTP")
    }

    /// A streaming call on its own task (to hold several open at once).
    pub fn spawn_stream(
        &self,
        body: Value,
    ) -> tokio::task::JoinHandle<anyhow::Result<StreamOutcome>> {
        let (http, url) = (self.http.clone(), self.gateway.chat_url());
        tokio::spawn(async move {
            openai::post_stream(&http, &url, Some(API_KEY), &body, Instant::now()).await
        })
    }

    /// A request that must succeed now (after a fault was cleared), retried while the
    /// stack recovers (reconnects) for up to `within`.
    pub async fn eventually_ok(&self, within: Duration) -> ChatOutcome {
        let deadline = Instant::now() + within;
        loop {
            let out = self.chat(&user("are you back?")).await;
            if out.status == 200 || Instant::now() >= deadline {
                assert_eq!(
                    out.status, 200,
                    "no recovery within {within:?}: {:?}",
                    out.body
                );
                return out;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until the gateway's in-flight and queued gauges and every sidecar's open-stream
    /// gauge are 0 (polled, bounded).
    pub async fn assert_quiescent(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.gauges().await {
                Ok(g) if g.iter().all(|(_, v)| *v == 0.0) => return,
                Ok(g) => last = format!("{g:?}"),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gauges did not return to 0 within 15 s: {last}");
    }

    async fn gauges(&self) -> anyhow::Result<Vec<(String, f64)>> {
        let gm = self.gateway.metrics().await?;
        let mut out = vec![
            (
                "gateway_in_flight".to_owned(),
                gm.sum("gateway_in_flight").unwrap_or(f64::NAN),
            ),
            (
                "gateway_queued".to_owned(),
                gm.sum("gateway_queued").unwrap_or(f64::NAN),
            ),
        ];
        for s in &self.sidecars {
            let sm = s.metrics().await?;
            out.push((
                format!("{} sidecar_open_streams", s.options.name),
                sm.sum("sidecar_open_streams").unwrap_or(f64::NAN),
            ));
        }
        Ok(out)
    }

    /// No secret in the output of any process of the stack.
    pub fn assert_no_secrets(&self) {
        let token = &self.gateway.options.sidecar_token;
        let mut logs = vec![("gateway".to_owned(), self.gateway.output())];
        logs.extend(
            self.sidecars
                .iter()
                .map(|s| (s.options.name.clone(), s.output())),
        );
        logs.extend(
            self.sims
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("sim-{i}"), s.output())),
        );
        for (name, log) in logs {
            for secret in [API_KEY, WRONG_KEY, token.as_str()] {
                assert!(!secret.is_empty());
                assert!(
                    !log.contains(secret),
                    "{name}'s log contains a secret ({}...)",
                    &secret[..8]
                );
            }
        }
    }

    /// Footprint of the gateway and each sidecar.
    pub fn footprints(&self) -> Vec<(String, Option<Footprint>)> {
        let mut out = vec![("gateway".to_owned(), footprint(self.gateway.pid()))];
        out.extend(
            self.sidecars
                .iter()
                .map(|s| (s.options.name.clone(), footprint(s.pid()))),
        );
        out
    }
}

/// A one-message chat body.
pub fn user(text: &str) -> Value {
    openai::chat_body(&[("user", text)], false, None)
}

/// A one-message streaming chat body.
pub fn user_stream(text: &str) -> Value {
    openai::chat_body(&[("user", text)], true, None)
}

/// A non-streaming call ended in a result (200 with an answer) or an OpenAI error (>= 400
/// with `{"error":{"message","type",...}}`).
pub fn assert_result_or_error(out: &ChatOutcome, what: &str) {
    if out.status == 200 {
        assert!(
            out.content().is_some(),
            "{what}: 200 without an answer: {}",
            out.body
        );
    } else {
        assert!(
            out.status >= 400,
            "{what}: unexpected status {}",
            out.status
        );
        assert!(
            out.is_openai_error(),
            "{what}: {} without an OpenAI error body: {}",
            out.status,
            out.body
        );
    }
}

/// A streaming call ended in a complete answer ([DONE]) or an OpenAI error (as the body of
/// an error status or as an SSE error event).
pub fn assert_stream_result_or_error(out: &StreamOutcome, what: &str) {
    match &out.error {
        Some(err) => assert!(
            openai::is_openai_error(err),
            "{what}: error without the OpenAI shape (status {}): {err}",
            out.status
        ),
        None => {
            assert_eq!(
                out.status, 200,
                "{what}: status {} without an error body",
                out.status
            );
            assert!(
                out.done,
                "{what}: stream ended without [DONE] or an error event"
            );
        }
    }
}

/// Whether two footprints show growth beyond noise: more than `rss_slack` bytes of RSS, or
/// more open files or threads than `count_slack`.
pub fn assert_no_growth(
    name: &str,
    before: Footprint,
    after: Footprint,
    rss_slack: u64,
    count_slack: u64,
) {
    assert!(
        after.rss_bytes <= before.rss_bytes + rss_slack,
        "{name}: RSS grew from {} to {} KiB across rounds",
        before.rss_bytes / 1024,
        after.rss_bytes / 1024
    );
    assert!(
        after.fds <= before.fds + count_slack,
        "{name}: open files grew from {} to {}",
        before.fds,
        after.fds
    );
    assert!(
        after.threads <= before.threads + count_slack,
        "{name}: threads grew from {} to {}",
        before.threads,
        after.threads
    );
}
