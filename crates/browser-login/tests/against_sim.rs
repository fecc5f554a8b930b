//! The browser against the Lingma simulator's "form" login mode (in process): `auth/login`
//! hands out the simulator's login page, the browser logs in, and `auth/status` turns 2.
//! This is the path the sidecar runs; the simulator's page, like this crate's own test
//! pages, only imitates Alibaba Cloud's.

mod support;

use std::time::Duration;

use browser_login::{FailureReason, SecretString, login};
use lingma_protocol::client::{ClientOptions, LingmaClient};
use lingma_sim::{LoginChallenge, LoginMode, SimConfig, SimHandle};
use serde_json::{Value, json};

const USERNAME: &str = "sim-dev@example.com";
const PASSWORD: &str = "Sim-Pw-71c2b9-never-log-me";
const ATTEMPT: Duration = Duration::from_secs(45);

async fn start_sim(challenge: LoginChallenge) -> (SimHandle, LingmaClient) {
    let sim = lingma_sim::start(SimConfig {
        login_mode: LoginMode::Form,
        login_challenge: challenge,
        accept_username: USERNAME.to_owned(),
        accept_password: PASSWORD.to_owned(),
        ..SimConfig::default()
    })
    .await
    .expect("start the simulator");
    let client = LingmaClient::connect(
        &format!("ws://127.0.0.1:{}/", sim.ws_port()),
        ClientOptions::default(),
    )
    .await
    .expect("connect to the simulator");
    (sim, client)
}

async fn login_url(client: &LingmaClient) -> String {
    let result: Value = client
        .call("auth/login", &json!({}))
        .await
        .expect("auth/login");
    lingma_protocol::wire::login_url_from_result(&result).expect("auth/login returns a URL")
}

async fn auth_status(client: &LingmaClient) -> i64 {
    client.auth_status().await.expect("auth/status").status
}

fn assert_password_not_logged() {
    let logs = support::logs();
    assert!(logs.contains("start browser"), "log capture saw nothing");
    assert!(!logs.contains(PASSWORD), "the password reached a log line");
    assert!(
        !logs.contains("wrong-Sim-Pw"),
        "a wrong password reached a log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_the_simulator_in_through_its_form() {
    support::capture_logs();
    if !support::browser_installed() {
        return;
    }
    let _slot = support::browser_slot().await;
    let (_sim, client) = start_sim(LoginChallenge::None).await;
    assert_eq!(auth_status(&client).await, 1, "starts logged out");
    let url = login_url(&client).await;
    let shots = tempfile::tempdir().expect("screenshot dir");

    let outcome = login(
        &support::config(shots.path(), ATTEMPT),
        &url,
        USERNAME,
        &SecretString::from(PASSWORD),
    )
    .await
    .unwrap_or_else(|e| panic!("login through the simulator's form: {e}"));

    let state = url
        .split("state=")
        .nth(1)
        .map(|s| s.split('&').next().unwrap_or(s));
    assert_eq!(
        outcome.state.as_deref(),
        state,
        "callback state = login URL state"
    );
    // The browser's GET of the callback is what logs the simulator in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while auth_status(&client).await != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "auth/status never turned 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::assert_no_browser_left().await;
    assert_password_not_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_leaves_the_simulator_logged_out() {
    support::capture_logs();
    if !support::browser_installed() {
        return;
    }
    let _slot = support::browser_slot().await;
    let (_sim, client) = start_sim(LoginChallenge::None).await;
    let url = login_url(&client).await;
    let shots = tempfile::tempdir().expect("screenshot dir");

    let err = login(
        &support::config(shots.path(), ATTEMPT),
        &url,
        USERNAME,
        &SecretString::from("wrong-Sim-Pw-3"),
    )
    .await
    .expect_err("a wrong password must fail");

    assert_eq!(err.reason(), FailureReason::WrongCredentials, "{err}");
    assert!(
        err.screenshot().is_some_and(|p| p.exists()),
        "screenshot saved"
    );
    assert_eq!(auth_status(&client).await, 1);
    assert_password_not_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_captcha_gives_challenge_required() {
    support::capture_logs();
    if !support::browser_installed() {
        return;
    }
    let _slot = support::browser_slot().await;
    let (_sim, client) = start_sim(LoginChallenge::Captcha).await;
    let url = login_url(&client).await;
    let shots = tempfile::tempdir().expect("screenshot dir");

    let err = login(
        &support::config(shots.path(), ATTEMPT),
        &url,
        USERNAME,
        &SecretString::from(PASSWORD),
    )
    .await
    .expect_err("a captcha must stop the login");

    assert_eq!(err.reason(), FailureReason::ChallengeRequired, "{err}");
    assert!(
        err.screenshot().is_some_and(|p| p.exists()),
        "screenshot saved"
    );
    assert_eq!(auth_status(&client).await, 1);
    assert_password_not_logged();
}
