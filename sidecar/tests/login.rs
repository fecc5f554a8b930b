//! Login against the simulator: auto-login in callback mode (a GET of the loopback URL)
//! and form mode (the account posted to the simulator's form), wrong credentials, login on
//! demand, expiry; and no log line or response carries the password or the token.
//! (Real Lingma's browser login is issue 7; it cannot run here.)

mod common;

use common::*;
use mux_protocol::{ErrorKind, LoginFailure, LoginState, Role};

const USERNAME: &str = "dev@example.com";
const PASSWORD: &str = "Pw-7c1d-do-not-leak";

async fn login_state(sidecar: &Sidecar) -> LoginState {
    let (status, body) = sidecar.get("/login/status", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("login state JSON")
}

async fn wait_login(sidecar: &Sidecar, want: &LoginState) {
    let ok = test_support::wait_until(WAIT, || async { &login_state(sidecar).await == want }).await;
    if ok.is_err() {
        panic!(
            "login never became {want:?}: {:?}\n{}",
            login_state(sidecar).await,
            sidecar.proc.output()
        );
    }
}

/// Everything a gateway or an operator could read from the sidecar.
async fn all_responses(sidecar: &Sidecar, mux: &Mux) -> String {
    let mut all = String::new();
    for path in ["/readyz", "/healthz", "/metrics"] {
        all.push_str(&sidecar.get(path, None).await.1);
    }
    all.push_str(&sidecar.get("/login/status", Some(TOKEN)).await.1);
    all.push_str(&sidecar.post("/login/start", Some(TOKEN)).await.1);
    all.push_str(&sidecar.get("/login/status", Some("wrong")).await.1);
    let status = mux.status.borrow().clone();
    all.push_str(&serde_json::to_string(&status).expect("json"));
    all
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, TOKEN] {
        assert!(!text.contains(secret), "{what} contains a secret");
    }
}

#[tokio::test]
async fn auto_login_in_callback_mode_and_no_secret_in_logs_or_responses() {
    let sim = Sim::start_with(&["--login-mode", "callback"]).await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_USERNAME", USERNAME.into()));
    env.push(("LINGMA_PASSWORD", PASSWORD.into()));
    env.push(("LOG_LEVEL", "trace".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    assert_eq!(login_state(&sidecar).await, LoginState::LoggedIn);
    assert_eq!(
        sim.control().stats().await.expect("sim control API")["login_state"],
        "logged_in"
    );
    let mux = sidecar.mux().await;
    let status = mux.wait_status(|s| s.ready).await;
    assert!(!status.models.is_empty());
    let r = mux
        .chat(1, request("s", vec![m(Role::User, "hello after login")]))
        .await;
    assert!(r.ok(), "{r:?}");
    assert!(
        sidecar
            .metric("sidecar_login_attempts_total{result=\"ok\"}")
            .await
            >= 1.0
    );

    assert_no_secret("a response", &all_responses(&sidecar, &mux).await);
    let logs = sidecar.proc.output();
    assert!(logs.contains("logged in"), "the login is logged");
    assert_no_secret("the sidecar log", &logs);
}

#[tokio::test]
async fn auto_login_in_form_mode_posts_the_account() {
    let sim = form_login_sim(USERNAME, PASSWORD).await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_ACCOUNTS", format!("{USERNAME}:{PASSWORD}")));
    env.push(("LOG_LEVEL", "trace".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    let mux = sidecar.mux().await;
    let r = mux.chat(1, request("s", vec![m(Role::User, "hi")])).await;
    assert!(r.ok(), "{r:?}");
    assert_no_secret("a response", &all_responses(&sidecar, &mux).await);
    assert_no_secret("the sidecar log", &sidecar.proc.output());
}

#[tokio::test]
async fn wrong_credentials_fail_after_the_retries() {
    let sim = form_login_sim(USERNAME, "the-right-one").await;
    let mut env = sim.attach_env();
    env.push(("LINGMA_USERNAME", USERNAME.into()));
    env.push(("LINGMA_PASSWORD", PASSWORD.into()));
    env.push(("AUTO_LOGIN_MAX_RETRY", "1".into()));
    let sidecar = spawn_sidecar(&env).await;
    wait_login(
        &sidecar,
        &LoginState::Failed {
            reason: LoginFailure::WrongCredentials,
        },
    )
    .await;
    assert_eq!(
        sidecar
            .metric("sidecar_login_attempts_total{result=\"failed\"}")
            .await,
        2.0
    );
    let (status, body) = sidecar.get("/readyz", None).await;
    assert_eq!(status, 503);
    assert!(body.contains("\"login\":\"failed\""), "{body}");
    // Chats fail at once instead of waiting for a login that will not come.
    let mux = sidecar.mux().await;
    let r = mux.chat(1, request("s", vec![m(Role::User, "hi")])).await;
    assert_eq!(
        r.error.map(|e| (e.0, e.2)),
        Some((ErrorKind::Unavailable, true))
    );
    assert_no_secret("the sidecar log", &sidecar.proc.output());
}

#[tokio::test]
async fn without_auto_login_the_login_starts_on_demand() {
    let sim = Sim::start_with(&["--login-mode", "callback"]).await;
    let mut env = sim.attach_env();
    env.push(("AUTO_LOGIN_ENABLED", "false".into()));
    let sidecar = spawn_sidecar(&env).await;
    wait_login(&sidecar, &LoginState::LoggedOut).await;
    assert!(!sidecar.ready().await);
    let mux = sidecar.mux().await;
    let mut req = request("s", vec![m(Role::User, "hi")]);
    req.queue_timeout_ms = 0;
    let r = mux.chat(1, req).await;
    assert_eq!(r.error.map(|e| e.0), Some(ErrorKind::Unavailable));

    let (status, _) = sidecar.post("/login/start", Some(TOKEN)).await;
    assert_eq!(status, 202);
    sidecar.wait_ready().await;
    mux.wait_status(|s| s.ready).await;
    let r = mux
        .chat(2, request("s", vec![m(Role::User, "hi again")]))
        .await;
    assert!(r.ok(), "{r:?}");
}

#[tokio::test]
async fn an_expired_login_is_noticed() {
    let sim = Sim::start_logged_in(&[]).await;
    let mut env = sim.attach_env();
    env.push(("AUTO_LOGIN_ENABLED", "false".into()));
    env.push(("SIDECAR_LOGIN_CHECK_INTERVAL_SEC", "1".into()));
    let sidecar = spawn_sidecar(&env).await;
    sidecar.wait_ready().await;
    sim.control()
        .post("/control/expire-login")
        .await
        .expect("sim control API");
    wait_login(
        &sidecar,
        &LoginState::Failed {
            reason: LoginFailure::Expired,
        },
    )
    .await;
    assert!(!sidecar.ready().await);
}
