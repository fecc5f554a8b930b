//! The tool contract against the real simulator process: deterministic calls that validate,
//! agent loops over reused and fresh sessions, the styles that exercise the gateway's failure
//! paths (faults, flags, directives), and very long answers.

mod common;

use common::{RawClient, SimProcess, temp_work_dir};
use serde_json::{Value, json};
use tool_calls::{
    ParseEvent, ToolCall, ToolChoice, ToolContract, ToolSpec, render_assistant_turn,
    render_tool_result,
};

fn contract(choice: ToolChoice, parallel: bool) -> ToolContract {
    let tools = vec![
        ToolSpec {
            name: "get_weather".to_owned(),
            description: Some("Weather for a city".to_owned()),
            parameters: json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "minLength": 2},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7}
                },
                "required": ["city", "unit", "days"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "read_file".to_owned(),
            description: None,
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        },
    ];
    ToolContract::new(tools, choice, parallel).expect("contract")
}

/// What the gateway does with one answer: every delta through the parser, then finish.
struct Parsed {
    text: String,
    calls: Vec<ToolCall>,
    failure: Option<&'static str>,
    deltas: usize,
}

async fn ask(
    c: &mut RawClient,
    contract: &ToolContract,
    (request_id, session_id): (&str, &str),
    question: &str,
    is_reply: bool,
) -> Parsed {
    let chat = c.chat(request_id, session_id, question, is_reply).await;
    assert_eq!(chat.finish["statusCode"], 200, "{:?}", chat.finish);
    let mut parser = contract.parser();
    let mut events = Vec::new();
    let mut deltas = 0;
    for frame in chat.frames.iter().filter(|f| f["method"] == "chat/answer") {
        deltas += 1;
        events.extend(parser.push(frame["params"]["text"].as_str().unwrap_or_default()));
    }
    let failure = match parser.finish() {
        Ok(tail) => {
            events.extend(tail);
            None
        }
        Err(f) => Some(f.kind()),
    };
    let mut parsed = Parsed {
        text: String::new(),
        calls: Vec::new(),
        failure,
        deltas,
    };
    for e in events {
        match e {
            ParseEvent::Text(t) => parsed.text.push_str(&t),
            ParseEvent::Call(call) => parsed.calls.push(call),
        }
    }
    parsed
}

fn question(contract: &ToolContract, user: &str) -> String {
    format!("{}\n\nuser: {user}", contract.render_instructions())
}

#[tokio::test]
async fn an_agent_loop_calls_until_it_has_seen_enough_results() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(
        dir.path(),
        &["--logged-in", "--tool-results", "2", "--chunks", "7"],
    )
    .await;
    let mut c = sim.client().await;
    let tools = contract(ToolChoice::Auto, true);

    let first = ask(
        &mut c,
        &tools,
        ("r1", "loop"),
        &question(&tools, "weather in Oslo?"),
        false,
    )
    .await;
    assert_eq!(first.failure, None);
    assert_eq!(first.deltas, 7, "the call arrives split over the deltas");
    assert_eq!(first.calls.len(), 1, "{:?}", first.calls);
    assert_eq!(first.calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&first.calls[0].arguments).expect("JSON");
    assert_eq!(args, json!({"city": "xxx", "unit": "c", "days": 1}));
    assert_eq!(first.text, "");

    // A reused session gets only the new turn: the sim remembers the contract and the count.
    let result = render_tool_result(&first.calls[0].id, Some("get_weather"), "sunny, 21 C");
    let second = ask(&mut c, &tools, ("r2", "loop"), &result, true).await;
    assert_eq!(second.calls.len(), 1, "one result of two: another call");
    let result = render_tool_result(&second.calls[0].id, Some("get_weather"), "rain");
    let last = ask(&mut c, &tools, ("r3", "loop"), &result, true).await;
    assert_eq!(last.failure, None);
    assert!(last.calls.is_empty());
    assert!(
        last.text
            .starts_with("lingma-sim saw 2 tool result(s). lingma-sim turn 3"),
        "{}",
        last.text
    );

    // A fresh session with the whole conversation (flattened as the sidecar does) counts the
    // results in the one question.
    let history = format!(
        "System instructions:\n{}\n\nConversation transcript:\nUser: weather in Oslo?\nAssistant: {}\nUser (tool result): {}\nAssistant: {}\n\nLatest user message:\n{}",
        tools.render_instructions(),
        render_assistant_turn(None, &first.calls),
        render_tool_result(&first.calls[0].id, Some("get_weather"), "sunny"),
        render_assistant_turn(Some("Once more."), &second.calls),
        render_tool_result(&second.calls[0].id, Some("get_weather"), "rain"),
    );
    let fresh = ask(&mut c, &tools, ("r4", "fresh"), &history, false).await;
    assert!(
        fresh
            .text
            .starts_with("lingma-sim saw 2 tool result(s). lingma-sim turn 1"),
        "{}",
        fresh.text
    );

    // Without a contract the sim answers as always.
    let plain = c.chat("r5", "plain", "hello", false).await;
    assert!(
        plain.full_answer().starts_with("lingma-sim turn 1"),
        "{}",
        plain.full_answer()
    );
}

#[tokio::test]
async fn tool_faults_exercise_every_failure_path_and_the_re_ask_succeeds() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--chunks", "5"]).await;
    let mut c = sim.client().await;
    let single = contract(ToolChoice::Auto, false);
    let required = contract(ToolChoice::Required, false);

    for (i, (fault, tools, expected)) in [
        ("tool_malformed", &single, "malformed"),
        ("tool_partial", &single, "incomplete"),
        ("tool_multiple", &single, "multiple_calls"),
        ("tool_ignore", &required, "no_call"),
    ]
    .into_iter()
    .enumerate()
    {
        let session = format!("s{i}");
        let set = sim
            .control("/control/fault", json!({"fault": fault, "times": 1}))
            .await;
        assert_eq!(set.status(), 200, "{fault}");
        let bad = ask(
            &mut c,
            tools,
            (&format!("{fault}-1"), &session),
            &question(tools, "go"),
            false,
        )
        .await;
        assert_eq!(bad.failure, Some(expected), "{fault}");
        // The corrective re-ask on the same session carries no contract; the sim remembers it.
        let failure = tool_calls::ParseFailure::Incomplete;
        let again = ask(
            &mut c,
            tools,
            (&format!("{fault}-2"), &session),
            &tools.corrective_message(&failure),
            true,
        )
        .await;
        assert_eq!(again.failure, None, "{fault}");
        assert_eq!(again.calls.len(), 1, "{fault}");
    }

    sim.control("/control/fault", json!({"fault": "tool_prose", "times": 1}))
        .await;
    let prose = ask(
        &mut c,
        &single,
        ("p1", "prose"),
        &question(&single, "go"),
        false,
    )
    .await;
    assert_eq!(prose.failure, None);
    assert_eq!(prose.calls.len(), 1);
    assert_eq!(
        prose.text,
        "lingma-sim calls get_weather now.\nlingma-sim waits for the result."
    );

    let parallel = contract(ToolChoice::Auto, true);
    sim.control(
        "/control/fault",
        json!({"fault": "tool_multiple", "times": 1}),
    )
    .await;
    let two = ask(
        &mut c,
        &parallel,
        ("m1", "multi"),
        &question(&parallel, "go"),
        false,
    )
    .await;
    let names: Vec<&str> = two.calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["get_weather", "read_file"]);
    assert_ne!(two.calls[0].id, two.calls[1].id);
}

#[tokio::test]
async fn flags_and_directives_choose_the_style() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--tool-style", "partial"]).await;
    let mut c = sim.client().await;
    let tools = contract(ToolChoice::Auto, true);
    let by_flag = ask(&mut c, &tools, ("f1", "a"), &question(&tools, "go"), false).await;
    assert_eq!(by_flag.failure, Some("incomplete"));

    let by_directive = ask(
        &mut c,
        &tools,
        ("f2", "b"),
        &question(&tools, "go sim:tool_style=well"),
        false,
    )
    .await;
    assert_eq!(by_directive.failure, None);
    assert_eq!(by_directive.calls.len(), 1);

    let done = ask(
        &mut c,
        &tools,
        ("f3", "c"),
        &question(&tools, "sim:tool_results=0 just talk"),
        false,
    )
    .await;
    assert!(done.calls.is_empty());
    assert!(
        done.text.starts_with("lingma-sim saw 0 tool result(s)."),
        "{}",
        done.text
    );

    let named = contract(ToolChoice::Named("read_file".to_owned()), true);
    let call = ask(
        &mut c,
        &named,
        ("f4", "d"),
        &question(&named, "go sim:tool_style=well"),
        false,
    )
    .await;
    assert_eq!(call.failure, None);
    assert_eq!(call.calls.len(), 1);
    assert_eq!(call.calls[0].name, "read_file");
    assert_eq!(call.calls[0].arguments, r#"{"path":"xxx"}"#);
}

#[tokio::test]
async fn answer_pieces_make_very_long_streams() {
    let dir = temp_work_dir();
    let sim = SimProcess::start(dir.path(), &["--logged-in", "--answer-pieces", "3000"]).await;
    let mut c = sim.client().await;
    let chat = c.chat("long", "s", "hello", false).await;
    let deltas = chat
        .frames
        .iter()
        .filter(|f| f["method"] == "chat/answer")
        .count();
    assert_eq!(deltas, 3000);
    assert_eq!(chat.deltas(), chat.full_answer());
    assert!(chat.full_answer().chars().count() >= 3000);
}
