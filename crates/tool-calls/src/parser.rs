//! [`StreamParser`]: answer text in, [`ParseEvent`]s out, for any split of the text.
//!
//! Text streams out as soon as it cannot be the start of a call: only a possible prefix of
//! `<tool_call>` (or a run of backticks, whose length decides code vs prose) is held back. After
//! the marker the parser commits to a call only when the next non-blank character opens a JSON
//! object (optionally after a ```` ```json ```` fence line); anything else makes the marker prose.
//! The JSON body delimits itself (strings and nesting are tracked), so `</tool_call>` inside an
//! argument string cannot end the block early; the closing marker itself is optional.

use crate::contract::ToolContract;
use crate::failure::ParseFailure;
use crate::markdown::Markdown;
use crate::spec::{ToolCall, ToolChoice};
use crate::{CALL_CLOSE, CALL_OPEN, EXCERPT_CHARS, MAX_CALL_BYTES, excerpt};
use serde_json::Value;

/// Longest blank (or fence) gap between the markers and the JSON body that is still a call.
const MAX_GAP: usize = 64;
/// Longest backtick run held back to learn its length; longer runs count as this long (so the
/// meaning of a run never depends on where the input was split).
const MAX_RUN: usize = 16;

/// What the parser found in the answer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseEvent {
    /// Answer text that is not part of a call (adjacent text is merged within one batch).
    Text(String),
    /// A complete call whose arguments match its tool's schema.
    Call(ToolCall),
}

#[derive(Debug)]
enum State {
    Text,
    /// Saw the opening marker; `held` is the marker and the gap after it.
    Opening {
        held: String,
    },
    /// Inside the JSON body.
    Body {
        body: String,
        scan: JsonScan,
    },
    /// Body complete and valid; waiting for the optional closing marker.
    Closing {
        call: ToolCall,
        held: String,
    },
    Failed(ParseFailure),
}

/// Where a JSON text is: nesting depth and string state, enough to find where it ends.
#[derive(Debug, Default)]
struct JsonScan {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonScan {
    /// Account for one byte; true when it closes the outermost value.
    fn step(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return false;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

/// Result of one state's step over the pending text.
enum Step {
    /// Consumed this many bytes; run the (possibly new) state again.
    Consumed(usize),
    /// Consumed this many bytes and needs more input to decide.
    NeedMore(usize),
}

/// Parses one answer under a [`ToolContract`]. Feed it with [`StreamParser::push`], end it with
/// [`StreamParser::finish`].
#[derive(Debug)]
pub struct StreamParser {
    contract: ToolContract,
    active: bool,
    /// Input not yet decided (bounded, except inside a call body).
    pending: String,
    state: State,
    md: Markdown,
    calls: usize,
    /// Drop blanks at the start of the answer and right after a call (they separate blocks;
    /// they are not content, and a client should not get a whitespace-only text part).
    skip_blanks: bool,
    /// The previous piece ended in a run of `MAX_RUN` backticks: more backticks continue it.
    long_run: bool,
    finished: bool,
}

impl StreamParser {
    pub(crate) fn new(contract: ToolContract) -> Self {
        Self {
            active: contract.is_active(),
            contract,
            pending: String::new(),
            state: State::Text,
            md: Markdown::default(),
            calls: 0,
            skip_blanks: true,
            long_run: false,
            finished: false,
        }
    }

    /// Feed the next piece of the answer.
    pub fn push(&mut self, text: &str) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if !self.active {
            push_text(&mut out, text);
            return out;
        }
        self.pending.push_str(text);
        self.run(&mut out, false);
        out
    }

    /// The answer is complete: flush held-back text, or say why no valid calls came out.
    pub fn finish(&mut self) -> Result<Vec<ParseEvent>, ParseFailure> {
        let mut out = Vec::new();
        if self.finished {
            return Ok(out);
        }
        self.finished = true;
        if !self.active {
            return Ok(out);
        }
        self.run(&mut out, true);
        if let State::Failed(failure) = &self.state {
            return Err(failure.clone());
        }
        if self.calls == 0 && self.contract.requires_call() {
            let tool = match self.contract.choice() {
                ToolChoice::Named(name) => Some(excerpt(name, 64)),
                _ => None,
            };
            return Err(ParseFailure::NoCall { tool });
        }
        Ok(out)
    }

    /// Calls emitted so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    fn run(&mut self, out: &mut Vec<ParseEvent>, at_end: bool) {
        let pending = std::mem::take(&mut self.pending);
        let mut pos = 0;
        loop {
            let rest = &pending[pos..];
            let step = match &self.state {
                State::Text => self.text(rest, at_end, out),
                State::Opening { .. } => self.opening(rest, at_end, out),
                State::Body { .. } => self.body(rest, at_end),
                State::Closing { .. } => self.closing(rest, at_end, out),
                State::Failed(_) => Step::NeedMore(rest.len()),
            };
            match step {
                Step::Consumed(n) => pos += n,
                Step::NeedMore(n) => {
                    pos += n;
                    break;
                }
            }
        }
        if let Some(rest) = pending.get(pos..) {
            self.pending = rest.to_owned();
        }
    }

    fn text(&mut self, rest: &str, at_end: bool, out: &mut Vec<ParseEvent>) -> Step {
        let bytes = rest.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b != b'`' {
                self.long_run = false;
            }
            if self.skip_blanks {
                if b.is_ascii_whitespace() {
                    i += 1;
                    start = i;
                    continue;
                }
                self.skip_blanks = false;
            }
            match b {
                b'\n' => self.md.newline(),
                b' ' | b'\t' | b'\r' => {}
                b'`' => {
                    let run = bytes[i..].iter().take_while(|&&c| c == b'`').count();
                    let continues = i == 0 && self.long_run;
                    if i + run == bytes.len() && !at_end && run < MAX_RUN && !continues {
                        push_text(out, &rest[start..i]);
                        return Step::NeedMore(i);
                    }
                    if !continues {
                        self.md.backticks(run.min(MAX_RUN));
                    }
                    self.long_run = i + run == bytes.len() && (run >= MAX_RUN || continues);
                    i += run;
                    continue;
                }
                b'<' if self.md.is_prose() => {
                    let tail = &rest[i..];
                    if tail.starts_with(CALL_OPEN) {
                        push_text(out, &rest[start..i]);
                        self.state = State::Opening {
                            held: CALL_OPEN.to_owned(),
                        };
                        return Step::Consumed(i + CALL_OPEN.len());
                    }
                    if !at_end && CALL_OPEN.starts_with(tail) {
                        push_text(out, &rest[start..i]);
                        return Step::NeedMore(i);
                    }
                    self.md.other();
                }
                _ => self.md.other(),
            }
            i += 1;
        }
        push_text(out, &rest[start..]);
        Step::NeedMore(bytes.len())
    }

    /// After `<tool_call>`: a JSON object (maybe after a fence line) makes it a call.
    fn opening(&mut self, rest: &str, at_end: bool, out: &mut Vec<ParseEvent>) -> Step {
        let State::Opening { held } = &mut self.state else {
            return Step::Consumed(0);
        };
        for (i, b) in rest.bytes().enumerate() {
            let gap = gap_of(&held[CALL_OPEN.len()..]);
            if b == b'{' && matches!(gap.as_str(), "" | "```" | "```json") {
                self.state = State::Body {
                    body: "{".to_owned(),
                    scan: JsonScan {
                        depth: 1,
                        ..JsonScan::default()
                    },
                };
                return Step::Consumed(i + 1);
            }
            let fits = b.is_ascii_whitespace() || {
                let mut next = gap;
                next.push(char::from(b));
                "```json".starts_with(&next)
            };
            if !fits || held.len() >= CALL_OPEN.len() + MAX_GAP {
                // Not a call: the marker was prose.
                self.abandon_opening(out);
                return Step::Consumed(i);
            }
            held.push(char::from(b));
        }
        if at_end {
            self.abandon_opening(out);
        }
        Step::NeedMore(rest.len())
    }

    fn abandon_opening(&mut self, out: &mut Vec<ParseEvent>) {
        if let State::Opening { held } = std::mem::replace(&mut self.state, State::Text) {
            self.md.other();
            self.md.feed(&held[1..]);
            push_text(out, &held);
        }
    }

    fn body(&mut self, rest: &str, at_end: bool) -> Step {
        let State::Body { body, scan } = &mut self.state else {
            return Step::Consumed(0);
        };
        let end = rest.bytes().position(|b| scan.step(b));
        let take = end.map_or(rest.len(), |e| e + 1);
        if body.len() + take > MAX_CALL_BYTES {
            self.state = State::Failed(ParseFailure::TooLarge {
                limit: MAX_CALL_BYTES,
            });
            return Step::Consumed(take);
        }
        body.push_str(&rest[..take]);
        if end.is_some() {
            let body = std::mem::take(body);
            self.state = match self.complete_call(&body) {
                Ok(call) => State::Closing {
                    call,
                    held: String::new(),
                },
                Err(failure) => State::Failed(failure),
            };
            return Step::Consumed(take);
        }
        if at_end {
            self.state = State::Failed(ParseFailure::Incomplete);
        }
        Step::NeedMore(take)
    }

    /// After a complete body: the optional `</tool_call>` (maybe after a closing fence).
    fn closing(&mut self, rest: &str, at_end: bool, out: &mut Vec<ParseEvent>) -> Step {
        let State::Closing { held, .. } = &mut self.state else {
            return Step::Consumed(0);
        };
        for (i, b) in rest.bytes().enumerate() {
            if b == b'<' {
                let tail = &rest[i..];
                if tail.starts_with(CALL_CLOSE) {
                    self.emit_call(out);
                    return Step::Consumed(i + CALL_CLOSE.len());
                }
                if !at_end && CALL_CLOSE.starts_with(tail) {
                    return Step::NeedMore(i);
                }
            }
            let fits = b.is_ascii_whitespace() || (b == b'`' && gap_of(held).len() < 3);
            if !fits || held.len() >= MAX_GAP {
                // No closing marker: the call stands; what follows is text.
                self.emit_call(out);
                return Step::Consumed(i);
            }
            held.push(char::from(b));
        }
        if at_end {
            self.emit_call(out);
        }
        Step::NeedMore(rest.len())
    }

    fn emit_call(&mut self, out: &mut Vec<ParseEvent>) {
        if let State::Closing { call, .. } = std::mem::replace(&mut self.state, State::Text) {
            self.calls += 1;
            self.skip_blanks = true;
            self.long_run = false;
            self.md = Markdown::default();
            out.push(ParseEvent::Call(call));
        }
    }

    /// Turn a complete call body into a validated call.
    fn complete_call(&self, body: &str) -> Result<ToolCall, ParseFailure> {
        let malformed = |detail: &str| ParseFailure::Malformed {
            detail: detail.to_owned(),
        };
        let value: Value = serde_json::from_str(body).map_err(|e| ParseFailure::Malformed {
            detail: excerpt(&format!("invalid JSON ({e})"), EXCERPT_CHARS),
        })?;
        let Value::Object(mut object) = value else {
            return Err(malformed("the block must hold one JSON object"));
        };
        let Some(Value::String(name)) = object.remove("name") else {
            return Err(malformed("missing \"name\" string"));
        };
        let arguments = ["arguments", "parameters", "input"]
            .iter()
            .find_map(|key| object.remove(*key));
        let arguments = match arguments {
            None => Value::Object(serde_json::Map::new()),
            // Some models write the arguments as a JSON string, as in OpenAI's wire format.
            Some(Value::String(text)) => serde_json::from_str(&text)
                .map_err(|_| malformed("\"arguments\" is a string that is not JSON"))?,
            Some(other) => other,
        };
        if !arguments.is_object() {
            return Err(malformed("\"arguments\" must be a JSON object"));
        }
        let Some(index) = self.contract.tool_index(&name) else {
            return Err(ParseFailure::UnknownTool {
                name: excerpt(&name, 64),
            });
        };
        if let ToolChoice::Named(expected) = self.contract.choice()
            && *expected != name
        {
            return Err(ParseFailure::WrongTool {
                expected: excerpt(expected, 64),
                got: excerpt(&name, 64),
            });
        }
        if self.calls >= 1 && !self.contract.parallel() {
            return Err(ParseFailure::MultipleCalls);
        }
        self.contract
            .check_arguments(index, &arguments)
            .map_err(|detail| ParseFailure::InvalidArguments {
                tool: excerpt(&name, 64),
                detail,
            })?;
        let arguments = serde_json::to_string(&arguments)
            .map_err(|_| malformed("arguments cannot be serialized"))?;
        Ok(ToolCall::with_new_id(name, arguments))
    }
}

/// The non-blank characters of a gap.
fn gap_of(held: &str) -> String {
    held.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// Append text to the batch, merging with a preceding text event.
fn push_text(out: &mut Vec<ParseEvent>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(ParseEvent::Text(last)) = out.last_mut() {
        last.push_str(text);
    } else {
        out.push(ParseEvent::Text(text.to_owned()));
    }
}
