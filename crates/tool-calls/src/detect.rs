//! Reading the contract back out of a prompt: what the simulator uses to answer like a model
//! that follows the instructions. Only text rendered by [`crate::ToolContract::render_instructions`]
//! and [`crate::render_tool_result`] is recognised.

use crate::render::{CHOICE_PREFIX, END_LINE, PARALLEL_PREFIX, TOOLS_LINE};
use crate::spec::{ToolChoice, ToolSpec};
use crate::{CONTRACT_HEADER, RESULT_OPEN};
use serde_json::Value;

/// The tools and choice found in a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectedContract {
    pub tools: Vec<ToolSpec>,
    pub choice: ToolChoice,
    pub parallel: bool,
}

/// Whether `prompt` carries rendered tool instructions.
pub fn carries_contract(prompt: &str) -> bool {
    prompt.contains(CONTRACT_HEADER)
}

/// The text of the last contract rendered into `prompt` (header to end line), if any, to keep
/// for later turns of a session that carry no contract.
pub fn contract_text(prompt: &str) -> Option<&str> {
    let start = prompt.rfind(CONTRACT_HEADER)?;
    let rest = &prompt[start..];
    let end = rest
        .find(&format!("\n{END_LINE}"))
        .map_or(rest.len(), |i| i + 1 + END_LINE.len());
    Some(&rest[..end])
}

/// The last contract rendered into `prompt`, if any.
pub fn contract_in(prompt: &str) -> Option<DetectedContract> {
    let start = prompt.rfind(CONTRACT_HEADER)?;
    let mut choice = ToolChoice::Auto;
    let mut parallel = true;
    let mut tools = Vec::new();
    let mut in_tools = false;
    for line in prompt[start..].lines() {
        if line == END_LINE {
            break;
        }
        if in_tools {
            if let Ok(tool) = serde_json::from_str::<ToolSpec>(line) {
                tools.push(tool);
            }
        } else if line == TOOLS_LINE {
            in_tools = true;
        } else if let Some(value) = line.strip_prefix(CHOICE_PREFIX) {
            choice = parse_choice(value);
        } else if let Some(value) = line.strip_prefix(PARALLEL_PREFIX) {
            parallel = value.trim() != "false";
        }
    }
    Some(DetectedContract {
        tools,
        choice,
        parallel,
    })
}

fn parse_choice(value: &str) -> ToolChoice {
    match value.trim() {
        "none" => ToolChoice::None,
        "required" => ToolChoice::Required,
        other => serde_json::from_str::<Value>(other)
            .ok()
            .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
            .map_or(ToolChoice::Auto, ToolChoice::Named),
    }
}

/// How many replayed tool results `text` holds: openings `<tool_result call_id=` anywhere
/// (a transcript may prefix them, e.g. `User (tool result): <tool_result …>`), outside the
/// rendered contract, whose instructions mention the syntax.
pub fn count_tool_results(text: &str) -> usize {
    let opening = format!("{RESULT_OPEN}call_id=");
    match contract_text(text) {
        Some(contract) => text.replacen(contract, "", 1).matches(&opening).count(),
        None => text.matches(&opening).count(),
    }
}
