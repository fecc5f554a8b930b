//! [`ToolContract`]: the validated tools and tool choice of one request, with each tool's
//! compiled JSON-schema validator. Cheap to clone (one `Arc`).

use crate::failure::ParseFailure;
use crate::parser::StreamParser;
use crate::spec::{ToolChoice, ToolSpec};
use crate::{MAX_CONTRACT_BYTES, MAX_NAME_BYTES, MAX_TOOLS, excerpt, render};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Why a tool list or tool choice was refused. `Display` is short and safe to return to the
/// client; [`ContractError::param`] names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("tool name is empty")]
    EmptyName { index: usize },
    #[error("tool name is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong { index: usize },
    #[error("tool name contains a control or whitespace character")]
    NameCharacters { index: usize },
    #[error("duplicate tool name \"{name}\"")]
    DuplicateName { index: usize, name: String },
    #[error("tool \"{name}\": parameters must be a JSON Schema object")]
    SchemaNotObject { index: usize, name: String },
    #[error("tool \"{name}\": invalid parameters schema: {detail}")]
    InvalidSchema {
        index: usize,
        name: String,
        detail: String,
    },
    #[error("too many tools (at most {MAX_TOOLS})")]
    TooManyTools,
    #[error(
        "the tool list is too large (at most {MAX_CONTRACT_BYTES} bytes of names, descriptions and schemas)"
    )]
    TooLarge,
    #[error("tool_choice names \"{name}\", which is not one of the tools")]
    UnknownChoice { name: String },
    #[error("tool_choice requires a tool call but no tools were given")]
    ChoiceWithoutTools,
}

impl ContractError {
    /// The request field at fault, e.g. `tools[2].parameters` or `tool_choice`.
    pub fn param(&self) -> String {
        match self {
            Self::EmptyName { index }
            | Self::NameTooLong { index }
            | Self::NameCharacters { index }
            | Self::DuplicateName { index, .. } => format!("tools[{index}].name"),
            Self::SchemaNotObject { index, .. } | Self::InvalidSchema { index, .. } => {
                format!("tools[{index}].parameters")
            }
            Self::TooManyTools | Self::TooLarge => "tools".to_owned(),
            Self::UnknownChoice { .. } | Self::ChoiceWithoutTools => "tool_choice".to_owned(),
        }
    }
}

/// The tools and tool choice of one request, validated, with compiled schemas.
#[derive(Clone)]
pub struct ToolContract {
    inner: Arc<Inner>,
}

struct Inner {
    tools: Vec<ToolSpec>,
    validators: Vec<jsonschema::Validator>,
    by_name: HashMap<String, usize>,
    choice: ToolChoice,
    parallel: bool,
}

impl fmt::Debug for ToolContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.inner.tools.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("ToolContract")
            .field("tools", &names)
            .field("choice", &self.inner.choice)
            .field("parallel", &self.inner.parallel)
            .finish()
    }
}

impl ToolContract {
    /// Validate names, compile every schema (no remote `$ref` is ever fetched) and check the
    /// choice against the tools.
    pub fn new(
        tools: Vec<ToolSpec>,
        choice: ToolChoice,
        parallel: bool,
    ) -> Result<Self, ContractError> {
        if tools.len() > MAX_TOOLS {
            return Err(ContractError::TooManyTools);
        }
        let mut by_name = HashMap::with_capacity(tools.len());
        let mut size = 0usize;
        let mut validators = Vec::with_capacity(tools.len());
        for (index, tool) in tools.iter().enumerate() {
            check_name(index, &tool.name)?;
            if by_name.insert(tool.name.clone(), index).is_some() {
                return Err(ContractError::DuplicateName {
                    index,
                    name: excerpt(&tool.name, 64),
                });
            }
            size = size
                .saturating_add(tool.name.len())
                .saturating_add(tool.description.as_ref().map_or(0, String::len))
                .saturating_add(json_len(&tool.parameters));
            if size > MAX_CONTRACT_BYTES {
                return Err(ContractError::TooLarge);
            }
            validators.push(compile(index, tool)?);
        }
        match &choice {
            ToolChoice::Named(name) if !by_name.contains_key(name) => {
                return Err(ContractError::UnknownChoice {
                    name: excerpt(name, 64),
                });
            }
            ToolChoice::Required if tools.is_empty() => {
                return Err(ContractError::ChoiceWithoutTools);
            }
            _ => {}
        }
        Ok(Self {
            inner: Arc::new(Inner {
                tools,
                validators,
                by_name,
                choice,
                parallel,
            }),
        })
    }

    pub fn tools(&self) -> &[ToolSpec] {
        &self.inner.tools
    }

    pub fn choice(&self) -> &ToolChoice {
        &self.inner.choice
    }

    /// Whether several calls may come in one answer.
    pub fn parallel(&self) -> bool {
        self.inner.parallel
    }

    /// False when the choice is `None` or there are no tools: then nothing is rendered and the
    /// parser passes all text through.
    pub fn is_active(&self) -> bool {
        self.inner.choice != ToolChoice::None && !self.inner.tools.is_empty()
    }

    /// Whether the answer must contain at least one call.
    pub fn requires_call(&self) -> bool {
        self.is_active()
            && matches!(
                self.inner.choice,
                ToolChoice::Required | ToolChoice::Named(_)
            )
    }

    /// The system-message text that teaches the model the contract (empty when inactive).
    pub fn render_instructions(&self) -> String {
        if !self.is_active() {
            return String::new();
        }
        render::instructions(self)
    }

    /// A parser for one answer under this contract.
    pub fn parser(&self) -> StreamParser {
        StreamParser::new(self.clone())
    }

    /// User-turn text for the one corrective re-ask after `failure`.
    pub fn corrective_message(&self, failure: &ParseFailure) -> String {
        render::corrective(self, failure)
    }

    /// Index of the tool called `name`.
    pub(crate) fn tool_index(&self, name: &str) -> Option<usize> {
        self.inner.by_name.get(name).copied()
    }

    /// Check `arguments` against tool `index`'s schema; `Err` carries a short description of
    /// the first violations (bounded, may quote argument values).
    pub(crate) fn check_arguments(&self, index: usize, arguments: &Value) -> Result<(), String> {
        let Some(validator) = self.inner.validators.get(index) else {
            return Err("no such tool".to_owned());
        };
        if validator.is_valid(arguments) {
            return Ok(());
        }
        let detail: Vec<String> = validator
            .iter_errors(arguments)
            .take(3)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                format!("at {}: {}", excerpt(&at, 40), excerpt(&e.to_string(), 80))
            })
            .collect();
        Err(detail.join("; "))
    }
}

fn check_name(index: usize, name: &str) -> Result<(), ContractError> {
    if name.is_empty() {
        return Err(ContractError::EmptyName { index });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ContractError::NameTooLong { index });
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ContractError::NameCharacters { index });
    }
    Ok(())
}

/// Compile a tool's schema; `{}`/`null` accept any object. Arguments must always be an
/// object, whatever the schema says, so an object type is checked by the parser itself.
fn compile(index: usize, tool: &ToolSpec) -> Result<jsonschema::Validator, ContractError> {
    let schema = match &tool.parameters {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(_) | Value::Bool(_) => tool.parameters.clone(),
        _ => {
            return Err(ContractError::SchemaNotObject {
                index,
                name: excerpt(&tool.name, 64),
            });
        }
    };
    jsonschema::validator_for(&schema).map_err(|e| ContractError::InvalidSchema {
        index,
        name: excerpt(&tool.name, 64),
        detail: excerpt(&e.to_string(), 160),
    })
}

fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).map_or(0, |s| s.len())
}
