//! Virtual keys against real processes (`lingma-sim`, `sidecar`, `gateway` on 127.0.0.1):
//! a keys file with limits, 429 with an honest `Retry-After` while another key is served,
//! 403 for a model outside a key's list in both API shapes, and fair turns between keys in
//! a saturated pool.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const LIGHT: &str = "sk-light-7d1e";
const HEAVY: &str = "sk-heavy-52ab";
const CAPPED: &str = "sk-capped-a3c9";
const METERED: &str = "sk-metered-0f4d";
const NARROW: &str = "sk-narrow-9be2";
const METERED_RPM: u32 = 20;

fn keys_file(dir: &tempfile::TempDir) -> String {
    // heavy is given by its digest, as a Secret would hold it.
    let heavy_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(HEAVY.as_bytes()));
    let text = json!({"keys": [
        {"name": "light", "key": LIGHT},
        {"name": "heavy", "key_sha256": heavy_digest},
        {"name": "capped", "key": CAPPED, "max_concurrent": 1},
        {"name": "metered", "key": METERED, "requests_per_minute": METERED_RPM},
        {"name": "narrow", "key": NARROW, "models": ["gpt-4o"]},
    ]});
    let path = dir.path().join("keys.json");
    std::fs::write(&path, text.to_string()).expect("write keys file");
    path.display().to_string()
}

/// One capacity-1 sidecar whose chats take about `chat_ms`, and a gateway with the keys
/// file (plus `env`).
async fn stack(
    chat_ms: u64,
    env: &[(&str, &str)],
) -> (SidecarProc, GatewayProc, tempfile::TempDir) {
    let chunk_delay = (chat_ms / 5).to_string();
    let sidecar = start_sidecar_with(
        "s1",
        &["--chunks", "5", "--chunk-delay-ms", &chunk_delay],
        &[("LINGMA_MAX_CONCURRENT_CHATS", "1")],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = keys_file(&dir);
    let mut all: Vec<(&str, &str)> = vec![("API_KEYS_FILE", &file)];
    all.extend_from_slice(env);
    let gw = start_gateway(&sidecar_list(&[&sidecar]), &all).await;
    gw.wait_usable(1).await;
    (sidecar, gw, dir)
}

fn body(text: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
}

async fn chat_as(gw: &GatewayProc, key: &str, body: &Value) -> reqwest::Response {
    gw.http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("POST /v1/chat/completions")
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    header(resp, "retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After missing: {:?}", resp.headers()))
}

#[tokio::test]
async fn models_outside_a_key_are_403_and_rpm_answers_429_until_the_next_cell() {
    let (_s, gw, _dir) = stack(0, &[]).await;

    // OpenAI shape.
    let resp = chat_as(
        &gw,
        NARROW,
        &json!({"model": "o3", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "model_not_allowed", "{v}");
    assert_eq!(v["error"]["param"], "model");
    // Anthropic shape, same key as x-api-key.
    let resp = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", NARROW)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("POST /v1/messages");
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("permission_error")),
        "{v}"
    );
    // The allowed model is served.
    assert_eq!(chat_as(&gw, NARROW, &body("allowed")).await.status(), 200);

    // requests_per_minute: a burst of a minute's worth, then 429 with the limiter's time.
    for i in 0..METERED_RPM {
        let resp = chat_as(&gw, METERED, &body(&format!("rpm {i}"))).await;
        assert_eq!(resp.status(), 200, "request {i} within the limit");
    }
    let refused = chat_as(&gw, METERED, &body("one too many")).await;
    assert_eq!(refused.status(), 429);
    let wait = retry_after(&refused);
    assert_eq!(
        wait,
        u64::from(60 / METERED_RPM),
        "one cell every 60/rpm seconds"
    );
    let v: Value = refused.json().await.expect("json");
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("rate_limit_error"), Some("key_rate_limit"))
    );
    // Another key is not affected.
    assert_eq!(chat_as(&gw, LIGHT, &body("other key")).await.status(), 200);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        chat_as(&gw, METERED, &body("after the wait"))
            .await
            .status(),
        200
    );

    let metrics = gw.metrics().await;
    assert!(
        sample(
            &metrics,
            r#"gateway_key_rate_limited_total{key="metered",reason="rpm"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"gateway_key_requests_total{key="narrow",outcome="forbidden"}"#
        ) >= 2.0
    );
    assert!(!metrics.contains(METERED), "a key never appears in metrics");
}

#[tokio::test]
async fn a_key_over_its_concurrency_gets_429_while_another_key_is_served_and_keys_take_turns() {
    let (_s, gw, _dir) = stack(400, &[]).await;

    // capped may run one chat at once.
    let held = {
        let (http, url) = (gw.http.clone(), gw.url("/v1/chat/completions"));
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(CAPPED)
                .json(&body("long one"))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let refused = chat_as(&gw, CAPPED, &body("second at once")).await;
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused) >= 1);
    let v: Value = refused.json().await.expect("json");
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("rate_limit_error"), Some("key_concurrency_limit")),
        "{v}"
    );
    let other = chat_as(&gw, LIGHT, &body("another key meanwhile")).await;
    assert_eq!(other.status(), 200, "another key is served");
    assert!(
        !header(&other, "x-lingma-queue-wait-ms").is_empty(),
        "queue wait header"
    );
    assert_eq!(held.await.expect("join").expect("send"), 200);

    // Fairness: heavy floods the capacity-1 pool; light's requests still get turns.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (http, url) = (gw.http.clone(), gw.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(HEAVY)
                .json(&body(&format!("flood {i}")))
                .send()
                .await;
            (
                "heavy",
                r.map(|r| r.status().as_u16()).unwrap_or(0),
                started.elapsed(),
            )
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..2 {
        let (http, url) = (gw.http.clone(), gw.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(LIGHT)
                .json(&body(&format!("light {i}")))
                .send()
                .await;
            (
                "light",
                r.map(|r| r.status().as_u16()).unwrap_or(0),
                started.elapsed(),
            )
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.expect("join"));
    }
    assert!(done.iter().all(|(_, status, _)| *status == 200), "{done:?}");
    let light_last = done
        .iter()
        .filter(|d| d.0 == "light")
        .map(|d| d.2)
        .max()
        .expect("light");
    let heavy_after = done
        .iter()
        .filter(|d| d.0 == "heavy" && d.2 > light_last)
        .count();
    // FIFO would finish light after the whole backlog; DRR alternates the turns.
    assert!(
        heavy_after >= 3,
        "light finished behind the backlog: {done:?}"
    );
    let metrics = gw.metrics().await;
    assert!(
        sample(
            &metrics,
            r#"gateway_key_requests_total{key="heavy",outcome="admitted"}"#
        ) >= 8.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            r#"gateway_key_rate_limited_total{key="capped",reason="concurrency"}"#
        ) >= 1.0
    );
    assert!(metrics.contains(r#"gateway_key_queue_wait_seconds_count{key="light"}"#));
}

#[tokio::test]
async fn retry_after_follows_the_queue_position() {
    let (_s, gw, _dir) = stack(1000, &[("GATEWAY_MAX_QUEUED", "4")]).await;
    // Learn the service time (about 1 s a chat).
    assert_eq!(chat_as(&gw, LIGHT, &body("warm up")).await.status(), 200);

    // heavy takes the slot and fills the queue.
    let mut flood = Vec::new();
    for i in 0..5 {
        let (http, url) = (gw.http.clone(), gw.url("/v1/chat/completions"));
        flood.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(HEAVY)
                .json(&body(&format!("fill {i}")))
                .send()
                .await
                .map(|r| r.status())
        }));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let heavy = chat_as(&gw, HEAVY, &body("heavy again")).await;
    let light = chat_as(&gw, LIGHT, &body("light now")).await;
    assert_eq!(
        (heavy.status().as_u16(), light.status().as_u16()),
        (429, 429)
    );
    let (heavy_wait, light_wait) = (retry_after(&heavy), retry_after(&light));
    // heavy's next request is 5th in line (about 5 s); light's would be 2nd (DRR turn).
    assert!(
        (3..=8).contains(&heavy_wait),
        "heavy Retry-After {heavy_wait}"
    );
    assert!(
        light_wait < heavy_wait,
        "light {light_wait} vs heavy {heavy_wait}"
    );
    let v: Value = heavy.json().await.expect("json");
    assert_eq!(v["error"]["code"], "queue_full");
    for f in flood {
        assert_eq!(f.await.expect("join").expect("send"), 200);
    }
}
