//! Discovery against a mocked API server.
//!
//! MOCK: no kube-apiserver can be installed on these machines, so a `tower_test` mock service
//! stands in for it (the kube-rs controller-rs pattern). The test answers each request the
//! watcher and the token reads make, in order, and checks the published sidecar set.

use std::time::Duration;

use base64::Engine;

use http::{Request, Response, StatusCode};
use k8s_discovery::{DiscoveryConfig, watch_sidecars, watch_sidecars_synced};
use kube::Client;
use kube::client::Body;
use mux_protocol::SidecarEndpoint;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const WAIT: Duration = Duration::from_secs(5);

fn slice(ready: &[(&str, &str, bool)]) -> Value {
    slice_of_service("svc-a", ready)
}

/// A slice of instance `a`, controlled by the Service with uid `service_uid`.
fn slice_of_service(service_uid: &str, ready: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = ready
        .iter()
        .map(|(pod, ip, ready)| {
            json!({"addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod}})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "a-abcde", "namespace": "lingma", "resourceVersion": "2",
            "labels": {"app.kubernetes.io/instance": "a", "app.kubernetes.io/managed-by": "lingma-operator"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "a", "uid": service_uid, "controller": true}]},
        "addressType": "IPv4",
        "ports": [{"name": "mux", "port": 8318, "protocol": "TCP"}],
        "endpoints": endpoints
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

async fn next(handle: &mut ApiHandle) -> (Request<Body>, SendResponse<Response<Body>>) {
    tokio::time::timeout(WAIT, handle.next_request())
        .await
        .expect("a request within the deadline")
        .expect("the client is alive")
}

async fn expect_list(handle: &mut ApiHandle, items: Vec<Value>) {
    let (request, send) = next(handle).await;
    let uri = request.uri().to_string();
    assert_eq!(request.method(), "GET");
    assert!(
        uri.starts_with("/apis/discovery.k8s.io/v1/namespaces/lingma/endpointslices?"),
        "{uri}"
    );
    assert!(
        uri.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dlingma-operator"),
        "{uri}"
    );
    assert!(!uri.contains("watch=true"), "{uri}");
    send.send_response(json_response(
        StatusCode::OK,
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": "2"}, "items": items}),
    ));
}

async fn expect_watch(handle: &mut ApiHandle) -> SendResponse<Response<Body>> {
    let (request, send) = next(handle).await;
    let uri = request.uri().to_string();
    assert!(uri.contains("watch=true"), "expected a watch, got {uri}");
    send
}

fn watch_events(events: &[(&str, Value)]) -> Response<Body> {
    let mut body = Vec::new();
    for (kind, object) in events {
        body.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json"));
        body.push(b'\n');
    }
    Response::builder()
        .body(Body::from(body))
        .expect("response")
}

async fn expect_token_read(handle: &mut ApiHandle, found: bool) {
    expect_tokens_secret_read(handle, found.then_some("tok-a")).await;
}

/// Answers the read of the one tokens Secret with instance `a`'s entry holding `token`.
async fn expect_tokens_secret_read(handle: &mut ApiHandle, token: Option<&str>) {
    let (request, send) = next(handle).await;
    assert_eq!(request.method(), "GET");
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/lingma/secrets/lingma-sidecar-tokens",
        "only the tokens Secret is read"
    );
    if let Some(token) = token {
        let entry = json!({"token": token, "serviceUid": "svc-a"}).to_string();
        let malformed = base64::engine::general_purpose::STANDARD.encode("not json");
        send.send_response(json_response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lingma-sidecar-tokens"},
                "data": {"a": base64::engine::general_purpose::STANDARD.encode(entry), "broken": malformed}}),
        ));
    } else {
        send.send_response(json_response(
            StatusCode::NOT_FOUND,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
                "code": 404, "message": "secrets \"lingma-sidecar-tokens\" not found"}),
        ));
    }
}

async fn wait_for_names(rx: &mut watch::Receiver<Vec<SidecarEndpoint>>, names: &[&str]) {
    let seen = tokio::time::timeout(
        WAIT,
        rx.wait_for(|set| set.iter().map(|e| e.name.as_str()).collect::<Vec<_>>() == names),
    )
    .await
    .is_ok();
    let current = rx.borrow().clone();
    assert!(seen, "expected {names:?}, have {current:?}");
}

fn start(retry: Duration) -> (watch::Receiver<Vec<SidecarEndpoint>>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut config = DiscoveryConfig::new("lingma", "app.kubernetes.io/managed-by=lingma-operator");
    config.token_retry = retry;
    config.token_refresh = Duration::from_secs(3600);
    let (rx, _task) = watch_sidecars(client, config);
    (rx, handle)
}

#[tokio::test]
async fn ready_addresses_join_and_not_ready_leave() {
    let (mut rx, mut api) = start(Duration::from_secs(60));

    expect_list(
        &mut api,
        vec![slice(&[
            ("a-0", "10.0.0.1", true),
            ("a-1", "10.0.0.2", false),
        ])],
    )
    .await;
    expect_token_read(&mut api, true).await;
    wait_for_names(&mut rx, &["a-0"]).await;
    {
        let set = rx.borrow();
        assert_eq!(set[0].url, "ws://10.0.0.1:8318");
        assert_eq!(set[0].token.as_deref(), Some("tok-a"));
    }

    // a-0 stops being ready (draining or logged out), a-1 becomes ready. The token re-read
    // fails this time: the known token stays in use.
    let send = expect_watch(&mut api).await;
    send.send_response(watch_events(&[(
        "MODIFIED",
        slice(&[("a-0", "10.0.0.1", false), ("a-1", "10.0.0.2", true)]),
    )]));
    expect_token_read(&mut api, false).await;
    wait_for_names(&mut rx, &["a-1"]).await;
    assert_eq!(rx.borrow()[0].token.as_deref(), Some("tok-a"));

    // Both ready.
    let send = expect_watch(&mut api).await;
    send.send_response(watch_events(&[(
        "MODIFIED",
        slice(&[("a-0", "10.0.0.1", true), ("a-1", "10.0.0.2", true)]),
    )]));
    expect_token_read(&mut api, true).await;
    wait_for_names(&mut rx, &["a-0", "a-1"]).await;

    // The instance is deleted: its slice goes, and so do its sidecars.
    let send = expect_watch(&mut api).await;
    send.send_response(watch_events(&[(
        "DELETED",
        slice(&[("a-0", "10.0.0.1", true), ("a-1", "10.0.0.2", true)]),
    )]));
    wait_for_names(&mut rx, &[]).await;
}

#[tokio::test]
async fn instance_without_readable_token_is_left_out_until_it_appears() {
    let (mut rx, mut api) = start(Duration::from_millis(50));

    expect_list(&mut api, vec![slice(&[("a-0", "10.0.0.1", true)])]).await;
    expect_token_read(&mut api, false).await;
    // The watch is opened and stays open (no events); meanwhile the token read is retried.
    let _held_watch = expect_watch(&mut api).await;
    assert!(rx.borrow().is_empty(), "no token, no sidecar");
    expect_token_read(&mut api, true).await;
    wait_for_names(&mut rx, &["a-0"]).await;
}

#[tokio::test]
async fn a_slice_not_owned_by_the_instance_service_gets_no_token() {
    let (mut rx, mut api) = start(Duration::from_secs(60));
    // Someone labelled a slice like ours, pointing at their own address.
    expect_list(
        &mut api,
        vec![slice_of_service("svc-evil", &[("a-0", "10.9.9.9", true)])],
    )
    .await;
    expect_token_read(&mut api, true).await;
    let _held_watch = expect_watch(&mut api).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rx.borrow_and_update().is_empty(),
        "an untrusted slice is never sent the token"
    );
}

#[tokio::test]
async fn synced_turns_true_with_zero_sidecars_and_rotated_tokens_arrive_on_refresh() {
    let (service, mut api) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut config = DiscoveryConfig::new("lingma", "app.kubernetes.io/managed-by=lingma-operator");
    config.token_refresh = Duration::from_millis(200);
    let (mut rx, mut synced, _task) = watch_sidecars_synced(client, config);
    assert!(!*synced.borrow(), "not synced before the first list");

    expect_list(&mut api, vec![slice(&[("a-0", "10.0.0.1", false)])]).await;
    tokio::time::timeout(WAIT, synced.wait_for(|s| *s))
        .await
        .expect("synced within the deadline")
        .expect("discovery alive");
    assert!(rx.borrow().is_empty(), "synced with no ready sidecar");

    let send = expect_watch(&mut api).await;
    send.send_response(watch_events(&[(
        "MODIFIED",
        slice(&[("a-0", "10.0.0.1", true)]),
    )]));
    expect_tokens_secret_read(&mut api, Some("tok-1")).await;
    wait_for_names(&mut rx, &["a-0"]).await;
    // The token is rotated; no slice changes. The refresh reads the Secret again.
    let _held_watch = expect_watch(&mut api).await;
    expect_tokens_secret_read(&mut api, Some("tok-2")).await;
    let rotated = tokio::time::timeout(
        WAIT,
        rx.wait_for(|set| set.first().and_then(|e| e.token.as_deref()) == Some("tok-2")),
    )
    .await;
    assert!(
        rotated.is_ok(),
        "the rotated token reaches the gateway without a restart"
    );
}
