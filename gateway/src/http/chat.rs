//! `POST /v1/chat/completions`: parse, call the core, and render SSE or one JSON body.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::RequestId;

use super::AppState;
use super::request::read_json_body;
use super::response::{chat_headers, json_headers, sse_headers};
use crate::auth::ClientIdentity;
use crate::chat::sse::{ChunkWriter, DONE};
use crate::chat::{AcceptedChat, ChatEvent, PreparedChat};
use crate::errors::GatewayError;
use crate::models::resolve_model;
use crate::observability::request_id;
use crate::openai::response::{AssistantMessage, ChatCompletion, Choice, finish_reason_str};
use crate::openai::{ValidatedChat, parse_chat_request};
use crate::routing::affinity_key;

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(identity): Extension<ClientIdentity>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Response {
    let arrival = Instant::now();
    let request_id = request_id::text(&request_id);
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

fn stream_response(
    mut accepted: AcceptedChat,
    writer: ChunkWriter,
    request_id: Arc<str>,
) -> Response {
    let mut headers = sse_headers();
    chat_headers(&mut headers, &accepted);
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

/// The whole answer of a non-streaming chat: its text, reasoning, finish reason and usage.
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
    let mut headers = json_headers();
    chat_headers(&mut headers, &accepted);
    accepted.observe_end(false);
    tracing::info!(request_id = %request_id, sidecar = %accepted.sidecar, session = accepted.session.as_str(), duration_ms = accepted.timing.arrival.elapsed().as_millis() as u64, "chat completed");
    Ok((StatusCode::OK, headers, body).into_response())
}
