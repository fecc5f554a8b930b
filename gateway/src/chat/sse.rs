//! SSE framing of `chat.completion.chunk`s: role in the first delta, `finish_reason` in the
//! last, an optional usage-only chunk (`choices: []`), then `data: [DONE]`.

use bytes::{BufMut, Bytes, BytesMut};
use tool_calls::ToolCall;

use crate::chat::tools::StopReason;
use crate::errors::GatewayError;
use crate::openai::response::{
    ChatCompletionChunk, ChunkChoice, Delta, FunctionDelta, ToolCallDelta, Usage, UsageField,
    finish_reason_str,
};

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Builds the frames of one streamed completion.
pub struct ChunkWriter {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl ChunkWriter {
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        Self {
            id,
            created,
            model,
            include_usage,
        }
    }

    fn chunk(&self, choices: &[ChunkChoice<'_>], usage: Option<Usage>) -> Bytes {
        let usage = match (self.include_usage, usage) {
            (false, _) => UsageField::Absent,
            (true, None) => UsageField::Null,
            (true, Some(u)) => UsageField::Value(u),
        };
        let chunk = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices,
            usage,
        };
        let mut buf = BytesMut::with_capacity(256);
        buf.put_slice(b"data: ");
        let mut writer = buf.writer();
        if serde_json::to_writer(&mut writer, &chunk).is_err() {
            return Bytes::new();
        }
        let mut buf = writer.into_inner();
        buf.put_slice(b"\n\n");
        buf.freeze()
    }

    /// The first chunk: `{"role":"assistant","content":""}`.
    pub fn role(&self) -> Bytes {
        self.chunk(
            &[ChunkChoice {
                index: 0,
                delta: Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Delta::default()
                },
                logprobs: None,
                finish_reason: None,
            }],
            None,
        )
    }

    pub fn delta(&self, content: Option<&str>, reasoning: Option<&str>) -> Bytes {
        self.chunk(
            &[ChunkChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content,
                    reasoning_content: reasoning,
                    tool_calls: None,
                },
                logprobs: None,
                finish_reason: None,
            }],
            None,
        )
    }

    /// The chunks of one complete tool call, as OpenAI streams them: the opening piece
    /// (index, id, type, name, empty arguments), then the arguments.
    pub fn tool_call(&self, index: u32, call: &ToolCall) -> [Bytes; 2] {
        let piece = |first: bool| {
            self.chunk(
                &[ChunkChoice {
                    index: 0,
                    delta: Delta {
                        tool_calls: Some([ToolCallDelta {
                            index,
                            id: first.then_some(call.id.as_str()),
                            kind: first.then_some("function"),
                            function: FunctionDelta {
                                name: first.then_some(call.name.as_str()),
                                arguments: if first { "" } else { &call.arguments },
                            },
                        }]),
                        ..Delta::default()
                    },
                    logprobs: None,
                    finish_reason: None,
                }],
                None,
            )
        };
        [piece(true), piece(false)]
    }

    pub fn finish(&self, reason: StopReason) -> Bytes {
        self.chunk(
            &[ChunkChoice {
                index: 0,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some(finish_reason_str(reason)),
            }],
            None,
        )
    }

    /// The usage-only chunk, or `None` when the client did not ask for usage.
    pub fn usage(&self, usage: Usage) -> Option<Bytes> {
        self.include_usage.then(|| self.chunk(&[], Some(usage)))
    }

    /// An error after the stream started: an OpenAI error object as one event (the
    /// openai SDKs raise it), and no `[DONE]`.
    pub fn error(err: &GatewayError) -> Bytes {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_slice(b"data: ");
        buf.put_slice(err.body_json().as_bytes());
        buf.put_slice(b"\n\n");
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(frame: &Bytes) -> Value {
        let text = std::str::from_utf8(frame).expect("utf8");
        let json = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .expect("one SSE data frame");
        assert!(!json.contains('\n'), "a frame must be one line");
        serde_json::from_str(json).expect("json")
    }

    #[test]
    fn frames_follow_the_openai_shape() {
        let w = ChunkWriter::new("chatcmpl-1".into(), 7, "gpt-4o".into(), false);
        let first = parse(&w.role());
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
        assert!(
            first.get("usage").is_none(),
            "no usage key without include_usage"
        );
        let d = parse(&w.delta(Some("hi\nthere \"x\""), None));
        assert_eq!(d["choices"][0]["delta"]["content"], "hi\nthere \"x\"");
        assert!(d["choices"][0]["delta"].get("role").is_none());
        let last = parse(&w.finish(StopReason::Stop));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["choices"][0]["delta"], serde_json::json!({}));
        assert_eq!(last["id"], "chatcmpl-1");
        assert_eq!(last["created"], 7);
        assert!(
            w.usage(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3
            })
            .is_none()
        );
    }

    #[test]
    fn include_usage_adds_null_then_a_usage_only_chunk() {
        let w = ChunkWriter::new("c".into(), 1, "m".into(), true);
        assert_eq!(parse(&w.delta(Some("x"), None))["usage"], Value::Null);
        let u = w
            .usage(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
            })
            .expect("usage chunk");
        let u = parse(&u);
        assert_eq!(u["choices"], serde_json::json!([]));
        assert_eq!(u["usage"]["total_tokens"], 3);
    }

    #[test]
    fn tool_calls_stream_as_openai_sends_them() {
        let w = ChunkWriter::new("c".into(), 1, "m".into(), false);
        let call = ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        };
        let [open, args] = w.tool_call(1, &call);
        let open = parse(&open);
        let piece = &open["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(piece["index"], 1);
        assert_eq!(piece["id"], "call_1");
        assert_eq!(piece["type"], "function");
        assert_eq!(piece["function"]["name"], "get_weather");
        assert_eq!(piece["function"]["arguments"], "");
        assert!(open["choices"][0]["delta"].get("content").is_none());
        let args = parse(&args);
        let piece = &args["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(piece["index"], 1);
        assert!(piece.get("id").is_none() && piece.get("type").is_none());
        assert!(piece["function"].get("name").is_none());
        assert_eq!(piece["function"]["arguments"], r#"{"city":"Paris"}"#);
        let last = parse(&w.finish(StopReason::ToolCalls));
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn error_frame_is_an_openai_error() {
        let e = parse(&ChunkWriter::error(&GatewayError::Timeout));
        assert_eq!(e["error"]["code"], "upstream_timeout");
        assert_eq!(DONE, b"data: [DONE]\n\n");
    }
}
