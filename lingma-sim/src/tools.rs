//! Answers to questions that carry the gateway's tool contract (see docs/tool-calling.md):
//! deterministic calls in the contract syntax, with styles that exercise the gateway's
//! failure paths (malformed, cut-off, prose-wrapped, several calls, contract ignored).

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tool_calls::detect::DetectedContract;
use tool_calls::example::example_arguments;
use tool_calls::{CALL_OPEN, ToolCall, ToolChoice, render_assistant_turn};

/// How the simulator answers a tool contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ToolStyle {
    /// One well-formed call block, nothing else.
    #[default]
    Well,
    /// A call block whose JSON body does not parse.
    Malformed,
    /// A call block cut off in the middle of its JSON body.
    Partial,
    /// Text, the call block, more text.
    Prose,
    /// Two call blocks (to the first two tools, or the same tool twice).
    Multiple,
    /// Plain text as if there were no tools (exercises the required-choice re-ask).
    Ignore,
}

impl ToolStyle {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// Directive prefix a test can put in a user message: `sim:tool_style=malformed`.
pub const STYLE_DIRECTIVE: &str = "sim:tool_style=";
/// Directive prefix for the tool results to wait for: `sim:tool_results=3`.
pub const RESULTS_DIRECTIVE: &str = "sim:tool_results=";

/// Per-question overrides found in the question text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Directives {
    pub style: Option<ToolStyle>,
    pub results: Option<u32>,
}

/// The last value of each directive in `question`.
pub fn directives_in(question: &str) -> Directives {
    Directives {
        style: last_value(question, STYLE_DIRECTIVE)
            .and_then(|v| <ToolStyle as ValueEnum>::from_str(v, true).ok()),
        results: last_value(question, RESULTS_DIRECTIVE).and_then(|v| v.parse().ok()),
    }
}

fn last_value<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let start = text.rfind(prefix)? + prefix.len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `text` without a rendered contract and with call markers defused, safe to quote in an
/// answer under a contract.
pub fn quotable(text: &str) -> String {
    let without = match tool_calls::detect::contract_text(text) {
        Some(contract) => text.replacen(contract, "", 1),
        None => text.to_owned(),
    };
    without.trim().replace(CALL_OPEN, "(tool_call)")
}

/// The answer under `contract`, or `None` when a plain answer is due: choice `none`, style
/// `ignore`, or (choice `auto`) once the session has seen `wanted` tool results, when the
/// final answer is `plain` prefixed with the number of results seen.
pub fn answer(
    contract: &DetectedContract,
    style: ToolStyle,
    seen: u32,
    wanted: u32,
    plain: &str,
) -> Option<String> {
    if contract.tools.is_empty() || contract.choice == ToolChoice::None {
        return None;
    }
    if style == ToolStyle::Ignore {
        return None;
    }
    if seen >= wanted && contract.choice == ToolChoice::Auto {
        return Some(format!("lingma-sim saw {seen} tool result(s). {plain}"));
    }
    let first = call_to(contract, 0);
    let block = render_assistant_turn(None, std::slice::from_ref(&first));
    Some(match style {
        ToolStyle::Well | ToolStyle::Ignore => block,
        ToolStyle::Prose => format!(
            "lingma-sim calls {} now.\n{block}\nlingma-sim waits for the result.",
            first.name
        ),
        ToolStyle::Multiple => {
            let second = call_to(contract, 1);
            render_assistant_turn(None, &[first, second])
        }
        ToolStyle::Malformed => format!(
            "{CALL_OPEN}\n{{\"name\": {}, \"arguments\": {{\"broken\": }}}}\n</tool_call>",
            serde_json::Value::String(first.name)
        ),
        ToolStyle::Partial => {
            // Cut inside the JSON body: after the marker, half of the rest.
            let body_start = CALL_OPEN.len() + 1;
            let mut cut = body_start + (block.len() - body_start) / 2;
            while !block.is_char_boundary(cut) {
                cut += 1;
            }
            block[..cut].to_owned()
        }
    })
}

/// A call to the named tool, else tool `index` (wrapping), with a minimal valid instance of
/// its schema as arguments.
fn call_to(contract: &DetectedContract, index: usize) -> ToolCall {
    let tool = match &contract.choice {
        ToolChoice::Named(name) => contract.tools.iter().find(|t| &t.name == name),
        _ => None,
    }
    .or_else(|| contract.tools.get(index % contract.tools.len().max(1)));
    let (name, arguments) = match tool {
        Some(t) => (t.name.clone(), example_arguments(&t.parameters).to_string()),
        None => (String::new(), "{}".to_owned()),
    };
    ToolCall {
        id: String::new(),
        name,
        arguments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tool_calls::{ParseEvent, ToolContract, ToolSpec};

    fn contract(choice: ToolChoice, parallel: bool) -> ToolContract {
        let tools = vec![
            ToolSpec {
                name: "get_weather".to_owned(),
                description: None,
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}),
            },
            ToolSpec {
                name: "read_file".to_owned(),
                description: None,
                parameters: json!({}),
            },
        ];
        ToolContract::new(tools, choice, parallel).expect("contract")
    }

    fn detected(c: &ToolContract) -> DetectedContract {
        tool_calls::detect::contract_in(&c.render_instructions()).expect("detected")
    }

    /// Parse a simulated answer with the gateway's own parser.
    fn parse(c: &ToolContract, text: &str) -> Result<Vec<ParseEvent>, &'static str> {
        let mut p = c.parser();
        let mut events = p.push(text);
        events.extend(p.finish().map_err(|f| f.kind())?);
        Ok(events)
    }

    #[test]
    fn each_style_meets_the_parser_as_intended() {
        let c = contract(ToolChoice::Auto, false);
        let d = detected(&c);
        let answer = |style| answer(&d, style, 0, 1, "plain").expect("tool answer");
        let well = parse(&c, &answer(ToolStyle::Well)).expect("well");
        assert!(
            matches!(&well[..], [ParseEvent::Call(call)] if call.name == "get_weather" && call.arguments == r#"{"city":"xxx","unit":"c"}"#),
            "{well:?}"
        );
        let prose = parse(&c, &answer(ToolStyle::Prose)).expect("prose");
        assert_eq!(prose.len(), 3, "{prose:?}");
        assert_eq!(parse(&c, &answer(ToolStyle::Malformed)), Err("malformed"));
        assert_eq!(parse(&c, &answer(ToolStyle::Partial)), Err("incomplete"));
        assert_eq!(
            parse(&c, &answer(ToolStyle::Multiple)),
            Err("multiple_calls")
        );
        let parallel = contract(ToolChoice::Auto, true);
        let two = parse(&parallel, &answer(ToolStyle::Multiple)).expect("parallel");
        assert_eq!(two.len(), 2);
        assert_eq!(super::answer(&d, ToolStyle::Ignore, 0, 1, "plain"), None);
    }

    #[test]
    fn named_choice_and_final_answer() {
        let named = contract(ToolChoice::Named("read_file".to_owned()), true);
        let a = answer(&detected(&named), ToolStyle::Well, 5, 1, "plain").expect("call");
        assert!(a.contains("\"read_file\""), "{a}");
        let auto = contract(ToolChoice::Auto, true);
        let a = answer(&detected(&auto), ToolStyle::Well, 2, 2, "plain").expect("final");
        assert_eq!(a, "lingma-sim saw 2 tool result(s). plain");
        let none = DetectedContract {
            choice: ToolChoice::None,
            ..detected(&auto)
        };
        assert_eq!(answer(&none, ToolStyle::Well, 0, 1, "plain"), None);
    }

    #[test]
    fn quotes_under_a_contract_hold_no_call() {
        let c = contract(ToolChoice::Auto, true);
        let call = ToolCall {
            id: String::new(),
            name: "read_file".to_owned(),
            arguments: "{}".to_owned(),
        };
        let q = format!(
            "{}\n\nuser: hi\nassistant: {}",
            c.render_instructions(),
            render_assistant_turn(None, &[call])
        );
        let quoted = quotable(&q);
        assert!(
            quoted.starts_with("user: hi\nassistant: (tool_call)"),
            "{quoted}"
        );
        assert_eq!(parse(&c, &quoted).map(|e| e.len()), Ok(1));
    }

    #[test]
    fn directives_are_read_from_the_question() {
        assert_eq!(directives_in("plain"), Directives::default());
        let d = directives_in("do it sim:tool_style=Prose, sim:tool_results=3.");
        assert_eq!(
            d,
            Directives {
                style: Some(ToolStyle::Prose),
                results: Some(3)
            }
        );
        assert_eq!(directives_in("sim:tool_style=bogus").style, None);
    }
}
