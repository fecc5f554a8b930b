//! The tool layer over [`AcceptedChat`]: one [`Answer`] stream of text, reasoning and
//! complete tool calls that every surface renders in its own wire format.
//!
//! With an active tool contract the answer's text goes through the contract's
//! `StreamParser`: text that is clearly not part of a call streams at once, a call is
//! emitted only when complete and valid. When the answer breaks the contract (a malformed
//! call, or no call when one was required) and nothing has been emitted as a call yet, the
//! model gets one corrective re-ask on the same upstream session (the conversation key of
//! the re-ask is the continuation key of the failed turn, so the sidecar continues it);
//! a second failure is a clear error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use mux_protocol::{ChatMessage, ErrorKind, FinishReason, Role, Usage};
use tool_calls::{
    ParseEvent, ParseFailure, StreamParser, ToolCall, ToolChoice, ToolContract, ToolSpec,
};

use super::core::{AcceptedChat, ChatEvent, ChatService, PreparedChat, SessionHeader};
use super::turns::{ChatInput, render};
use crate::auth::ClientIdentity;
use crate::errors::GatewayError;
use crate::models::resolve_model;
use crate::routing::affinity_key;

/// Why an answer ended, in the core's terms; each surface names it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Stop,
    Length,
    ContentFilter,
    ToolCalls,
}

impl From<FinishReason> for StopReason {
    fn from(r: FinishReason) -> Self {
        match r {
            FinishReason::Stop => Self::Stop,
            FinishReason::Length => Self::Length,
            FinishReason::ContentFilter => Self::ContentFilter,
        }
    }
}

/// One event of an answer.
#[derive(Debug)]
pub enum AnswerEvent {
    Text(String),
    Reasoning(String),
    Call(ToolCall),
    Finish { stop: StopReason, usage: Usage },
    Error(GatewayError),
}

/// Everything an answer said, for the surfaces that answer with one body.
#[derive(Debug, Default)]
pub struct Collected {
    pub text: String,
    pub reasoning: String,
    pub calls: Vec<ToolCall>,
}

/// Drain an answer: its text, reasoning, calls, stop reason and usage, or its error.
pub async fn collect(
    answer: &mut Answer,
) -> Result<(Collected, StopReason, mux_protocol::Usage), GatewayError> {
    let mut out = Collected::default();
    loop {
        match answer.next().await {
            Some(AnswerEvent::Text(t)) => out.text.push_str(&t),
            Some(AnswerEvent::Reasoning(r)) => out.reasoning.push_str(&r),
            Some(AnswerEvent::Call(c)) => out.calls.push(c),
            Some(AnswerEvent::Finish { stop, usage }) => return Ok((out, stop, usage)),
            Some(AnswerEvent::Error(e)) => {
                answer.observe_end(false);
                return Err(e);
            }
            None => return Err(GatewayError::Internal),
        }
    }
}

/// The tool contract of a request, or a 400 naming `tools` or `choice_param` (the
/// surface's name for the tool choice) when they cannot make one.
pub fn build_contract(
    specs: Vec<ToolSpec>,
    choice: ToolChoice,
    parallel: bool,
    choice_param: &'static str,
) -> Result<ToolContract, GatewayError> {
    ToolContract::new(specs, choice, parallel).map_err(|e| {
        let field = e.param();
        let param = if field.starts_with("tool_choice") {
            choice_param
        } else {
            "tools"
        };
        GatewayError::invalid(
            format!(
                "Invalid {field}: {}.",
                crate::quote::shorten_quoted_runs(&e.to_string())
            ),
            Some(param),
        )
    })
}

/// What a re-ask needs to start the same chat again with more turns.
struct Basis {
    request_id: Arc<str>,
    lingma_model: Option<String>,
    scope: Arc<str>,
    affinity: u64,
    stream: bool,
    messages: Vec<ChatMessage>,
    key: Arc<crate::keys::VirtualKey>,
}

impl Basis {
    fn prepared(&self) -> PreparedChat {
        PreparedChat {
            request_id: self.request_id.clone(),
            lingma_model: self.lingma_model.clone(),
            messages: self.messages.clone(),
            scope: self.scope.clone(),
            affinity: self.affinity,
            conversation_key: mux_protocol::conversation_key(&self.scope, &self.messages),
            continuation_key: mux_protocol::continuation_key(&self.scope, &self.messages),
            stream: self.stream,
            key: self.key.clone(),
        }
    }
}

/// An accepted chat seen through the tool contract. Dropping it drops the chat (frees the
/// slot, cancels upstream).
pub struct Answer {
    /// The model name to echo back (the client's, else DEFAULT_MODEL).
    pub model: String,
    /// `x-lingma-session` of the first attempt (the one the headers report).
    pub session: SessionHeader,
    pub sidecar: Arc<str>,
    chat: Option<AcceptedChat>,
    service: Arc<ChatService>,
    basis: Basis,
    contract: Option<ToolContract>,
    parser: Option<StreamParser>,
    /// The raw text of the current attempt (what a re-ask shows the model).
    raw: String,
    /// Text held back while a required call has not appeared (dropped on a re-ask).
    held: Option<String>,
    calls: usize,
    reasked: bool,
    usage: Usage,
    queue: VecDeque<AnswerEvent>,
    done: bool,
    /// Time the first attempt waited queued for a slot (`x-lingma-queue-wait-ms`).
    pub queue_wait: std::time::Duration,
    /// The request's place in its key's `max_concurrent`, held to the end of the answer.
    _key_pass: crate::keys::KeyPass,
    /// Estimated prompt tokens of the request, taken before its messages are dropped.
    input_tokens: u32,
}

/// Decode-independent start of a chat: resolve the model, render the turns, admit and
/// route it, and wrap the accepted chat in the tool layer.
pub async fn start(
    service: &Arc<ChatService>,
    identity: &ClientIdentity,
    request_id: Arc<str>,
    input: ChatInput,
    arrival: Instant,
) -> Result<Answer, GatewayError> {
    let lingma_model = resolve_model(
        input.model.as_deref(),
        &service.pool.models(),
        &service.settings.default_model,
    )?;
    let model = input
        .model
        .clone()
        .unwrap_or_else(|| service.settings.default_model.clone());
    let key_pass = service
        .limiter
        .admit_key(&identity.key, &model, &service.pool)?;
    let contract = input.tools.filter(ToolContract::is_active);
    let messages = render(&input.turns, contract.as_ref());
    let scope = identity.scope.clone();
    let mut basis = Basis {
        affinity: affinity_key(&scope, input.user.as_deref(), &messages),
        request_id,
        lingma_model,
        scope,
        stream: input.stream,
        messages,
        key: identity.key.clone(),
    };
    let chat = service.start(basis.prepared(), arrival).await?;
    let queue_wait = chat.queue_wait();
    let input_tokens = super::turns::estimate_prompt_tokens(&basis.messages);
    if contract.is_none() {
        // Only a corrective re-ask reads the request's messages again; without a tool
        // contract there is none, so a stream (which may be open for minutes) does not
        // keep the whole conversation alive.
        basis.messages = Vec::new();
    }
    Ok(Answer {
        input_tokens,
        model,
        session: chat.session,
        sidecar: chat.sidecar.clone(),
        chat: Some(chat),
        service: service.clone(),
        parser: contract.as_ref().map(ToolContract::parser),
        held: contract
            .as_ref()
            .filter(|c| c.requires_call())
            .map(|_| String::new()),
        contract,
        basis,
        raw: String::new(),
        calls: 0,
        reasked: false,
        usage: Usage::default(),
        queue: VecDeque::new(),
        done: false,
        queue_wait,
        _key_pass: key_pass,
    })
}

impl Answer {
    /// The next event; `None` after `Finish` or `Error`.
    pub async fn next(&mut self) -> Option<AnswerEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let Some(chat) = self.chat.as_mut() else {
                self.done = true;
                return None;
            };
            match chat.next().await {
                Some(ChatEvent::Delta { content, reasoning }) => {
                    if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
                        self.queue.push_back(AnswerEvent::Reasoning(r));
                    }
                    if let Some(c) = content.filter(|c| !c.is_empty()) {
                        self.text(c);
                    }
                }
                Some(ChatEvent::Finish {
                    finish_reason,
                    usage,
                }) => self.finish(finish_reason, usage).await,
                Some(ChatEvent::Error(e)) => self.fail(e),
                None => self.fail(GatewayError::Internal),
            }
        }
    }

    fn text(&mut self, chunk: String) {
        let Some(parser) = self.parser.as_mut() else {
            self.queue.push_back(AnswerEvent::Text(chunk));
            return;
        };
        self.raw.push_str(&chunk);
        let events = parser.push(&chunk);
        self.take(events);
    }

    fn take(&mut self, events: Vec<ParseEvent>) {
        for event in events {
            match event {
                ParseEvent::Text(t) => match self.held.as_mut() {
                    Some(held) => held.push_str(&t),
                    None => self.queue.push_back(AnswerEvent::Text(t)),
                },
                ParseEvent::Call(call) => {
                    if let Some(held) = self.held.take().filter(|h| !h.is_empty()) {
                        self.queue.push_back(AnswerEvent::Text(held));
                    }
                    self.calls += 1;
                    self.service.metrics.tool_calls.inc();
                    self.queue.push_back(AnswerEvent::Call(call));
                }
            }
        }
    }

    async fn finish(&mut self, reason: FinishReason, usage: Usage) {
        self.add_usage(usage);
        let Some(mut parser) = self.parser.take() else {
            self.end(reason.into());
            return;
        };
        match parser.finish() {
            Ok(events) => {
                self.take(events);
                self.end(reason.into());
            }
            Err(failure) => {
                self.service
                    .metrics
                    .tool_parse_failures
                    .with_label_values(&[failure.kind()])
                    .inc();
                tracing::info!(request_id = %self.basis.request_id, kind = failure.kind(), reasked = self.reasked, calls = self.calls, "answer broke the tool contract");
                if self.calls > 0 {
                    // Valid calls already went out: a re-ask could repeat them. The broken
                    // rest is dropped, never sent as a call.
                    self.end(reason.into());
                } else if self.reasked {
                    self.fail(GatewayError::Upstream {
                        kind: ErrorKind::Upstream,
                        message: format!(
                            "The model did not produce a valid tool call after a corrective re-ask ({}).",
                            failure.kind()
                        ),
                    });
                } else {
                    self.reask(&failure).await;
                }
            }
        }
    }

    fn end(&mut self, reason: StopReason) {
        if let Some(held) = self.held.take().filter(|h| !h.is_empty()) {
            self.queue.push_back(AnswerEvent::Text(held));
        }
        let stop = if self.calls > 0 {
            StopReason::ToolCalls
        } else {
            reason
        };
        self.queue.push_back(AnswerEvent::Finish {
            stop,
            usage: self.usage,
        });
        self.done = true;
    }

    fn fail(&mut self, e: GatewayError) {
        self.queue.push_back(AnswerEvent::Error(e));
        self.done = true;
    }

    /// Ask again on the same upstream session: the failed answer and the contract's
    /// correction become two more turns.
    async fn reask(&mut self, failure: &ParseFailure) {
        let Some(contract) = self.contract.as_ref() else {
            self.fail(GatewayError::Internal);
            return;
        };
        let correction = contract.corrective_message(failure);
        self.basis.messages.push(ChatMessage {
            role: Role::Assistant,
            content: std::mem::take(&mut self.raw),
        });
        self.basis.messages.push(ChatMessage {
            role: Role::User,
            content: correction,
        });
        self.parser = Some(contract.parser());
        self.held = contract.requires_call().then(String::new);
        self.reasked = true;
        self.service.metrics.tool_reasks.inc();
        // The finished first attempt still holds its slot: free it before queueing again.
        // The re-ask gets its own queue deadline (the first attempt may have taken longer
        // than the whole queue timeout); duration and overhead are recorded once, for it.
        drop(self.chat.take());
        match self
            .service
            .start(self.basis.prepared(), Instant::now())
            .await
        {
            Ok(chat) => self.chat = Some(chat),
            Err(e) => self.fail(e),
        }
    }

    fn add_usage(&mut self, u: Usage) {
        self.usage.prompt_tokens = self.usage.prompt_tokens.saturating_add(u.prompt_tokens);
        self.usage.completion_tokens = self
            .usage
            .completion_tokens
            .saturating_add(u.completion_tokens);
        self.usage.total_tokens = self.usage.total_tokens.saturating_add(u.total_tokens);
        self.usage.estimated |= u.estimated;
    }

    /// Estimated prompt tokens (before the sidecar reports usage at the end).
    pub fn input_tokens(&self) -> u32 {
        self.input_tokens
    }

    /// Wait and overhead so far of the current attempt (`x-lingma-overhead-us`).
    pub fn overhead(&self) -> std::time::Duration {
        self.chat
            .as_ref()
            .map_or_else(Default::default, |c| c.timing.overhead())
    }

    /// Record duration and overhead; call once at the end of the response.
    pub fn observe_end(&self, stream: bool) {
        if let Some(chat) = &self.chat {
            chat.observe_end(stream);
        }
    }
}
