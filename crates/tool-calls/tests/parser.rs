//! The stream parser on hand-written answers: what is a call, what stays prose, what fails.

mod common;

use common::{call, contract, run, text};
use tool_calls::{ParseEvent, ParseFailure, ToolChoice};

const CALL: &str =
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

#[test]
fn plain_text_passes_through() {
    let c = contract(ToolChoice::Auto, true);
    let (events, end) = run(&c, &["Hello ", "world < 3 and a<b"]);
    assert_eq!(events, vec![text("Hello world < 3 and a<b")]);
    assert_eq!(end, Ok(()));
}

#[test]
fn a_call_with_text_before_and_after() {
    let c = contract(ToolChoice::Auto, true);
    let answer = format!("Let me check.\n{CALL}\nDone.");
    let (events, end) = run(&c, &[&answer]);
    assert_eq!(
        events,
        vec![
            text("Let me check.\n"),
            call("get_weather", r#"{"city":"Paris"}"#),
            text("Done.")
        ]
    );
    assert_eq!(end, Ok(()));
}

#[test]
fn blanks_around_calls_are_not_text() {
    let c = contract(ToolChoice::Auto, true);
    let answer = format!("\n\n  {CALL}\n\n{CALL}\n");
    let (events, end) = run(&c, &["\n", &answer[1..]]);
    let weather = call("get_weather", r#"{"city":"Paris"}"#);
    assert_eq!(events, vec![weather.clone(), weather]);
    assert_eq!(end, Ok(()));
}

#[test]
fn text_before_a_call_streams_before_the_call_completes() {
    let c = contract(ToolChoice::Auto, true);
    let mut p = c.parser();
    assert_eq!(
        p.push("Checking the weather "),
        vec![text("Checking the weather ")]
    );
    // A possible prefix of the marker is held back, nothing else.
    assert_eq!(p.push("now <tool_c"), vec![text("now ")]);
    assert_eq!(p.push("all>\n{\"name\": \"get_weather\", "), vec![]);
    assert_eq!(p.push("\"arguments\": {\"city\": \"Oslo\"}}"), vec![]);
    let events = p.push("\n</tool_call>");
    assert!(
        matches!(&events[..], [ParseEvent::Call(c)] if c.name == "get_weather" && c.id.starts_with("call_") && c.id.len() == 29)
    );
    assert_eq!(p.finish(), Ok(vec![]));
}

#[test]
fn closing_marker_is_optional_and_a_string_cannot_end_the_block() {
    let c = contract(ToolChoice::Auto, true);
    let answer = "<tool_call>{\"name\":\"read_file\",\"arguments\":{\"path\":\"a</tool_call>}b\"}}";
    let (events, end) = run(&c, &[answer]);
    assert_eq!(
        events,
        vec![call("read_file", r#"{"path":"a</tool_call>}b"}"#)]
    );
    assert_eq!(end, Ok(()));
}

#[test]
fn fenced_json_inside_the_block_is_accepted() {
    let c = contract(ToolChoice::Auto, true);
    let answer =
        "<tool_call>\n```json\n{\"name\":\"read_file\",\"arguments\":{}}\n```\n</tool_call>";
    let (events, end) = run(&c, &[answer]);
    assert_eq!(events, vec![call("read_file", "{}")]);
    assert_eq!(end, Ok(()));
}

#[test]
fn stringified_arguments_are_accepted() {
    let c = contract(ToolChoice::Auto, true);
    let answer =
        r#"<tool_call>{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}</tool_call>"#;
    let (events, _) = run(&c, &[answer]);
    assert_eq!(events, vec![call("get_weather", r#"{"city":"Rome"}"#)]);
}

#[test]
fn markers_in_code_spans_fences_and_prose_stay_text() {
    let c = contract(ToolChoice::Auto, true);
    for answer in [
        format!("Use `{CALL}` to call."),
        format!("Example:\n```\n{CALL}\n```\nThat is all."),
        "I will write <tool_call> tags when needed.".to_owned(),
        "A closing </tool_call> alone is prose.".to_owned(),
        "Ends with a marker <tool_call>".to_owned(),
        "<tool_call> followed by [1, 2]".to_owned(),
    ] {
        let (events, end) = run(&c, &[&answer]);
        assert_eq!(events, vec![text(&answer)], "{answer}");
        assert_eq!(end, Ok(()), "{answer}");
    }
}

#[test]
fn after_a_code_span_closes_a_call_counts_again() {
    let c = contract(ToolChoice::Auto, true);
    let answer = format!("The `<tool_call>` syntax:\n{CALL}");
    let (events, end) = run(&c, &[&answer]);
    assert_eq!(
        events,
        vec![
            text("The `<tool_call>` syntax:\n"),
            call("get_weather", r#"{"city":"Paris"}"#)
        ]
    );
    assert_eq!(end, Ok(()));
}

#[test]
fn parallel_calls() {
    let c = contract(ToolChoice::Auto, true);
    let answer = format!(
        "{CALL}\n\n<tool_call>{{\"name\":\"read_file\",\"arguments\":{{\"path\":\"x\"}}}}</tool_call>"
    );
    let (events, end) = run(&c, &[&answer]);
    assert_eq!(
        events,
        vec![
            call("get_weather", r#"{"city":"Paris"}"#),
            call("read_file", r#"{"path":"x"}"#)
        ]
    );
    assert_eq!(end, Ok(()));
}

#[test]
fn second_call_fails_when_parallel_is_off() {
    let c = contract(ToolChoice::Auto, false);
    let answer = format!("{CALL}{CALL}");
    let (events, end) = run(&c, &[&answer]);
    assert_eq!(events, vec![call("get_weather", r#"{"city":"Paris"}"#)]);
    assert_eq!(end, Err(ParseFailure::MultipleCalls));
}

#[test]
fn failures_have_kinds() {
    let c = contract(ToolChoice::Auto, true);
    let cases = [
        (
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": }}</tool_call>",
            "malformed",
        ),
        ("<tool_call>{\"arguments\": {}}</tool_call>", "malformed"),
        (
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": [1]}</tool_call>",
            "malformed",
        ),
        (
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\"",
            "incomplete",
        ),
        (
            "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>",
            "unknown_tool",
        ),
        (
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"town\": \"x\"}}</tool_call>",
            "invalid_arguments",
        ),
        (
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"\"}}</tool_call>",
            "invalid_arguments",
        ),
    ];
    for (answer, kind) in cases {
        let (_, end) = run(&c, &[answer]);
        let failure = end.expect_err(answer);
        assert_eq!(failure.kind(), kind, "{answer}: {failure}");
        assert!(ParseFailure::KINDS.contains(&failure.kind()));
        assert!(failure.to_string().len() < 400, "{failure}");
    }
}

#[test]
fn required_and_named_choice_need_a_call() {
    let required = contract(ToolChoice::Required, true);
    let (events, end) = run(&required, &["Just text."]);
    assert_eq!(events, vec![text("Just text.")]);
    assert_eq!(end.map_err(|f| f.kind()), Err("no_call"));

    let named = contract(ToolChoice::Named("read_file".to_owned()), true);
    let (_, end) = run(&named, &[CALL]);
    assert_eq!(end.map_err(|f| f.kind()), Err("wrong_tool"));
    let (events, end) = run(&named, &["<tool_call>{\"name\":\"read_file\"}</tool_call>"]);
    assert_eq!(events, vec![call("read_file", "{}")]);
    assert_eq!(end, Ok(()));
}

#[test]
fn inactive_contract_passes_everything_through() {
    let c = contract(ToolChoice::None, true);
    assert!(!c.is_active());
    assert_eq!(c.render_instructions(), "");
    let (events, end) = run(&c, &[CALL]);
    assert_eq!(events, vec![text(CALL)]);
    assert_eq!(end, Ok(()));
}

#[test]
fn failure_messages_bound_model_text() {
    let c = contract(ToolChoice::Auto, true);
    let long_name = "n".repeat(10_000);
    let answer = format!("<tool_call>{{\"name\":\"{long_name}\",\"arguments\":{{}}}}</tool_call>");
    let (_, end) = run(&c, &[&answer]);
    let failure = end.expect_err("unknown tool");
    assert!(failure.to_string().len() < 200, "{failure}");
    let long_city = "c".repeat(10_000);
    let answer = format!(
        "<tool_call>{{\"name\":\"get_weather\",\"arguments\":{{\"city\":\"x\",\"unit\":\"{long_city}\"}}}}</tool_call>"
    );
    let (_, end) = run(&c, &[&answer]);
    let failure = end.expect_err("invalid enum");
    assert_eq!(failure.kind(), "invalid_arguments");
    assert!(failure.to_string().len() < 400, "{failure}");
}

#[test]
fn after_a_failure_the_rest_is_swallowed() {
    let c = contract(ToolChoice::Auto, true);
    let mut p = c.parser();
    assert_eq!(p.push("<tool_call>{\"name\":1}"), vec![]);
    assert_eq!(p.push(" more text"), vec![]);
    assert_eq!(p.finish().map_err(|f| f.kind()), Err("malformed"));
}

#[test]
fn long_backtick_runs_mean_the_same_in_any_split() {
    let c = contract(ToolChoice::Auto, true);
    let ticks = "`".repeat(20);
    let closing = "`".repeat(18);
    let answer = format!("{ticks}\n{CALL}\n{closing}\n{CALL}");
    let whole = run(&c, &[&answer]);
    let split = run(&c, &[&answer[..16], &answer[16..18], &answer[18..]]);
    assert_eq!(whole, split);
    // Runs count as at most 16 long, so 18 backticks close a fence of 20 wherever the split.
    assert_eq!(
        whole.0.last(),
        Some(&call("get_weather", r#"{"city":"Paris"}"#))
    );
}
