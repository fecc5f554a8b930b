//! Reconciler tests against a mocked API server.
//!
//! MOCK: no kube-apiserver can be installed on these machines (and no kind/Docker), so, as in
//! kube-rs's controller-rs, a `tower_test` mock service stands in for the API server. Each test
//! asserts the exact sequence of requests one reconcile makes (method, path, the important body
//! fields) and answers them. What a mock cannot show (garbage collection via owner references,
//! admission, server-side-apply field ownership, the StatefulSet controller) is covered by
//! `scripts/e2e-kind.sh` on a machine with Docker and kind.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use mux_protocol::{LoginFailure, LoginState};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::*;
use crate::login::SidecarLogin;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const DEADLINE: Duration = Duration::from_secs(5);
const NS: &str = "lingma";

/// Stands in for the sidecars' `/login/status` (pods cannot run here): `answer` for every pod
/// but those given their own in `by_ip`.
struct FakeLoginProbe {
    answer: Option<LoginState>,
    by_ip: Mutex<Vec<(IpAddr, SidecarLogin)>>,
    asked: Mutex<Vec<(IpAddr, String)>>,
}

impl FakeLoginProbe {
    fn answer_for(&self, ip: &str, answer: SidecarLogin) {
        let ip = ip.parse().expect("ip");
        self.by_ip.lock().expect("lock").push((ip, answer));
    }
}

impl LoginProbe for FakeLoginProbe {
    fn login_status<'a>(
        &'a self,
        pod_ip: IpAddr,
        token: &'a str,
    ) -> BoxFuture<'a, Option<SidecarLogin>> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((pod_ip, token.to_owned()));
        }
        let own = self.by_ip.lock().ok().and_then(|answers| {
            answers
                .iter()
                .find(|(ip, _)| *ip == pod_ip)
                .map(|(_, a)| a.clone())
        });
        let answer = own.or_else(|| self.answer.clone().map(SidecarLogin::from));
        Box::pin(async move { answer })
    }
}

fn context(answer: Option<LoginState>) -> (Arc<Context>, ApiHandle, Arc<FakeLoginProbe>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "lingma-operator".to_owned(),
            instance: Some("operator-0".to_owned()),
        },
    );
    let probe = Arc::new(FakeLoginProbe {
        answer,
        by_ip: Mutex::new(Vec::new()),
        asked: Mutex::new(Vec::new()),
    });
    let ctx = Context::new(
        client,
        recorder,
        Metrics::new().expect("metrics"),
        PodSettings {
            default_image: "lingma-pod:test".to_owned(),
            account_selector_image: "ghcr.io/lingma-gateway/operator:0.1.0".to_owned(),
        },
        probe.clone(),
    );
    (Arc::new(ctx), handle, probe)
}

fn instance(replicas: i32, generation: i64, status: Option<Value>) -> LingmaInstance {
    let mut object = json!({
        "apiVersion": "lingma.io/v1alpha1", "kind": "LingmaInstance",
        "metadata": {"name": "team", "namespace": NS, "uid": "uid-1", "generation": generation},
        "spec": {"replicas": replicas, "accounts": {"secretRef": {"name": "acc"}}},
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    serde_json::from_value(object).expect("valid LingmaInstance")
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// One expected request: checks method and path, returns the request's URI and JSON body and
/// answers with `status` and `answer`.
struct Step {
    method: Method,
    path: String,
}

impl Step {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
        }
    }
}

async fn serve(
    handle: &mut ApiHandle,
    step: Step,
    status: StatusCode,
    answer: impl FnOnce(&Value) -> Value,
) -> (String, Value) {
    let (request, send) = tokio::time::timeout(DEADLINE, handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request, expected {} {}", step.method, step.path))
        .expect("client alive");
    let uri = request.uri().to_string();
    assert_eq!(
        (request.method(), request.uri().path()),
        (&step.method, step.path.as_str()),
        "unexpected request {uri}"
    );
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON request body")
    };
    let reply = answer(&body);
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).expect("json")))
            .expect("response"),
    );
    (uri, body)
}

fn not_found() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
}

fn internal_error() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "InternalError", "code": 500})
}

fn status_path() -> String {
    format!("/apis/lingma.io/v1alpha1/namespaces/{NS}/lingmainstances/team/status")
}

fn events_path() -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
}

/// The object does not exist yet (the ownership check before an apply).
async fn absent(api: &mut ApiHandle, path: String) {
    serve(
        api,
        Step::new(Method::GET, path),
        StatusCode::NOT_FOUND,
        |_| not_found(),
    )
    .await;
}

fn owner_reference() -> Value {
    json!({"apiVersion": "lingma.io/v1alpha1", "kind": "LingmaInstance", "name": "team",
        "uid": "uid-1", "controller": true, "blockOwnerDeletion": true})
}

/// The token Secret as an earlier reconcile created it (controlled by the instance).
fn owned_token_secret(token: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "team-sidecar-token", "ownerReferences": [owner_reference()]},
        "data": {"token": b64(token), "checksum-key": b64("fixed-checksum-key")}})
}

/// Echoes an applied object as the API server stores it (with a uid).
fn with_uid(body: &Value) -> Value {
    let mut stored = body.clone();
    stored["metadata"]["uid"] = json!("svc-uid-1");
    stored
}

/// Serves the apply of the instance's key of the shared tokens Secret, under the instance's
/// own field manager, and returns its decoded entry.
async fn serve_tokens_entry(api: &mut ApiHandle) -> Value {
    let path = format!("/api/v1/namespaces/{NS}/secrets/lingma-sidecar-tokens");
    absent(api, path.clone()).await;
    let (uri, secret) = serve(api, Step::new(Method::PATCH, path), StatusCode::OK, echo).await;
    assert!(uri.contains("fieldManager=lingma-operator-team"), "{uri}");
    assert!(uri.contains("force=true"), "{uri}");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "lingma-operator"
    );
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["uid"].as_str(), owner["controller"].as_bool()),
        (Some("uid-1"), Some(false))
    );
    let data = secret["data"].as_object().expect("data");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["team"],
        "only its own key"
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data["team"].as_str().expect("base64 string"))
        .expect("base64");
    serde_json::from_slice(&raw).expect("entry json")
}

fn echo(body: &Value) -> Value {
    body.clone()
}

fn assert_applied(uri: &str, body: &Value, kind: &str) {
    assert!(uri.contains("fieldManager=lingma-operator"), "{uri}");
    assert!(uri.contains("force=true"), "{uri}");
    assert_eq!(body["kind"], kind);
    let owner = &body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["uid"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("LingmaInstance"), Some("uid-1"), Some(true))
    );
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "lingma-operator"
    );
}

fn pod(ordinal: i32, ready: bool) -> Value {
    json!({
        "metadata": {"name": format!("team-{ordinal}"), "namespace": NS},
        "status": {"podIP": format!("10.0.0.{}", ordinal + 1),
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

fn condition_of<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("condition {type_}"))
}

struct Scenario {
    accounts: &'static str,
    token: Option<&'static str>,
    sts_status: Value,
    pods: Vec<Value>,
}

/// Serves one whole reconcile in the order it must happen and returns the bodies that matter.
struct Seen {
    token_secret: Value,
    tokens_entry: Value,
    statefulset: Value,
    status: Value,
    events: Vec<Value>,
}

async fn verify(mut api: ApiHandle, scenario: Scenario, events: usize) -> Seen {
    let secrets = format!("/api/v1/namespaces/{NS}/secrets");
    let accounts = scenario.accounts;
    serve(&mut api, Step::new(Method::GET, format!("{secrets}/acc")), StatusCode::OK, |_| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "acc"}, "data": {"accounts": b64(accounts)}})
    })
    .await;
    let token = scenario.token;
    let found = if token.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    serve(
        &mut api,
        Step::new(Method::GET, format!("{secrets}/team-sidecar-token")),
        found,
        |_| match token {
            Some(t) => owned_token_secret(t),
            None => not_found(),
        },
    )
    .await;
    let (uri, token_secret) = serve(
        &mut api,
        Step::new(Method::PATCH, format!("{secrets}/team-sidecar-token")),
        StatusCode::OK,
        echo,
    )
    .await;
    assert_applied(&uri, &token_secret, "Secret");
    absent(&mut api, format!("/api/v1/namespaces/{NS}/services/team")).await;
    let (uri, service) = serve(
        &mut api,
        Step::new(
            Method::PATCH,
            format!("/api/v1/namespaces/{NS}/services/team"),
        ),
        StatusCode::OK,
        with_uid,
    )
    .await;
    assert_applied(&uri, &service, "Service");
    assert_eq!(service["spec"]["clusterIP"], "None");
    let tokens = serve_tokens_entry(&mut api).await;
    let sts_status = scenario.sts_status.clone();
    absent(
        &mut api,
        format!("/apis/apps/v1/namespaces/{NS}/statefulsets/team"),
    )
    .await;
    let (uri, statefulset) = serve(
        &mut api,
        Step::new(
            Method::PATCH,
            format!("/apis/apps/v1/namespaces/{NS}/statefulsets/team"),
        ),
        StatusCode::OK,
        |body| {
            let mut answer = body.clone();
            answer["metadata"]["generation"] = json!(1);
            answer["status"] = sts_status;
            answer
        },
    )
    .await;
    assert_applied(&uri, &statefulset, "StatefulSet");
    absent(
        &mut api,
        format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/team"),
    )
    .await;
    let (uri, pdb) = serve(
        &mut api,
        Step::new(
            Method::PATCH,
            format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/team"),
        ),
        StatusCode::OK,
        echo,
    )
    .await;
    assert_applied(&uri, &pdb, "PodDisruptionBudget");
    let pods = scenario.pods;
    let (uri, _) = serve(&mut api, Step::new(Method::GET, format!("/api/v1/namespaces/{NS}/pods")), StatusCode::OK, |_| {
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": pods})
    })
    .await;
    assert!(
        uri.contains(
            "labelSelector=app.kubernetes.io%2Finstance%3Dteam%2Capp.kubernetes.io%2Fname%3Dlingma"
        ),
        "{uri}"
    );
    let (_, patch) = serve(
        &mut api,
        Step::new(
            Method::PATCH,
            format!("/apis/lingma.io/v1alpha1/namespaces/{NS}/lingmainstances/team/status"),
        ),
        StatusCode::OK,
        |body| {
            let mut answer = serde_json::to_value(instance(1, 1, None)).expect("json");
            answer["status"] = body["status"].clone();
            answer
        },
    )
    .await;
    let mut seen_events = Vec::new();
    for _ in 0..events {
        let (_, event) = serve(
            &mut api,
            Step::new(
                Method::POST,
                format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
            ),
            StatusCode::CREATED,
            echo,
        )
        .await;
        seen_events.push(event);
    }
    // Nothing else may follow.
    let extra = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
    assert!(!matches!(extra, Ok(Some(_))), "unexpected extra request");
    Seen {
        token_secret,
        tokens_entry: tokens,
        statefulset,
        status: patch["status"].clone(),
        events: seen_events,
    }
}

async fn run(ctx: Arc<Context>, instance: LingmaInstance) -> Result<Action, Error> {
    tokio::time::timeout(DEADLINE, reconcile(Arc::new(instance), ctx))
        .await
        .expect("reconcile finishes")
}

fn previous_status(generation: i64, logged_in: &str) -> Value {
    json!({
        "observedGeneration": generation, "replicas": 2, "readyReplicas": 0, "loggedInReplicas": 0,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ReplicasNotReady", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "LoggedIn", "status": logged_in, "reason": "LoggingIn", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]
    })
}

#[tokio::test]
async fn create_applies_every_object_and_reports_progress() {
    let (ctx, api, _) = context(None);
    let verifier = tokio::spawn(verify(
        api,
        Scenario {
            accounts: "u1:p1",
            token: None,
            sts_status: json!({"replicas": 0, "observedGeneration": 0}),
            pods: vec![],
        },
        1,
    ));
    let action = run(ctx.clone(), instance(2, 3, None))
        .await
        .expect("reconcile succeeds");
    let seen = verifier.await.expect("verifier passed");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));

    // A fresh token is generated and stored.
    let token = seen.token_secret["data"]["token"].as_str().expect("token");
    let token = base64::engine::general_purpose::STANDARD
        .decode(token)
        .expect("base64");
    assert_eq!(token.len(), 64);
    assert_eq!(seen.statefulset["spec"]["replicas"], 2);
    assert_eq!(seen.status["observedGeneration"], 3);
    assert_eq!(
        seen.status["selector"],
        "app.kubernetes.io/instance=team,app.kubernetes.io/name=lingma"
    );
    assert_eq!(seen.status["accounts"], 1);
    let ready = condition_of(&seen.status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ReplicasNotReady"))
    );
    assert_eq!(condition_of(&seen.status, "Progressing")["status"], "True");
    assert_eq!(condition_of(&seen.status, "Degraded")["status"], "False");
    // Two replicas over one account: the user is warned once.
    let event = &seen.events[0];
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("AccountsFewerThanReplicas"))
    );
    assert_eq!(event["regarding"]["name"], "team");
    assert!(
        !serde_json::to_string(&seen.events)
            .expect("json")
            .contains("p1"),
        "no password in events"
    );
}

#[tokio::test]
async fn update_keeps_the_token_and_reports_ready_and_logged_in() {
    let (ctx, api, probe) = context(None);
    let verifier = tokio::spawn(verify(
        api,
        Scenario {
            accounts: r#"[{"username":"a","password":"b"},{"username":"c","password":"d"}]"#,
            token: Some("keep-me"),
            sts_status: json!({"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "observedGeneration": 1,
                "currentRevision": "r1", "updateRevision": "r1"}),
            pods: vec![pod(1, true), pod(0, true)],
        },
        1,
    ));
    let action = run(
        ctx.clone(),
        instance(2, 3, Some(previous_status(3, "False"))),
    )
    .await
    .expect("reconcile succeeds");
    let seen = verifier.await.expect("verifier passed");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(
        seen.token_secret["data"]["token"],
        b64("keep-me"),
        "the token is never rotated"
    );
    assert_eq!(
        seen.tokens_entry,
        json!({"token": "keep-me", "serviceUid": "svc-uid-1"}),
        "the gateway's copy names the Service whose slices it may trust"
    );
    let mut asked: Vec<String> = probe
        .asked
        .lock()
        .expect("lock")
        .iter()
        .map(|(ip, token)| format!("{ip} {token}"))
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        ["10.0.0.1 keep-me", "10.0.0.2 keep-me"],
        "ready pods are asked too (a paused account does not show in readiness)"
    );
    assert_eq!(
        (
            seen.status["readyReplicas"].as_i64(),
            seen.status["loggedInReplicas"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(condition_of(&seen.status, "Ready")["status"], "True");
    let logged_in = condition_of(&seen.status, "LoggedIn");
    assert_eq!(
        (logged_in["status"].as_str(), logged_in["reason"].as_str()),
        (Some("True"), Some("AllLoggedIn"))
    );
    assert_eq!(
        condition_of(&seen.status, "Progressing")["reason"],
        "RolloutComplete"
    );
    let names: Vec<&str> = seen.status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["team-0", "team-1"]);
    assert_eq!(seen.status["instances"][1]["accountSlot"], 1);
    assert_eq!(
        (
            seen.events[0]["type"].as_str(),
            seen.events[0]["reason"].as_str()
        ),
        (Some("Normal"), Some("LoggedIn"))
    );
}

#[tokio::test]
async fn scale_up_applies_replicas_and_explains_a_rejected_login() {
    let (ctx, api, probe) = context(Some(LoginState::Failed {
        reason: LoginFailure::WrongCredentials,
    }));
    let verifier = tokio::spawn(verify(
        api,
        Scenario {
            accounts: "u1:p1,u2:p2",
            token: Some("tok"),
            sts_status: json!({"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "observedGeneration": 1}),
            pods: vec![pod(0, true), pod(1, true), pod(2, false)],
        },
        3,
    ));
    let action = run(
        ctx.clone(),
        instance(3, 4, Some(previous_status(3, "False"))),
    )
    .await
    .expect("reconcile succeeds");
    let seen = verifier.await.expect("verifier passed");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    assert_eq!(seen.statefulset["spec"]["replicas"], 3);
    // Every pod is asked, at its IP, with the instance token; a ready pod stays logged in
    // whatever its sidecar says about the login.
    let asked = probe.asked.lock().expect("lock").clone();
    assert_eq!(asked.len(), 3);
    assert!(
        asked.contains(&("10.0.0.3".parse().expect("ip"), "tok".to_owned())),
        "{asked:?}"
    );
    assert_eq!(seen.status["loggedInReplicas"], 2);
    assert_eq!(
        condition_of(&seen.status, "Progressing")["reason"],
        "Scaling"
    );
    let logged_in = condition_of(&seen.status, "LoggedIn");
    assert_eq!(
        (logged_in["status"].as_str(), logged_in["reason"].as_str()),
        (Some("False"), Some("WrongCredentials"))
    );
    assert_eq!(
        condition_of(&seen.status, "Degraded")["reason"],
        "LoginRejected"
    );
    assert_eq!(
        seen.status["instances"][2]["accountSlot"], 0,
        "slot 2 mod 2 accounts"
    );
    let reasons: Vec<&str> = seen
        .events
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "AccountsFewerThanReplicas",
            "LoginRejected",
            "LoginWrongCredentials"
        ]
    );
}

#[tokio::test]
async fn api_errors_fail_the_reconcile_and_back_off_exponentially() {
    let (ctx, mut api, _) = context(None);
    let verifier = tokio::spawn(async move {
        let mut reasons = Vec::new();
        for _ in 0..2 {
            serve(
                &mut api,
                Step::new(Method::GET, format!("/api/v1/namespaces/{NS}/secrets/acc")),
                StatusCode::INTERNAL_SERVER_ERROR,
                |_| internal_error(),
            )
            .await;
            // The failure is reported even though the API is down; those writes fail too.
            let (_, patch) = serve(
                &mut api,
                Step::new(Method::PATCH, status_path()),
                StatusCode::INTERNAL_SERVER_ERROR,
                |_| internal_error(),
            )
            .await;
            reasons.push(condition_of(&patch["status"], "Reconciled")["reason"].clone());
            serve(
                &mut api,
                Step::new(Method::POST, events_path()),
                StatusCode::INTERNAL_SERVER_ERROR,
                |_| internal_error(),
            )
            .await;
        }
        reasons
    });
    let object = Arc::new(instance(1, 1, None));
    let mut delays = Vec::new();
    for _ in 0..2 {
        let error = run(ctx.clone(), (*object).clone())
            .await
            .expect_err("the API failed");
        delays.push(error_policy(object.clone(), &error, ctx.clone()));
    }
    let reasons = verifier.await.expect("verifier passed");
    assert_eq!(reasons, ["ApiError", "ApiError"]);
    assert_eq!(
        delays,
        [
            Action::requeue(Duration::from_secs(5)),
            Action::requeue(Duration::from_secs(10))
        ]
    );
    assert_eq!(backoff(20), Duration::from_secs(300));
    assert!(
        ctx.metrics.render().contains(
            r#"controller_runtime_reconcile_errors_total{controller="lingmainstance"} 2"#
        )
    );
}

/// What the API server answers when a StatefulSet's volume claim templates change.
fn forbidden_statefulset_update() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
        "message": "StatefulSet.apps \"team\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"})
}

#[tokio::test]
async fn a_rejected_storage_change_becomes_a_condition_and_a_warning_event() {
    let (ctx, mut api, _) = context(None);
    let mut object = instance(1, 5, Some(previous_status(4, "True")));
    object.spec.storage.size = "10Gi".to_owned();
    let verifier = tokio::spawn(async move {
        let secrets = format!("/api/v1/namespaces/{NS}/secrets");
        serve(&mut api, Step::new(Method::GET, format!("{secrets}/acc")), StatusCode::OK, |_| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "acc"}, "data": {"accounts": b64("u:p")}})
        })
        .await;
        serve(
            &mut api,
            Step::new(Method::GET, format!("{secrets}/team-sidecar-token")),
            StatusCode::OK,
            |_| owned_token_secret("tok"),
        )
        .await;
        serve(
            &mut api,
            Step::new(Method::PATCH, format!("{secrets}/team-sidecar-token")),
            StatusCode::OK,
            echo,
        )
        .await;
        absent(&mut api, format!("/api/v1/namespaces/{NS}/services/team")).await;
        serve(
            &mut api,
            Step::new(
                Method::PATCH,
                format!("/api/v1/namespaces/{NS}/services/team"),
            ),
            StatusCode::OK,
            with_uid,
        )
        .await;
        serve_tokens_entry(&mut api).await;
        absent(
            &mut api,
            format!("/apis/apps/v1/namespaces/{NS}/statefulsets/team"),
        )
        .await;
        let (_, statefulset) = serve(
            &mut api,
            Step::new(
                Method::PATCH,
                format!("/apis/apps/v1/namespaces/{NS}/statefulsets/team"),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            |_| forbidden_statefulset_update(),
        )
        .await;
        let (_, patch) = serve(
            &mut api,
            Step::new(Method::PATCH, status_path()),
            StatusCode::OK,
            echo,
        )
        .await;
        let (_, event) = serve(
            &mut api,
            Step::new(Method::POST, events_path()),
            StatusCode::CREATED,
            echo,
        )
        .await;
        let extra = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
        assert!(!matches!(extra, Ok(Some(_))), "unexpected extra request");
        (statefulset, patch, event)
    });
    let object = Arc::new(object);
    let error = run(ctx.clone(), (*object).clone())
        .await
        .expect_err("the StatefulSet was rejected");
    let action = error_policy(object, &error, ctx.clone());
    let (statefulset, patch, event) = verifier.await.expect("verifier passed");
    assert_eq!(
        statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));

    // A merge patch replaces the list: every earlier condition is kept beside Reconciled.
    let conditions = &patch["status"]["conditions"];
    assert_eq!(conditions.as_array().map(Vec::len), Some(3));
    assert_eq!(
        condition_of(&patch["status"], "Ready")["reason"],
        "ReplicasNotReady"
    );
    let reconciled = condition_of(&patch["status"], "Reconciled");
    assert_eq!(
        (
            reconciled["status"].as_str(),
            reconciled["reason"].as_str(),
            reconciled["observedGeneration"].as_i64()
        ),
        (Some("False"), Some("ApplyRejected"), Some(5))
    );
    let message = reconciled["message"].as_str().expect("message");
    assert!(
        message.starts_with("applying StatefulSet team: ") && message.contains("Forbidden"),
        "{message}"
    );
    assert!(reconciled["lastTransitionTime"].is_string());
    assert_eq!(
        (
            event["type"].as_str(),
            event["reason"].as_str(),
            event["action"].as_str(),
            event["note"].as_str()
        ),
        (
            Some("Warning"),
            Some("ApplyRejected"),
            Some("Reconcile"),
            Some(message)
        )
    );
    assert_eq!(event["regarding"]["kind"], "LingmaInstance");
    assert!(
        ctx.metrics.render().contains(
            r#"controller_runtime_reconcile_errors_total{controller="lingmainstance"} 1"#
        )
    );
}

#[tokio::test]
async fn a_failure_already_reported_publishes_no_second_event() {
    let (ctx, mut api, _) = context(None);
    let error = Error::Kube(kube::Error::Api(Box::new(
        serde_json::from_value(internal_error()).expect("status"),
    )));
    let reported = failure::failed_conditions(
        &instance(1, 1, None),
        &error,
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    let object = instance(
        1,
        1,
        Some(json!({"conditions": serde_json::to_value(&reported).expect("json")})),
    );
    let verifier = tokio::spawn(async move {
        serve(
            &mut api,
            Step::new(Method::GET, format!("/api/v1/namespaces/{NS}/secrets/acc")),
            StatusCode::INTERNAL_SERVER_ERROR,
            |_| internal_error(),
        )
        .await;
        let (_, patch) = serve(
            &mut api,
            Step::new(Method::PATCH, status_path()),
            StatusCode::OK,
            echo,
        )
        .await;
        let extra = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
        assert!(
            !matches!(extra, Ok(Some(_))),
            "no event for a repeated failure"
        );
        patch
    });
    run(ctx, object).await.expect_err("the API failed");
    let patch = verifier.await.expect("verifier passed");
    let reconciled = condition_of(&patch["status"], "Reconciled");
    assert_eq!(
        reconciled["lastTransitionTime"], "1970-01-01T00:00:00Z",
        "the transition time stays while the status does not flip"
    );
}

fn template_checksum(statefulset: &Value) -> String {
    statefulset["spec"]["template"]["metadata"]["annotations"]["lingma.io/accounts-checksum"]
        .as_str()
        .expect("checksum annotation")
        .to_owned()
}

#[tokio::test]
async fn an_accounts_secret_change_changes_the_pod_template_checksum() {
    let mut checksums = Vec::new();
    for accounts in ["u1:p1", "u1:p1", "u1:rotated"] {
        let (ctx, api, _) = context(None);
        let verifier = tokio::spawn(verify(
            api,
            Scenario {
                accounts,
                token: Some("tok"),
                sts_status: json!({"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}),
                pods: vec![pod(0, true)],
            },
            1,
        ));
        run(ctx, instance(1, 2, Some(previous_status(2, "False"))))
            .await
            .expect("reconcile succeeds");
        let seen = verifier.await.expect("verifier passed");
        checksums.push(template_checksum(&seen.statefulset));
    }
    assert_eq!(
        checksums[0], checksums[1],
        "same accounts, same template: no roll"
    );
    assert_ne!(
        checksums[1], checksums[2],
        "a changed password changes the template, so the StatefulSet rolls its pods"
    );
}

#[tokio::test]
async fn an_existing_object_the_instance_does_not_own_is_never_overwritten() {
    let (ctx, mut api, _) = context(None);
    let verifier = tokio::spawn(async move {
        let secrets = format!("/api/v1/namespaces/{NS}/secrets");
        serve(&mut api, Step::new(Method::GET, format!("{secrets}/acc")), StatusCode::OK, |_| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "acc"}, "data": {"accounts": b64("u:p")}})
        })
        .await;
        serve(
            &mut api,
            Step::new(Method::GET, format!("{secrets}/team-sidecar-token")),
            StatusCode::OK,
            |_| owned_token_secret("tok"),
        )
        .await;
        serve(
            &mut api,
            Step::new(Method::PATCH, format!("{secrets}/team-sidecar-token")),
            StatusCode::OK,
            echo,
        )
        .await;
        // Someone else's Service of the same name (controlled by a Deployment).
        serve(&mut api, Step::new(Method::GET, format!("/api/v1/namespaces/{NS}/services/team")), StatusCode::OK, |_| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "team", "uid": "svc-9",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "dep-1", "controller": true}]},
                "spec": {"ports": [{"port": 80}]}})
        })
        .await;
        // No PATCH of the Service follows: the failure is reported instead.
        let (_, patch) = serve(
            &mut api,
            Step::new(Method::PATCH, status_path()),
            StatusCode::OK,
            echo,
        )
        .await;
        let (_, event) = serve(
            &mut api,
            Step::new(Method::POST, events_path()),
            StatusCode::CREATED,
            echo,
        )
        .await;
        let extra = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
        assert!(!matches!(extra, Ok(Some(_))), "nothing else may be written");
        (patch, event)
    });
    let error = run(ctx, instance(1, 1, None))
        .await
        .expect_err("the Service is someone else's");
    assert!(matches!(error, Error::NotOwned { .. }), "{error}");
    let (patch, event) = verifier.await.expect("verifier passed");
    let reconciled = condition_of(&patch["status"], "Reconciled");
    assert_eq!(
        (reconciled["status"].as_str(), reconciled["reason"].as_str()),
        (Some("False"), Some("NotOwned"))
    );
    assert!(
        reconciled["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Service team exists and is not controlled")),
        "{reconciled}"
    );
    assert_eq!(event["reason"], "NotOwned");
}

#[tokio::test]
async fn a_token_secret_the_instance_does_not_own_is_neither_read_nor_replaced() {
    let (ctx, mut api, probe) = context(None);
    let verifier = tokio::spawn(async move {
        let secrets = format!("/api/v1/namespaces/{NS}/secrets");
        serve(&mut api, Step::new(Method::GET, format!("{secrets}/acc")), StatusCode::OK, |_| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "acc"}, "data": {"accounts": b64("u:p")}})
        })
        .await;
        serve(&mut api, Step::new(Method::GET, format!("{secrets}/team-sidecar-token")), StatusCode::OK, |_| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-sidecar-token"}, "data": {"token": b64("planted")}})
        })
        .await;
        let (_, patch) = serve(
            &mut api,
            Step::new(Method::PATCH, status_path()),
            StatusCode::OK,
            echo,
        )
        .await;
        serve(
            &mut api,
            Step::new(Method::POST, events_path()),
            StatusCode::CREATED,
            echo,
        )
        .await;
        let extra = tokio::time::timeout(Duration::from_millis(100), api.next_request()).await;
        assert!(!matches!(extra, Ok(Some(_))), "nothing else may be written");
        patch
    });
    run(ctx, instance(1, 1, None))
        .await
        .expect_err("the token Secret is someone else's");
    let patch = verifier.await.expect("verifier passed");
    assert_eq!(
        condition_of(&patch["status"], "Reconciled")["reason"],
        "NotOwned"
    );
    assert!(
        probe.asked.lock().expect("lock").is_empty(),
        "a planted token is never sent anywhere"
    );
}

#[tokio::test]
async fn rotating_the_token_keeps_the_pod_template_so_no_pod_restarts() {
    let mut checksums = Vec::new();
    let mut tokens = Vec::new();
    for token in ["old-token", "new-token"] {
        let (ctx, api, _) = context(None);
        let verifier = tokio::spawn(verify(
            api,
            Scenario {
                accounts: "u1:p1",
                token: Some(token),
                sts_status: json!({"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}),
                pods: vec![pod(0, true)],
            },
            1,
        ));
        run(ctx, instance(1, 2, Some(previous_status(2, "False"))))
            .await
            .expect("reconcile succeeds");
        let seen = verifier.await.expect("verifier passed");
        checksums.push(template_checksum(&seen.statefulset));
        tokens.push(seen.tokens_entry["token"].clone());
        assert_eq!(
            seen.token_secret["data"]["checksum-key"],
            b64("fixed-checksum-key"),
            "the checksum key is kept"
        );
    }
    assert_eq!(
        tokens,
        [json!("old-token"), json!("new-token")],
        "the gateway's copy follows"
    );
    assert_eq!(
        checksums[0], checksums[1],
        "a new token reaches the pods as a file (reloaded live), not by a rollout"
    );
}

mod pause;
