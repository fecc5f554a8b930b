//! Shared fixtures: a small contract and helpers to run the parser.
#![allow(dead_code)]

use serde_json::json;
use tool_calls::{ParseEvent, ParseFailure, ToolChoice, ToolContract, ToolSpec};

pub fn weather() -> ToolSpec {
    ToolSpec {
        name: "get_weather".to_owned(),
        description: Some("Weather for a city".to_owned()),
        parameters: json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "unit": {"type": "string", "enum": ["c", "f"]}
            },
            "required": ["city"],
            "additionalProperties": false
        }),
    }
}

pub fn any_args(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.to_owned(),
        description: None,
        parameters: json!({}),
    }
}

pub fn contract(choice: ToolChoice, parallel: bool) -> ToolContract {
    ToolContract::new(vec![weather(), any_args("read_file")], choice, parallel)
        .expect("valid contract")
}

/// Merge adjacent text events and blank call ids, so runs over different splits compare.
pub fn normalize(events: Vec<ParseEvent>) -> Vec<ParseEvent> {
    let mut out: Vec<ParseEvent> = Vec::new();
    for e in events {
        match (out.last_mut(), e) {
            (_, ParseEvent::Text(t)) if t.is_empty() => {}
            (Some(ParseEvent::Text(last)), ParseEvent::Text(t)) => last.push_str(&t),
            (_, ParseEvent::Call(mut c)) => {
                c.id = String::new();
                out.push(ParseEvent::Call(c));
            }
            (_, e) => out.push(e),
        }
    }
    out
}

/// Feed `pieces` one by one, then finish.
pub fn run(
    contract: &ToolContract,
    pieces: &[&str],
) -> (Vec<ParseEvent>, Result<(), ParseFailure>) {
    let mut p = contract.parser();
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(p.push(piece));
    }
    let end = match p.finish() {
        Ok(tail) => {
            events.extend(tail);
            Ok(())
        }
        Err(f) => Err(f),
    };
    (normalize(events), end)
}

pub fn text(s: &str) -> ParseEvent {
    ParseEvent::Text(s.to_owned())
}

pub fn call(name: &str, args: &str) -> ParseEvent {
    ParseEvent::Call(tool_calls::ToolCall {
        id: String::new(),
        name: name.to_owned(),
        arguments: args.to_owned(),
    })
}
