//! Property tests: any split of an answer gives the same events as one push; valid answers
//! give back exactly their calls; corrupted answers never yield an invalid call.

mod common;

use common::{contract, normalize, run, weather};
use proptest::prelude::*;
use serde_json::{Value, json};
use tool_calls::{ParseEvent, ToolChoice};

/// Cut `s` at the given byte offsets (moved down to char boundaries).
fn split_at<'a>(s: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| {
            let mut c = c % (s.len() + 1);
            while !s.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        out.push(&s[start..p]);
        start = p;
    }
    out.push(&s[start..]);
    out
}

/// Pieces of answers, heavy on the syntax's own characters.
fn syntax_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<tool_call>".to_owned()),
        Just("</tool_call>".to_owned()),
        Just("<tool_c".to_owned()),
        Just("<".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("`".to_owned()),
        Just("```".to_owned()),
        Just("```json".to_owned()),
        Just("`".repeat(20)),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just("\"name\"".to_owned()),
        Just("\"arguments\"".to_owned()),
        Just("\"get_weather\"".to_owned()),
        Just(r#"{"name":"get_weather","arguments":{"city":"x"}}"#.to_owned()),
        Just(r#"{"name":"read_file","arguments":{}}"#.to_owned()),
        "[a-zé ]{0,6}",
    ]
}

/// A valid call to one of the contract's tools, as (block text, name, compact arguments).
fn valid_call() -> impl Strategy<Value = (String, String, String)> {
    let weather_args = (
        "\\PC{1,12}",
        proptest::option::of(prop_oneof![Just("c"), Just("f")]),
    )
        .prop_map(|(city, unit)| {
            let mut args = json!({ "city": city });
            if let Some(u) = unit {
                args["unit"] = json!(u);
            }
            ("get_weather".to_owned(), args)
        });
    let file_args =
        proptest::collection::btree_map("[a-z]{1,6}", "\\PC{0,16}", 0..4).prop_map(|m| {
            let object: serde_json::Map<String, Value> =
                m.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            ("read_file".to_owned(), Value::Object(object))
        });
    (
        prop_oneof![weather_args, file_args],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|((name, args), pretty, close)| {
            let body = json!({ "name": name, "arguments": args });
            let body = if pretty {
                serde_json::to_string_pretty(&body).unwrap_or_default()
            } else {
                body.to_string()
            };
            let block = if close {
                format!("<tool_call>\n{body}\n</tool_call>")
            } else {
                format!("<tool_call>{body}")
            };
            (block, name, args.to_string())
        })
}

/// A valid answer: prose (no syntax characters) and calls; returns the text and the calls.
fn valid_answer() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    let segment = prop_oneof![
        "[a-zA-Z0-9 .,!?\n]{0,30}".prop_map(|t| (t, None)),
        valid_call().prop_map(|(block, name, args)| (block, Some((name, args)))),
    ];
    proptest::collection::vec(segment, 0..6).prop_map(|segments| {
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut after_unclosed = false;
        for (piece, call) in segments {
            // A block without its closing marker needs a separator before more prose.
            if after_unclosed {
                text.push('\n');
            }
            after_unclosed = call.is_some() && !piece.ends_with("</tool_call>");
            text.push_str(&piece);
            calls.extend(call);
        }
        (text, calls)
    })
}

fn calls_of(events: &[ParseEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ParseEvent::Call(c) => Some((c.name.clone(), c.arguments.clone())),
            ParseEvent::Text(_) => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_split_gives_the_same_events(
        pieces in proptest::collection::vec(syntax_piece(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        parallel in any::<bool>(),
    ) {
        let answer = pieces.concat();
        let c = contract(ToolChoice::Auto, parallel);
        let whole = run(&c, &[&answer]);
        let split = run(&c, &split_at(&answer, &cuts));
        prop_assert_eq!(whole.0, split.0);
        prop_assert_eq!(whole.1.map_err(|f| f.kind()), split.1.map_err(|f| f.kind()));
    }

    #[test]
    fn valid_answers_give_back_their_calls(
        (answer, calls) in valid_answer(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let c = contract(ToolChoice::Auto, true);
        let (events, end) = run(&c, &split_at(&answer, &cuts));
        prop_assert_eq!(end, Ok(()));
        let expected: Vec<(String, String)> = calls
            .iter()
            .map(|(n, a)| (n.clone(), serde_json::from_str::<Value>(a).map(|v| v.to_string()).unwrap_or_default()))
            .collect();
        prop_assert_eq!(calls_of(&events), expected);
        prop_assert_eq!(events.clone(), normalize(events));
    }

    #[test]
    fn corruptions_never_yield_an_invalid_call(
        (answer, _) in valid_answer(),
        edits in proptest::collection::vec((any::<usize>(), 0u8..4, syntax_piece()), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut corrupted = answer;
        for (at, op, piece) in edits {
            let mut at = at % (corrupted.len() + 1);
            while !corrupted.is_char_boundary(at) {
                at -= 1;
            }
            match op {
                0 => corrupted.insert_str(at, &piece),
                1 => corrupted.truncate(at),
                _ => {
                    let mut end = (at + piece.len()).min(corrupted.len());
                    while !corrupted.is_char_boundary(end) {
                        end -= 1;
                    }
                    corrupted.replace_range(at..end, if op == 2 { "" } else { &piece });
                }
            }
        }
        let c = contract(ToolChoice::Auto, true);
        let (events, _) = run(&c, &split_at(&corrupted, &cuts));
        let weather_schema = jsonschema::validator_for(&weather().parameters).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (name, args) in calls_of(&events) {
            let value: Value = serde_json::from_str(&args).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(value.is_object());
            match name.as_str() {
                "get_weather" => prop_assert!(weather_schema.is_valid(&value), "{}", args),
                "read_file" => {}
                other => prop_assert!(false, "unknown tool {}", other),
            }
        }
    }
}
