//! SIDECAR_TOKEN_FILE rotation without restarting anything: the sidecar accepts the new
//! token at once, the gateway presents it on its next connection, and chats keep working
//! throughout. Real processes: lingma-sim + sidecar + gateway.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

/// Replace the file the way a Secret volume does: write aside, then rename over.
fn rotate(path: &Path, token: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, token).expect("write token");
    std::fs::rename(&aside, path).expect("rename token");
}

async fn sidecar_login_status(port: u16, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/login/status"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("GET /login/status")
        .status()
        .as_u16()
}

#[tokio::test]
async fn rotating_the_token_file_needs_no_restart_and_drops_no_chat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sidecar_file = dir.path().join("sidecar-token");
    let gateway_file = dir.path().join("gateway-token");
    rotate(&sidecar_file, "token-one");
    rotate(&gateway_file, "not-the-token");
    let sc = start_sidecar_with(
        "sc-rot",
        &[],
        &[("SIDECAR_TOKEN_FILE", sidecar_file.to_str().expect("utf-8"))],
    )
    .await;
    let gw = start_gateway(
        &sidecar_list(&[&sc]),
        &[("SIDECAR_TOKEN_FILE", gateway_file.to_str().expect("utf-8"))],
    )
    .await;

    // The gateway's file holds the wrong token: it cannot connect...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.sidecar_state("sc-rot").await, "connecting");
    // ...until the file is fixed: the next reconnect attempt reads it.
    rotate(&gateway_file, "token-one");
    gw.wait_usable(1).await;

    // Chats run without a pause while both files rotate.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let gw = Arc::new(gw);
    let load = {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let status = gw.chat(user(&format!("rotation {i}"))).await.status();
                let counter = if status == 200 { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    rotate(&sidecar_file, "token-two");
    // The sidecar takes the new token for new requests and refuses the old one.
    assert_eq!(
        sidecar_login_status(sc.sidecar.port, "token-two").await,
        200
    );
    assert_eq!(
        sidecar_login_status(sc.sidecar.port, "token-one").await,
        401
    );
    rotate(&gateway_file, "token-two");
    // The gateway's next call to the sidecar carries the new token.
    let logins = gw.get_json("/internal/auto-login/status").await;
    assert_eq!(
        logins["instances"][0]["login"]["state"], "logged_in",
        "{logins}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");

    assert!(
        ok.load(Ordering::Relaxed) > 0,
        "no chat ran during the rotation"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "chats failed during the rotation"
    );
    assert_eq!(gw.chat(user("after rotation")).await.status(), 200);
    let logs = gw.gateway.output();
    assert!(
        !logs.contains("token-one") && !logs.contains("token-two"),
        "token in a log line"
    );
}
