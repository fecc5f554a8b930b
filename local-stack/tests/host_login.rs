//! The original gateway's operator endpoints over the single-host pool: `/healthz` with
//! per-instance state and ready count, `/internal/auto-login/status` (all instances) and
//! `/internal/auto-login/start?instance=inst-N` (one instance), behind the metrics (admin)
//! token; a client API key gets 403 there. The simulator (LINGMA_BIN) starts logged out in its callback login mode;
//! the sidecar's login driver follows the callback URL when asked to log in.

mod host_support;

use host_support::{API_KEY, HostStack, WAIT, sim_status};
use serde_json::Value;
use std::time::{Duration, Instant};

const METRICS_TOKEN: &str = "host-test-metrics-token";

fn login_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["instance"] == name))
        .unwrap_or_else(|| panic!("{name} missing: {status}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_is_logged_in_through_the_gateway() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stack = HostStack::start(
        dir.path(),
        &[
            ("LINGMA_ACCOUNTS", "alice:pw-alice-xyzzy,bob:pw-bob-xyzzy"),
            ("AUTO_LOGIN_ENABLED", "false"),
            ("METRICS_TOKEN", METRICS_TOKEN),
        ],
        &[],
    );
    stack.wait_up().await;
    let client = reqwest::Client::new();
    let base = stack.base.clone();

    // Both instances come up logged out (auto-login is off): /healthz says so, still 200.
    let deadline = Instant::now() + WAIT;
    let health = loop {
        let resp = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(resp.status(), 200, "liveness needs no ready instance");
        let health: Value = resp.json().await.expect("healthz JSON");
        let states: Vec<_> = health["pool"]
            .as_array()
            .map(|p| p.iter().map(|i| i["login"]["state"].clone()).collect())
            .unwrap_or_default();
        if states.len() == 2 && states.iter().all(|s| s == "logged_out") {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "instances not logged out: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["ready"], 0, "{health}");
    assert_eq!(health["instances"], 2, "{health}");

    // The status needs the metrics (admin) token.
    let status_url = format!("{base}/internal/auto-login/status");
    let anonymous = client.get(&status_url).send().await.expect("status");
    assert_eq!(anonymous.status(), 401);
    let status: Value = client
        .get(&status_url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(login_of(&status, "inst-0")["login"]["state"], "logged_out");
    assert_eq!(login_of(&status, "inst-1")["login"]["state"], "logged_out");

    // A client key never forces a login (the password is submitted for real).
    let by_client = client
        .post(format!("{base}/internal/auto-login/start?instance=inst-1"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("start with a client key");
    assert_eq!(by_client.status(), 403);

    // Unknown instance: 404 with an OpenAI error body.
    let unknown = client
        .post(format!("{base}/internal/auto-login/start?instance=inst-9"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("start unknown");
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.expect("error JSON");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["param"], "instance", "{body}");

    // Start inst-1's login.
    let started = client
        .post(format!("{base}/internal/auto-login/start?instance=inst-1"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("start");
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.expect("start JSON");
    assert_eq!(started["instance"], "inst-1", "{started}");

    let deadline = Instant::now() + WAIT;
    let status = loop {
        let status: Value = client
            .get(&status_url)
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status JSON");
        if login_of(&status, "inst-1")["login"]["state"] == "logged_in" {
            break status;
        }
        assert!(Instant::now() < deadline, "inst-1 not logged in: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        login_of(&status, "inst-0")["login"]["state"],
        "logged_out",
        "only the named instance logs in: {status}"
    );
    assert_eq!(status["logged_in"], 1, "{status}");
    assert_eq!(sim_status(&stack.data.join("inst-1"))["logged_in"], true);
    assert_eq!(sim_status(&stack.data.join("inst-0"))["logged_in"], false);

    // inst-1 now serves chats; /healthz counts it.
    stack
        .wait_pool("inst-1 usable", |pool| {
            pool.iter()
                .any(|s| s["name"] == "inst-1" && s["state"] == "usable")
        })
        .await;
    let (code, answer) = stack.chat("u", "hello after login").await;
    assert_eq!(code, 200, "{answer}");
    let health: Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("healthz JSON");
    assert_eq!(health["ready"], 1, "{health}");

    for text in [status.to_string(), started.to_string(), health.to_string()] {
        assert!(!text.contains("xyzzy"), "a password in a response: {text}");
    }
    stack.stop();
    assert!(!stack.output().contains("xyzzy"), "a password in the logs");
}
