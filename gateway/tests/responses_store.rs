//! The Responses API's stored responses shared through Redis (GATEWAY_RESPONSES_REDIS_URL):
//! a response made on one gateway replica is continued (`previous_response_id`) and read
//! (`GET /v1/responses/{id}`) on another. Real processes: `redis-server` (Debian's package,
//! installed by `.ci/run`), lingma-sim (test double of Lingma) + sidecar, two gateways.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use test_support::{ProcessBuilder, free_port, wait_for_port};

const OTHER_KEY: &str = "sk-other-tenant-9d2e";
const REDIS_PASSWORD: &str = "redis-pass-5be1c7";

fn redis_server(port: u16) -> test_support::ChildProcess {
    ProcessBuilder::new("redis-server", "redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            REDIS_PASSWORD,
        ])
        .spawn()
        .expect("redis-server on PATH (Debian package redis-server)")
}

async fn post(
    gw: &GatewayProc,
    key: &str,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = gw
        .http
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("POST /v1/responses");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.expect("JSON"), headers)
}

async fn get(gw: &GatewayProc, key: &str, id: &str) -> (u16, Value) {
    let resp = gw
        .http
        .get(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(key)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("GET /v1/responses/{id}");
    (resp.status().as_u16(), resp.json().await.expect("JSON"))
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|item| item["content"].as_array().into_iter().flatten())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

#[tokio::test]
async fn a_response_made_on_one_replica_is_continued_and_read_on_another() {
    let redis_port = free_port();
    let mut redis = redis_server(redis_port);
    wait_for_port(redis_port, WAIT)
        .await
        .expect("redis-server listens");
    let url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}");
    let sidecar = start_sidecar("store-0", &[]).await;
    let list = sidecar_list(&[&sidecar]);
    let keys = format!("{API_KEY},{OTHER_KEY}");
    let env = [
        ("GATEWAY_RESPONSES_REDIS_URL", url.as_str()),
        ("API_KEYS", keys.as_str()),
    ];
    let gw_a = start_gateway(&list, &env).await;
    let gw_b = start_gateway(&list, &env).await;
    gw_a.wait_usable(1).await;
    gw_b.wait_usable(1).await;

    let (status, first, _) = post(
        &gw_a,
        API_KEY,
        &json!({"model": "gpt-4o", "input": "remember the word teal"}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().expect("a response id").to_owned();

    // The other replica never saw it: it continues it from Redis.
    let (status, second, headers) = post(
        &gw_b,
        API_KEY,
        &json!({"model": "gpt-4o", "input": "which word?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_response_id"], id.as_str());
    assert_eq!(
        headers
            .get("x-lingma-session")
            .and_then(|v| v.to_str().ok()),
        Some("reused"),
        "the stored turns rebuilt the same conversation, so its session continued"
    );

    let (status, read) = get(&gw_b, API_KEY, &id).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], id.as_str());
    assert_eq!(output_text(&read), output_text(&first));

    // Another key sees nothing, on either replica.
    let (status, err) = get(&gw_b, OTHER_KEY, &id).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "response_not_found");
    let (status, err, _) = post(
        &gw_a,
        OTHER_KEY,
        &json!({"model": "gpt-4o", "input": "steal it", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], "previous_response_not_found");

    // Redis gone: a continuation is a 503 that says so (the response may exist), a new
    // response is still served (only its continuation by id is lost), and both count.
    redis.kill();
    let (status, err, _) = post(
        &gw_b,
        API_KEY,
        &json!({"model": "gpt-4o", "input": "and now?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 503, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("response store")),
        "{err}"
    );
    let (status, fresh, _) = post(&gw_b, API_KEY, &json!({"model": "gpt-4o", "input": "hi"})).await;
    assert_eq!(status, 200, "{fresh}");
    let m = gw_b.metrics().await;
    assert!(sample(&m, "gateway_response_store_errors_total{op=\"get\"}") >= 1.0);
    assert!(sample(&m, "gateway_response_store_errors_total{op=\"insert\"}") >= 1.0);

    for gw in [&gw_a, &gw_b] {
        let log = gw.gateway.output();
        assert!(
            log.contains("\"store\":\"redis\""),
            "the store is named at start"
        );
        assert!(
            !log.contains(REDIS_PASSWORD),
            "the Redis password reached a log"
        );
    }
}
