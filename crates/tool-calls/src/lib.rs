//! Emulated tool calling. Lingma's chat has no native tools, so the gateway renders a *tool
//! contract* (the tools, their JSON-schema parameters, the tool choice) into the prompt as a
//! system message, and parses tool calls out of the streamed answer. The syntax the model is
//! asked to write is one block per call, JSON inside so no tool name ever needs escaping:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```
//!
//! Pure core, no I/O: [`ToolContract`] (validated tools + choice) renders the instructions,
//! the corrective re-ask and replays earlier tool turns; [`StreamParser`] turns answer text,
//! in arbitrary splits, into [`ParseEvent`]s (text as soon as it is clearly not part of a call,
//! calls only once complete and valid against their schema). [`detect`] and [`example`] are
//! for the simulator, which answers the contract it finds in a question. The format and its
//! limits are documented in `docs/tool-calling.md`.

mod contract;
pub mod detect;
pub mod example;
mod failure;
mod markdown;
mod parser;
mod render;
mod spec;

pub use contract::{ContractError, ToolContract};
pub use failure::ParseFailure;
pub use parser::{ParseEvent, StreamParser};
pub use render::{render_assistant_turn, render_tool_result};
pub use spec::{ToolCall, ToolChoice, ToolSpec, new_call_id};

/// Opening marker of a call block.
pub const CALL_OPEN: &str = "<tool_call>";
/// Closing marker of a call block (optional after a complete JSON body).
pub const CALL_CLOSE: &str = "</tool_call>";
/// First line of the rendered instructions; [`detect::contract_in`] looks for it.
pub const CONTRACT_HEADER: &str = "# Tools (tool-calls v1)";
/// Start of a replayed tool result (`<tool_result call_id="…" name="…">`).
pub const RESULT_OPEN: &str = "<tool_result ";
/// End of a replayed tool result.
pub const RESULT_CLOSE: &str = "</tool_result>";

/// Most tools in one contract.
pub const MAX_TOOLS: usize = 512;
/// Longest tool name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest contract: the rendered tool list (names, descriptions, schemas), in bytes.
pub const MAX_CONTRACT_BYTES: usize = 1024 * 1024;
/// Largest single call block body (the JSON object), in bytes; larger is a parse failure.
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
/// Longest excerpt of model or client text inside an error message, in characters.
pub const EXCERPT_CHARS: usize = 120;

/// `text` cut to at most `chars` characters (with `…` when cut), control characters replaced,
/// for error messages that must stay short and single-line.
pub(crate) fn excerpt(text: &str, chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}
