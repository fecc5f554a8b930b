//! `POST /v1/chat/completions`: decode, start the answer in the core, and render SSE
//! chunks or one `chat.completion` body (tool calls included).

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
use super::response::{answer_headers, json_headers, sse_headers};
use crate::auth::ClientIdentity;
use crate::chat::sse::{ChunkWriter, DONE};
use crate::chat::tools::{self, Answer, AnswerEvent, collect};
use crate::errors::GatewayError;
use crate::observability::request_id;
use crate::openai::parse_chat_request;
use crate::openai::response::{
    AssistantMessage, ChatCompletion, Choice, FunctionCallOut, MessageToolCall, finish_reason_str,
};

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(identity): Extension<ClientIdentity>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Response {
    let arrival = Instant::now();
    let request_id = request_id::text(&request_id);
    let result = serve(&state, identity, request_id.clone(), request, arrival).await;
    super::response::answer_or_refusal(
        result,
        &request_id,
        "chat refused",
        IntoResponse::into_response,
    )
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
    let (input, include_usage) = chat.into_input();
    let stream = input.stream;
    let answer = tools::start(&state.chat, &identity, request_id.clone(), input, arrival).await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if stream {
        let writer = ChunkWriter::new(id, created, answer.model.clone(), include_usage);
        Ok(stream_response(answer, writer, request_id))
    } else {
        collect_response(answer, id, created, request_id).await
    }
}

fn stream_response(mut answer: Answer, writer: ChunkWriter, request_id: Arc<str>) -> Response {
    let mut headers = sse_headers();
    answer_headers(&mut headers, &answer);
    let body = async_stream::stream! {
        yield Ok::<Bytes, Infallible>(writer.role());
        let mut outcome = "connection_lost";
        let mut calls = 0u32;
        while let Some(event) = answer.next().await {
            match event {
                AnswerEvent::Text(t) => yield Ok(writer.delta(Some(&t), None)),
                AnswerEvent::Reasoning(r) => yield Ok(writer.delta(None, Some(&r))),
                AnswerEvent::Call(call) => {
                    for frame in writer.tool_call(calls, &call) {
                        yield Ok(frame);
                    }
                    calls += 1;
                }
                AnswerEvent::Finish { stop, usage } => {
                    yield Ok(writer.finish(stop));
                    if let Some(u) = writer.usage(usage.into()) {
                        yield Ok(u);
                    }
                    yield Ok(Bytes::from_static(DONE));
                    outcome = "ok";
                    break;
                }
                AnswerEvent::Error(e) => {
                    outcome = e.reason();
                    yield Ok(ChunkWriter::error(&e));
                    break;
                }
            }
        }
        answer.observe_end(true);
        tracing::info!(request_id = %request_id, sidecar = %answer.sidecar, session = answer.session.as_str(), outcome, calls, "chat streamed");
    };
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

async fn collect_response(
    mut answer: Answer,
    id: String,
    created: u64,
    request_id: Arc<str>,
) -> Result<Response, GatewayError> {
    let (out, stop, usage) = collect(&mut answer).await?;
    let tool_calls: Vec<MessageToolCall<'_>> = out
        .calls
        .iter()
        .map(|c| MessageToolCall {
            id: &c.id,
            kind: "function",
            function: FunctionCallOut {
                name: &c.name,
                arguments: &c.arguments,
            },
        })
        .collect();
    let completion = ChatCompletion {
        id: &id,
        object: "chat.completion",
        created,
        model: &answer.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: (tool_calls.is_empty() || !out.text.is_empty())
                    .then_some(out.text.as_str()),
                refusal: None,
                tool_calls: &tool_calls,
                reasoning_content: (!out.reasoning.is_empty()).then_some(out.reasoning.as_str()),
            },
            logprobs: None,
            finish_reason: finish_reason_str(stop),
        }],
        usage: usage.into(),
        system_fingerprint: None,
    };
    let body = serde_json::to_vec(&completion).map_err(|_| GatewayError::Internal)?;
    let mut headers = json_headers();
    answer_headers(&mut headers, &answer);
    answer.observe_end(false);
    tracing::info!(request_id = %request_id, sidecar = %answer.sidecar, session = answer.session.as_str(), calls = out.calls.len(), "chat completed");
    Ok((StatusCode::OK, headers, body).into_response())
}
