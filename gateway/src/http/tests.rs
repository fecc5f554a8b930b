//! The edge as a service (no socket): layers, route groups, fallbacks and typed errors.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use clap::Parser;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::Gateway;
use crate::config::GatewayConfig;

const KEY: &str = "sk-edge";
const METRICS: &str = "mt-edge";
const ADMIN: &str = "at-edge";

fn gateway() -> Gateway {
    let config = GatewayConfig::try_parse_from([
        "gateway",
        "--api-keys",
        KEY,
        "--metrics-token",
        METRICS,
        "--admin-token",
        ADMIN,
        "--max-body-bytes",
        "64",
    ])
    .expect("config");
    // Nothing listens on port 9 here: the instance exists but cannot be reached.
    let (_tx, rx) = watch::channel(vec![mux_protocol::SidecarEndpoint {
        name: "inst-0".into(),
        url: "ws://127.0.0.1:9".into(),
        token: None,
    }]);
    Gateway::build(&config, rx).expect("gateway")
}

async fn send(router: &axum::Router, request: Request<Body>) -> Response {
    router.clone().oneshot(request).await.expect("infallible")
}

fn get(path: &str, bearer: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(token) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    b.body(Body::empty()).expect("request")
}

async fn json(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_insane_ones_are_replaced() {
    let gw = gateway();
    let r = send(&gw.router, get("/nothing", None)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let minted = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(minted.len() >= 16, "{minted}");
    assert_eq!(json(r).await["error"]["code"], "unknown_url");

    let mut req = get("/healthz", None);
    req.headers_mut()
        .insert("x-request-id", "my-req-1".parse().expect("value"));
    let r = send(&gw.router, req).await;
    assert_eq!(r.headers()["x-request-id"], "my-req-1");

    let mut req = get("/v1/models", None);
    req.headers_mut()
        .insert("x-request-id", "bad id".parse().expect("value"));
    let r = send(&gw.router, req).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_ne!(r.headers()["x-request-id"], "bad id");
}

#[tokio::test]
async fn route_groups_guard_their_routes() {
    let gw = gateway();
    // Probes: open.
    assert_eq!(send(&gw.router, get("/healthz", None)).await.status(), 200);
    // Client routes: an API key, not the metrics token.
    assert_eq!(
        send(&gw.router, get("/v1/models", None)).await.status(),
        401
    );
    assert_eq!(
        send(&gw.router, get("/v1/models", Some(METRICS)))
            .await
            .status(),
        401
    );
    assert_eq!(
        send(&gw.router, get("/v1/models", Some(KEY)))
            .await
            .status(),
        200
    );
    // Admin routes: the metrics (or admin) token; a client key is 403.
    for path in ["/metrics", "/internal/stats", "/internal/auto-login/status"] {
        let r = send(&gw.router, get(path, None)).await;
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(json(r).await["error"]["code"], "invalid_api_key", "{path}");
        let r = send(&gw.router, get(path, Some(KEY))).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(
            json(r).await["error"]["code"],
            "insufficient_permissions",
            "{path}"
        );
        for token in [METRICS, ADMIN] {
            assert_eq!(
                send(&gw.router, get(path, Some(token))).await.status(),
                200,
                "{path}"
            );
        }
    }
    // A wrong method on a guarded route is 405, not 401.
    let delete = Request::delete("/v1/chat/completions")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&gw.router, delete).await.status(), 405);
}

#[tokio::test]
async fn bodies_over_the_limit_get_the_openai_413() {
    let gw = gateway();
    let big = format!(
        r#"{{"model":"x","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(200)
    );
    let req = Request::post("/v1/chat/completions")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .expect("request");
    let r = send(&gw.router, req).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(r).await["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn a_panicking_handler_answers_the_openai_500_with_its_request_id() {
    async fn boom() -> &'static str {
        panic!("handler bug")
    }
    let router =
        super::layers::around(axum::Router::new().route("/boom", axum::routing::get(boom)));
    let r = send(&router, get("/boom", None)).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.headers().contains_key("x-request-id"));
    let body = json(r).await;
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["code"], "internal_error");
}

#[tokio::test]
async fn new_surfaces_are_client_routes_and_refuse_in_their_own_shape() {
    let gw = gateway();
    let post = |path: &str| {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .expect("request")
    };
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        let r = send(&gw.router, post(path)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body = json(r).await;
        assert_eq!(body["type"], "error", "{path}: {body}");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    let r = send(&gw.router, post("/v1/responses")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(r).await["error"]["code"], "invalid_api_key");

    let r = send(&gw.router, get("/v1/responses/resp_unknown", Some(KEY))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(r).await["error"]["code"], "response_not_found");

    let by_header = Request::get("/v1/models")
        .header("x-api-key", KEY)
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&gw.router, by_header).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn forced_logins_have_a_cooldown() {
    let gw = gateway();
    let start = |instance: &str| {
        Request::post(format!("/internal/auto-login/start?instance={instance}"))
            .header(header::AUTHORIZATION, format!("Bearer {METRICS}"))
            .body(Body::empty())
            .expect("request")
    };
    // A client key never forces a login.
    let mut by_client = start("inst-0");
    by_client.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {KEY}").parse().expect("value"),
    );
    assert_eq!(send(&gw.router, by_client).await.status(), 403);
    // An unknown instance does not use up anyone's turn.
    assert_eq!(send(&gw.router, start("nope")).await.status(), 404);
    // The first forced login goes to the sidecar (unreachable here: 503)...
    let first = send(&gw.router, start("inst-0")).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    // ...the next one within the cooldown never leaves the gateway.
    let second = send(&gw.router, start("inst-0")).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = second.headers()[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(json(second).await["error"]["code"], "login_cooldown");
}
