//! [`ParseFailure`]: why an answer could not be turned into valid calls.

/// Why an answer did not yield valid calls. `Display` is short and safe: it quotes model text
/// only as a bounded excerpt (tool names, first schema violations).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFailure {
    /// A call block's body is not a JSON object of the form `{"name": …, "arguments": {…}}`.
    #[error("malformed tool call: {detail}")]
    Malformed { detail: String },
    /// The answer ended inside a call block.
    #[error("the answer ended inside an unfinished tool call")]
    Incomplete,
    /// A call block's body exceeded the size limit.
    #[error("tool call larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// A call to a tool the contract does not list.
    #[error("call to unknown tool \"{name}\"")]
    UnknownTool { name: String },
    /// A call to another tool than the one `tool_choice` names.
    #[error("call to tool \"{got}\" but tool_choice requires \"{expected}\"")]
    WrongTool { expected: String, got: String },
    /// Arguments that do not match the tool's schema.
    #[error("arguments for tool \"{tool}\" do not match its schema: {detail}")]
    InvalidArguments { tool: String, detail: String },
    /// More than one call although parallel calls are off.
    #[error("more than one tool call although parallel tool calls are disabled")]
    MultipleCalls,
    /// `tool_choice` required a call (of `tool`, when named) and the answer made none.
    #[error("{}", no_call_message(.tool))]
    NoCall { tool: Option<String> },
}

fn no_call_message(tool: &Option<String>) -> String {
    match tool {
        Some(t) => format!("tool_choice requires a call to \"{t}\" but the answer made none"),
        None => "tool_choice requires a tool call but the answer made none".to_owned(),
    }
}

impl ParseFailure {
    /// A fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::Incomplete => "incomplete",
            Self::TooLarge { .. } => "too_large",
            Self::UnknownTool { .. } => "unknown_tool",
            Self::WrongTool { .. } => "wrong_tool",
            Self::InvalidArguments { .. } => "invalid_arguments",
            Self::MultipleCalls => "multiple_calls",
            Self::NoCall { .. } => "no_call",
        }
    }

    /// All labels [`ParseFailure::kind`] can return (to pre-register metric series).
    pub const KINDS: [&'static str; 8] = [
        "malformed",
        "incomplete",
        "too_large",
        "unknown_tool",
        "wrong_tool",
        "invalid_arguments",
        "multiple_calls",
        "no_call",
    ];
}
