//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;
use tower_http::request_id::RequestId;

use super::AppState;
use super::request::read_json_body;
use super::response::{answer_headers, json_headers, sse_headers};
use crate::anthropic::AnthropicError;
use crate::anthropic::request::parse_messages_request;
use crate::anthropic::response::{Message, Usage, content_blocks, new_message_id, stop_reason_str};
use crate::anthropic::stream::EventWriter;
use crate::auth::ClientIdentity;
use crate::chat::tools::{self, Answer, AnswerEvent, collect};
use crate::chat::turns::{estimate_prompt_tokens, render};
use crate::errors::GatewayError;
use crate::observability::request_id;

pub async fn messages(
    State(state): State<AppState>,
    Extension(identity): Extension<ClientIdentity>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Response {
    let arrival = Instant::now();
    let request_id = request_id::text(&request_id);
    let result = serve(&state, identity, request_id.clone(), request, arrival).await;
    super::response::answer_or_refusal(result, &request_id, "messages refused", |e| {
        AnthropicError(e).into_response()
    })
}

async fn serve(
    state: &AppState,
    identity: ClientIdentity,
    request_id: Arc<str>,
    request: Request,
    arrival: Instant,
) -> Result<Response, GatewayError> {
    let decoded = {
        let (parts, body) = request.into_parts();
        let body = read_json_body(&parts.headers, body, state.max_body_bytes).await?;
        parse_messages_request(&body)?
    };
    let thinking = decoded.thinking;
    let stream = decoded.input.stream;
    let answer = tools::start(
        &state.chat,
        &identity,
        request_id.clone(),
        decoded.input,
        arrival,
    )
    .await?;
    let id = new_message_id();
    if stream {
        Ok(stream_response(answer, id, thinking, request_id))
    } else {
        collect_response(answer, id, thinking, request_id).await
    }
}

fn stream_response(
    mut answer: Answer,
    id: String,
    thinking: bool,
    request_id: Arc<str>,
) -> Response {
    let mut headers = sse_headers();
    answer_headers(&mut headers, &answer);
    let body = async_stream::stream! {
        let mut writer = EventWriter::new(thinking);
        yield Ok::<Bytes, Infallible>(writer.start(&id, &answer.model, answer.input_tokens()));
        let mut outcome = "connection_lost";
        while let Some(event) = answer.next().await {
            let frames = match event {
                AnswerEvent::Text(t) => writer.text(&t),
                AnswerEvent::Reasoning(r) => writer.reasoning(&r),
                AnswerEvent::Call(call) => writer.call(&call),
                AnswerEvent::Finish { stop, usage } => {
                    outcome = "ok";
                    writer.finish(stop, Usage {
                        input_tokens: usage.prompt_tokens,
                        output_tokens: usage.completion_tokens,
                    })
                }
                AnswerEvent::Error(e) => {
                    outcome = e.reason();
                    vec![EventWriter::error(&e)]
                }
            };
            for frame in frames {
                yield Ok(frame);
            }
        }
        answer.observe_end(true);
        tracing::info!(request_id = %request_id, sidecar = %answer.sidecar, session = answer.session.as_str(), outcome, "messages streamed");
    };
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

async fn collect_response(
    mut answer: Answer,
    id: String,
    thinking: bool,
    request_id: Arc<str>,
) -> Result<Response, GatewayError> {
    let (out, stop, usage) = collect(&mut answer).await?;
    let message = Message {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &answer.model,
        content: content_blocks(&out, thinking),
        stop_reason: Some(stop_reason_str(stop)),
        stop_sequence: None,
        usage: Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
        },
    };
    let body = serde_json::to_vec(&message).map_err(|_| GatewayError::Internal)?;
    let mut headers = json_headers();
    answer_headers(&mut headers, &answer);
    answer.observe_end(false);
    tracing::info!(request_id = %request_id, sidecar = %answer.sidecar, session = answer.session.as_str(), calls = out.calls.len(), "messages completed");
    Ok((StatusCode::OK, headers, body).into_response())
}

/// `{"input_tokens": n}`: the prompt Lingma would see (tool instructions included),
/// estimated as the sidecar estimates usage.
pub async fn count_tokens(State(state): State<AppState>, request: Request) -> Response {
    let counted = async {
        let (parts, body) = request.into_parts();
        let body = read_json_body(&parts.headers, body, state.max_body_bytes).await?;
        let decoded = parse_messages_request(&body)?;
        let contract = decoded.input.tools.filter(|c| c.is_active());
        let messages = render(&decoded.input.turns, contract.as_ref());
        Ok::<_, GatewayError>(estimate_prompt_tokens(&messages))
    };
    match counted.await {
        Ok(n) => Json(json!({ "input_tokens": n })).into_response(),
        Err(e) => AnthropicError(e).into_response(),
    }
}
