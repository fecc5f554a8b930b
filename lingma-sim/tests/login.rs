//! Login through the callback and through the form (as an auto-login driver would post it),
//! the captcha obstacle, expiry, and persistence of login and sessions across a restart.

mod common;

use common::{SimProcess, WAIT, temp_work_dir};
use serde_json::{Value, json};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn login_url(result: &Value) -> String {
    lingma_protocol::wire::login_url_from_result(&result["result"]).expect("a login URL")
}

#[tokio::test]
async fn callback_login_checks_state_and_survives_a_restart_with_sessions() {
    let dir = temp_work_dir();
    let mut sim = SimProcess::start(dir.path(), &["--chunks", "2"]).await;
    let mut c = sim.client().await;
    let url = login_url(&c.call("auth/login", json!({})).await);
    assert!(url.starts_with(&sim.http("/auth/callback?state=")), "{url}");

    let http = no_redirects();
    let forged = http
        .get(sim.http("/auth/callback?state=forged"))
        .send()
        .await
        .expect("GET");
    assert_eq!(forged.status(), 400);
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        1
    );

    let ok = http.get(&url).send().await.expect("GET callback");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        2
    );
    // A state works once.
    assert_eq!(http.get(&url).send().await.expect("GET").status(), 400);

    let t1 = c.chat("r1", "keep", "first question", false).await;
    assert_eq!(t1.finish["statusCode"], 200);
    let t2 = c.chat("r2", "keep", "second question", true).await;
    assert!(t2.full_answer().contains("turn 2"), "{}", t2.full_answer());
    drop(c);

    let status = sim.child.terminate(WAIT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let printed =
        std::process::Command::new(std::path::PathBuf::from(env!("CARGO_BIN_EXE_lingma-sim")))
            .args(["status", "-o", "json", "--workDir"])
            .arg(dir.path())
            .output()
            .expect("run status");
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("status JSON");
    assert_eq!(printed["logged_in"], true, "{printed}");
    assert_eq!(printed["username"], "sim-user@example.com");
    assert!(
        printed["version"]
            .as_str()
            .is_some_and(|v| v.ends_with("-sim"))
    );

    let sim = SimProcess::start(dir.path(), &["--chunks", "2"]).await;
    let mut c = sim.client().await;
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        2
    );
    let t3 = c.chat("r3", "keep", "third question", true).await;
    assert!(
        t3.full_answer().contains(
            "turn 3 of session keep: you said \"third question\"; previous: \"second question\""
        ),
        "{}",
        t3.full_answer()
    );
}

#[tokio::test]
async fn form_login_wants_the_right_credentials_and_redirects_to_the_callback() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(
        dir.path(),
        &[
            "--login-mode",
            "form",
            "--accept-username",
            "alice@example.com",
            "--accept-password",
            "s3cret",
        ],
    )
    .await;
    let mut c = sim.client().await;
    let url = login_url(&c.call("auth/login", json!({})).await);
    assert!(url.starts_with(&sim.http("/login?state=")), "{url}");
    let state = url
        .split("state=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("state in URL")
        .to_owned();

    let http = no_redirects();
    let page = http.get(&url).send().await.expect("GET form");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("form HTML");
    assert!(
        html.contains("id=\"fm-login-id\"") && html.contains("name=\"password\""),
        "{html}"
    );

    // The callback alone is not enough in form mode.
    let skip = http
        .get(sim.http(&format!("/auth/callback?state={state}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(skip.status(), 400);

    let wrong = http
        .post(sim.http("/login"))
        .form(&[
            ("state", state.as_str()),
            ("username", "alice@example.com"),
            ("password", "nope"),
        ])
        .send()
        .await
        .expect("POST wrong");
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .expect("body")
            .contains("Incorrect account name or password")
    );

    let right = http
        .post(sim.http("/login"))
        .form(&[
            ("state", state.as_str()),
            ("username", "alice@example.com"),
            ("password", "s3cret"),
        ])
        .send()
        .await
        .expect("POST right");
    assert_eq!(right.status(), 302);
    let location = right
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned();
    assert!(
        location.starts_with(&sim.http("/auth/callback?state=")),
        "{location}"
    );
    assert_eq!(
        http.get(&location)
            .send()
            .await
            .expect("GET callback")
            .status(),
        200
    );
    let status = c.call("auth/status", json!({})).await;
    assert_eq!(status["result"]["status"], 2);
    assert_eq!(status["result"]["name"], "alice@example.com");
    assert!(
        !sim.child.output().contains("s3cret"),
        "the password reached a log line"
    );
}

#[tokio::test]
async fn captcha_blocks_the_form_and_expiry_fails_chats_with_401() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(
        dir.path(),
        &["--login-mode", "form", "--login-challenge", "captcha"],
    )
    .await;
    let mut c = sim.client().await;
    let url = login_url(&c.call("auth/login", json!({})).await);
    let http = no_redirects();
    let page = http
        .get(&url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("HTML");
    assert!(page.contains("captcha"), "{page}");
    let state = url
        .split("state=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .unwrap_or_default()
        .to_owned();
    let post = http
        .post(sim.http("/login"))
        .form(&[
            ("state", state.as_str()),
            ("username", "sim-user@example.com"),
            ("password", "sim-password"),
        ])
        .send()
        .await
        .expect("POST");
    assert!(post.text().await.expect("HTML").contains("captcha"));
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        1
    );

    // Logged in by the control API, then the login expires mid-life.
    assert_eq!(sim.control("/control/login", json!({})).await.status(), 200);
    assert_eq!(
        c.chat("r1", "s", "hi", false).await.finish["statusCode"],
        200
    );
    assert_eq!(
        sim.control("/control/expire-login", json!({}))
            .await
            .status(),
        200
    );
    let status = c.call("auth/status", json!({})).await;
    assert_eq!(status["result"]["status"], 1);
    assert_eq!(status["result"]["loginState"], "expired");
    assert_eq!(
        c.chat("r2", "s", "hi again", true).await.finish["statusCode"],
        401
    );
    assert_eq!(
        c.call("config/queryModels", json!({})).await["result"],
        json!({})
    );

    assert_eq!(
        c.call("auth/logout", json!({})).await["result"]["success"],
        true
    );
    let refused = c.chat("r3", "s", "hi", false).await;
    assert!(refused.ask_response.get("error").is_some());
}
