//! `POST /v1/responses` (stream and not) and `GET /v1/responses/{id}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mux_protocol::Role;
use serde_json::Value;
use tower_http::request_id::RequestId;

use super::AppState;
use super::request::read_json_body;
use super::response::{answer_headers, json_headers, sse_headers};
use crate::auth::ClientIdentity;
use crate::chat::tools::{self, Answer, AnswerEvent, Collected, collect};
use crate::chat::turns::{ChatInput, Turn};
use crate::errors::GatewayError;
use crate::observability::metrics::Metrics;
use crate::observability::request_id;
use crate::responses::output::{
    ResponseMeta, final_status, function_call_item, message_item, new_id, usage_json,
};
use crate::responses::request::{DecodedResponses, parse_responses_request};
use crate::responses::stream::EventWriter;
use crate::responses::{ResponseStore, StoredResponse};

pub async fn create_response(
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
        "response refused",
        IntoResponse::into_response,
    )
}

/// A stored response of this API key, as it was returned.
pub async fn get_response(
    State(state): State<AppState>,
    Extension(identity): Extension<ClientIdentity>,
    Path(id): Path<String>,
) -> Response {
    let found = match lookup(&state, &identity.scope, &id).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    match found {
        Some(stored) => {
            let mut r = stored.body.clone().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        None => not_found(&id, None).into_response(),
    }
}

/// A stored response of `scope`; a store that cannot answer is a 503 (not a 404: the
/// response may well exist).
async fn lookup(
    state: &AppState,
    scope: &Arc<str>,
    id: &str,
) -> Result<Option<Arc<StoredResponse>>, GatewayError> {
    state.responses.get(scope, id).await.map_err(|e| {
        state
            .metrics
            .response_store_errors
            .with_label_values(&["get"])
            .inc();
        tracing::warn!(error = %e, "response store lookup failed");
        GatewayError::Unavailable {
            message: "The response store is unavailable; retry later.",
            retry_after_secs: Some(1),
        }
    })
}

fn not_found(id: &str, param: Option<&'static str>) -> GatewayError {
    let shown: String = id.chars().take(100).collect();
    let message = match param {
        Some(_) => format!(
            "Previous response with id '{shown}' not found (responses are kept for a limited time, per API key, and not when stored with store=false)."
        ),
        None => format!("Response with id '{shown}' not found."),
    };
    GatewayError::NotFound {
        message,
        param,
        code: if param.is_some() {
            "previous_response_not_found"
        } else {
            "response_not_found"
        },
    }
}

/// What is kept until the answer ends, to store the conversation.
struct Pending {
    store: Arc<ResponseStore>,
    metrics: Arc<Metrics>,
    scope: Arc<str>,
    conversation: Vec<Turn>,
    enabled: bool,
}

impl Pending {
    /// Store the finished response before its last event or body goes out, so a
    /// follow-up sent the moment the client has it finds it (on any replica with Redis).
    /// A store that fails costs only the continuation by id: logged and counted.
    async fn save(self, id: String, collected: &Collected, response: &Value) {
        if !self.enabled {
            return;
        }
        let mut turns = self.conversation;
        turns.push(if collected.calls.is_empty() {
            Turn::message(Role::Assistant, collected.text.clone())
        } else {
            Turn::AssistantCalls {
                text: collected.text.clone(),
                calls: collected.calls.clone(),
            }
        });
        let stored = StoredResponse {
            turns,
            body: response.to_string(),
        };
        if let Err(e) = self.store.insert(self.scope, id, stored).await {
            self.metrics
                .response_store_errors
                .with_label_values(&["insert"])
                .inc();
            tracing::warn!(error = %e, "response not stored: it cannot be continued by id");
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
    let decoded = {
        let (parts, body) = request.into_parts();
        let body = read_json_body(&parts.headers, body, state.max_body_bytes).await?;
        parse_responses_request(&body)?
    };
    let mut conversation = match &decoded.previous_response_id {
        Some(prev) => lookup(state, &identity.scope, prev)
            .await?
            .ok_or_else(|| not_found(prev, Some("previous_response_id")))?
            .turns
            .clone(),
        None => Vec::new(),
    };
    let DecodedResponses {
        model,
        instructions,
        input,
        previous_response_id,
        stream,
        store,
        user,
        tools: contract,
        echo_tools,
        echo_tool_choice,
        parallel_tool_calls,
        metadata,
    } = decoded;
    conversation.extend(input);
    let mut turns = Vec::with_capacity(conversation.len() + 1);
    if let Some(i) = &instructions {
        turns.push(Turn::message(Role::System, i.clone()));
    }
    turns.extend(conversation.iter().cloned());
    let chat = ChatInput {
        model,
        turns,
        user: user.clone(),
        stream,
        tools: contract,
    };
    let answer = tools::start(&state.chat, &identity, request_id.clone(), chat, arrival).await?;
    let meta = ResponseMeta {
        id: new_id("resp"),
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: answer.model.clone(),
        instructions,
        previous_response_id,
        tools: echo_tools,
        tool_choice: echo_tool_choice,
        parallel_tool_calls,
        metadata,
        store,
        user,
    };
    let pending = Pending {
        store: state.responses.clone(),
        metrics: state.metrics.clone(),
        scope: identity.scope.clone(),
        conversation,
        enabled: store,
    };
    if stream {
        Ok(stream_response(answer, meta, pending, request_id))
    } else {
        collect_response(answer, meta, pending, request_id).await
    }
}

fn stream_response(
    mut answer: Answer,
    meta: ResponseMeta,
    pending: Pending,
    request_id: Arc<str>,
) -> Response {
    let mut headers = sse_headers();
    answer_headers(&mut headers, &answer);
    let id = meta.id.clone();
    let body = async_stream::stream! {
        let mut writer = EventWriter::new(meta);
        for frame in writer.start() {
            yield Ok::<Bytes, Infallible>(frame);
        }
        let mut collected = Collected::default();
        let mut outcome = "connection_lost";
        let mut pending = Some(pending);
        while let Some(event) = answer.next().await {
            let frames = match event {
                AnswerEvent::Text(t) => {
                    collected.text.push_str(&t);
                    writer.text(&t)
                }
                // Lingma's reasoning has no Responses item here (reasoning items carry
                // encrypted content clients send back); it is left out.
                AnswerEvent::Reasoning(_) => Vec::new(),
                AnswerEvent::Call(call) => {
                    let frames = writer.call(&call);
                    collected.calls.push(call);
                    frames
                }
                AnswerEvent::Finish { stop, usage } => {
                    outcome = "ok";
                    let (frames, response) = writer.finish(stop, usage);
                    if let Some(p) = pending.take() {
                        p.save(id.clone(), &collected, &response).await;
                    }
                    frames
                }
                AnswerEvent::Error(e) => {
                    outcome = e.reason();
                    vec![writer.failed(&e)]
                }
            };
            for frame in frames {
                yield Ok(frame);
            }
        }
        answer.observe_end(true);
        tracing::info!(request_id = %request_id, sidecar = %answer.sidecar, session = answer.session.as_str(), outcome, "response streamed");
    };
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

async fn collect_response(
    mut answer: Answer,
    meta: ResponseMeta,
    pending: Pending,
    request_id: Arc<str>,
) -> Result<Response, GatewayError> {
    let (out, stop, usage) = collect(&mut answer).await?;
    let mut output = Vec::with_capacity(out.calls.len() + 1);
    if !out.text.is_empty() || out.calls.is_empty() {
        output.push(message_item(&new_id("msg"), Some(&out.text), "completed"));
    }
    for call in &out.calls {
        output.push(function_call_item(
            &new_id("fc"),
            call,
            &call.arguments,
            "completed",
        ));
    }
    let (status, incomplete) = final_status(stop);
    let response = meta.response(status, &output, Some(usage_json(usage)), None, incomplete);
    pending.save(meta.id.clone(), &out, &response).await;
    let body = serde_json::to_vec(&response).map_err(|_| GatewayError::Internal)?;
    let mut headers = json_headers();
    answer_headers(&mut headers, &answer);
    answer.observe_end(false);
    tracing::info!(request_id = %request_id, sidecar = %answer.sidecar, session = answer.session.as_str(), calls = out.calls.len(), "response completed");
    Ok((StatusCode::OK, headers, body).into_response())
}
