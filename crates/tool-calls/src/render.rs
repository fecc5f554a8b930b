//! Text the model sees: the contract instructions, the corrective re-ask, and earlier tool
//! turns replayed in the contract's own syntax.

use crate::contract::ToolContract;
use crate::failure::ParseFailure;
use crate::spec::{ToolCall, ToolChoice, ToolSpec};
use crate::{CALL_CLOSE, CALL_OPEN, CONTRACT_HEADER, RESULT_CLOSE, RESULT_OPEN};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Line that starts the tool list (one JSON object per line follows).
pub(crate) const TOOLS_LINE: &str = "Tools (one JSON object per line):";
/// Line that ends the instructions.
pub(crate) const END_LINE: &str = "# End of tools";
/// Prefix of the machine-readable choice line.
pub(crate) const CHOICE_PREFIX: &str = "tool_choice: ";
/// Prefix of the machine-readable parallel line.
pub(crate) const PARALLEL_PREFIX: &str = "parallel_tool_calls: ";

pub(crate) fn instructions(contract: &ToolContract) -> String {
    let mut out = String::with_capacity(1024 + contract.tools().len() * 256);
    out.push_str(CONTRACT_HEADER);
    out.push('\n');
    let _ = writeln!(
        out,
        "You can call the tools listed below. To call a tool, write a block like this on its own lines, \
with exactly one JSON object inside:\n{CALL_OPEN}\n{{\"name\": \"TOOL_NAME\", \"arguments\": {{...}}}}\n{CALL_CLOSE}"
    );
    out.push_str(
        "- \"arguments\" is a JSON object that matches the tool's \"parameters\" JSON Schema.\n\
- After your tool call block(s), stop: the results come back in a later message as \
<tool_result call_id=\"...\" name=\"...\"> blocks. Never write a tool_result yourself.\n\
- Never put a tool call block in a code block or quote; write one only to really call the tool.\n",
    );
    let _ = writeln!(out, "- {}", choice_rule(contract.choice()));
    let _ = writeln!(
        out,
        "- {}",
        if contract.parallel() {
            "You may call several tools at once: one block per call."
        } else {
            "Call at most one tool per answer."
        }
    );
    let _ = writeln!(out, "{CHOICE_PREFIX}{}", choice_value(contract.choice()));
    let _ = writeln!(out, "{PARALLEL_PREFIX}{}", contract.parallel());
    out.push_str(TOOLS_LINE);
    out.push('\n');
    for tool in contract.tools() {
        out.push_str(&tool_line(tool));
        out.push('\n');
    }
    out.push_str(END_LINE);
    out
}

fn choice_rule(choice: &ToolChoice) -> String {
    match choice {
        ToolChoice::Auto | ToolChoice::None => {
            "Call a tool when it helps; otherwise answer in plain text.".to_owned()
        }
        ToolChoice::Required => "You must call at least one tool in this answer.".to_owned(),
        ToolChoice::Named(name) => format!(
            "You must call the tool {} in this answer.",
            Value::String(name.clone())
        ),
    }
}

fn choice_value(choice: &ToolChoice) -> String {
    match choice {
        ToolChoice::Auto => "auto".to_owned(),
        ToolChoice::None => "none".to_owned(),
        ToolChoice::Required => "required".to_owned(),
        ToolChoice::Named(name) => json!({ "name": name }).to_string(),
    }
}

/// `{"name":…,"description":…,"parameters":…}`, name first (a JSON map would sort the keys).
fn tool_line(tool: &ToolSpec) -> String {
    let mut line = format!("{{\"name\":{}", Value::String(tool.name.clone()));
    if let Some(d) = tool.description.as_deref().filter(|d| !d.is_empty()) {
        let _ = write!(line, ",\"description\":{}", Value::String(d.to_owned()));
    }
    let parameters = match &tool.parameters {
        Value::Null => json!({ "type": "object" }),
        p => p.clone(),
    };
    let _ = write!(line, ",\"parameters\":{parameters}}}");
    line
}

pub(crate) fn corrective(contract: &ToolContract, failure: &ParseFailure) -> String {
    let mut out = format!("Your previous answer could not be used: {failure}.\n");
    match contract.choice() {
        ToolChoice::Named(name) => {
            let _ = writeln!(out, "Call the tool {} now.", Value::String(name.clone()));
        }
        ToolChoice::Required => out.push_str("Call at least one of the listed tools now.\n"),
        _ => {}
    }
    if !contract.parallel() {
        out.push_str("Make exactly one call.\n");
    }
    let _ = write!(
        out,
        "Answer again. Write each call as\n{CALL_OPEN}\n{{\"name\": \"TOOL_NAME\", \"arguments\": {{...}}}}\n{CALL_CLOSE}\n\
with only tools from the list and arguments that match the tool's parameters schema."
    );
    out
}

/// An earlier assistant turn that made `calls` (after its text, if any), in the contract syntax.
pub fn render_assistant_turn(text: Option<&str>, calls: &[ToolCall]) -> String {
    let mut out = String::new();
    if let Some(t) = text.map(str::trim_end).filter(|t| !t.is_empty()) {
        out.push_str(t);
        out.push('\n');
    }
    for call in calls {
        // Arguments replayed from a client may not be JSON; keep them as a string then.
        let arguments: Value = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        let _ = writeln!(
            out,
            "{CALL_OPEN}\n{{\"name\":{},\"arguments\":{}}}\n{CALL_CLOSE}",
            Value::String(call.name.clone()),
            arguments
        );
    }
    let len = out.trim_end().len();
    out.truncate(len);
    out
}

/// A tool result turn: `<tool_result call_id="…" name="…">`, the content, `</tool_result>`.
/// Attribute values are JSON strings, so any id or name is safe.
pub fn render_tool_result(call_id: &str, name: Option<&str>, content: &str) -> String {
    let mut out = format!("{RESULT_OPEN}call_id={}", Value::String(call_id.to_owned()));
    if let Some(name) = name {
        let _ = write!(out, " name={}", Value::String(name.to_owned()));
    }
    let _ = write!(out, ">\n{}\n{RESULT_CLOSE}", content.trim_end_matches('\n'));
    out
}
