//! `POST /v1/chat/completions`: parse, call the core, and render SSE or one JSON body.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::core::{AcceptedChat, ChatEvent, PreparedChat};
use super::sse::{ChunkWriter, DONE};
use crate::auth::ClientIdentity;
use crate::errors::GatewayError;
use crate::models::resolve_model;
use crate::observability::request_id::RequestId;
use crate::openai::response::{AssistantMessage, ChatCompletion, Choice, finish_reason_str};
use crate::openai::{ValidatedChat, parse_chat_request};
use crate::routing::affinity_key;
use crate::server::AppState;

static SESSION: HeaderName = HeaderName::from_static("x-lingma-session");
static SIDECAR: HeaderName = HeaderName::from_static("x-lingma-sidecar");
static OVERHEAD: HeaderName = HeaderName::from_static("x-lingma-overhead-us");
static ACCEL: HeaderName = HeaderName::from_static("x-accel-buffering");

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(identity): Extension<ClientIdentity>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    request: Request,
) -> Response {
    let arrival = Instant::now();
    match serve(&state, identity, request_id.clone(), request, arrival).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(request_id = %request_id, status = e.status().as_u16(), reason = e.reason(), "chat refused");
            e.into_response()
        }
    }
}

async fn serve(
    state: &AppState,
    identity: ClientIdentity,
    request_id: Arc<str>,
    request: Request,
    arrival: Instant,
) -> Result<Response, GatewayError> {
    let chat = {
        // The raw request and body are dropped here: an open stream (which may wait long
        // for its first token) should not keep them alive.
        let (parts, body) = request.into_parts();
        let body = read_json_body(&parts.headers, body, state.max_body_bytes).await?;
        parse_chat_request(&body)?
    };
    let service = state.chat.clone();
    let lingma_model = resolve_model(
        chat.model.as_deref(),
        &service.pool.models(),
        &service.settings.default_model,
    )?;
    let echo_model = chat
        .model
        .clone()
        .unwrap_or_else(|| service.settings.default_model.clone());
    let (stream, include_usage) = (chat.stream, chat.include_usage);
    let prepared = prepare(chat, &identity, request_id.clone(), lingma_model);
    let accepted = service.start(prepared, arrival).await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if stream {
        Ok(stream_response(
            accepted,
            ChunkWriter::new(id, created, echo_model, include_usage),
            request_id,
        ))
    } else {
        collect_response(accepted, id, created, &echo_model, request_id).await
    }
}

fn prepare(
    chat: ValidatedChat,
    identity: &ClientIdentity,
    request_id: Arc<str>,
    lingma_model: Option<String>,
) -> PreparedChat {
    let scope = identity.scope.clone();
    PreparedChat {
        affinity: affinity_key(&scope, chat.user.as_deref(), &chat.messages),
        conversation_key: mux_protocol::conversation_key(&scope, &chat.messages),
        continuation_key: mux_protocol::continuation_key(&scope, &chat.messages),
        request_id,
        lingma_model,
        messages: chat.messages,
        scope,
        stream: chat.stream,
    }
}

/// Read the body with a size limit; a present, non-JSON content type is refused.
async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            crate::auth::drain_body(body).await;
            return Err(GatewayError::UnsupportedMediaType);
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // axum reports the limit through http-body-util's private `LengthLimitError`;
        // its text is the only stable handle on it.
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(err) = source {
            if err.to_string().contains("length limit exceeded") {
                return GatewayError::PayloadTooLarge { limit };
            }
            source = err.source();
        }
        GatewayError::invalid("Could not read the request body.", None)
    })
}

fn common_headers(headers: &mut HeaderMap, accepted: &AcceptedChat) {
    headers.insert(
        SESSION.clone(),
        HeaderValue::from_static(accepted.session.as_str()),
    );
    if let Ok(v) = HeaderValue::from_str(&accepted.sidecar) {
        headers.insert(SIDECAR.clone(), v);
    }
    let overhead_us = u64::try_from(accepted.timing.overhead().as_micros()).unwrap_or(u64::MAX);
    headers.insert(OVERHEAD.clone(), HeaderValue::from(overhead_us));
}

fn stream_response(
    mut accepted: AcceptedChat,
    writer: ChunkWriter,
    request_id: Arc<str>,
) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ACCEL.clone(), HeaderValue::from_static("no"));
    common_headers(&mut headers, &accepted);
    let body = async_stream::stream! {
        yield Ok::<Bytes, Infallible>(writer.role());
        let mut outcome = "connection_lost";
        while let Some(event) = accepted.next().await {
            match event {
                ChatEvent::Delta { content, reasoning } => {
                    yield Ok(writer.delta(content.as_deref(), reasoning.as_deref()));
                }
                ChatEvent::Finish { finish_reason, usage } => {
                    yield Ok(writer.finish(finish_reason));
                    if let Some(u) = writer.usage(usage.into()) {
                        yield Ok(u);
                    }
                    yield Ok(Bytes::from_static(DONE));
                    outcome = "ok";
                    break;
                }
                ChatEvent::Error(e) => {
                    outcome = e.reason();
                    yield Ok(ChunkWriter::error(&e));
                    break;
                }
            }
        }
        accepted.observe_end(true);
        tracing::info!(request_id = %request_id, sidecar = %accepted.sidecar, session = accepted.session.as_str(), outcome, duration_ms = accepted.timing.arrival.elapsed().as_millis() as u64, "chat streamed");
    };
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

async fn collect_response(
    mut accepted: AcceptedChat,
    id: String,
    created: u64,
    model: &str,
    request_id: Arc<str>,
) -> Result<Response, GatewayError> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let (finish_reason, usage) = loop {
        match accepted.next().await {
            Some(ChatEvent::Delta {
                content: c,
                reasoning: r,
            }) => {
                if let Some(c) = c {
                    content.push_str(&c);
                }
                if let Some(r) = r {
                    reasoning.push_str(&r);
                }
            }
            Some(ChatEvent::Finish {
                finish_reason,
                usage,
            }) => break (finish_reason, usage),
            Some(ChatEvent::Error(e)) => {
                accepted.observe_end(false);
                return Err(e);
            }
            None => return Err(GatewayError::Internal),
        }
    };
    let completion = ChatCompletion {
        id: &id,
        object: "chat.completion",
        created,
        model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: &content,
                refusal: None,
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning.as_str()),
            },
            logprobs: None,
            finish_reason: finish_reason_str(finish_reason),
        }],
        usage: usage.into(),
        system_fingerprint: None,
    };
    let body = serde_json::to_vec(&completion).map_err(|_| GatewayError::Internal)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    common_headers(&mut headers, &accepted);
    accepted.observe_end(false);
    tracing::info!(request_id = %request_id, sidecar = %accepted.sidecar, session = accepted.session.as_str(), duration_ms = accepted.timing.arrival.elapsed().as_millis() as u64, "chat completed");
    Ok((StatusCode::OK, headers, body).into_response())
}
