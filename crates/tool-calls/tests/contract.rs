//! The contract: what is refused, what the model is shown, and that the rendered text reads
//! back (the simulator relies on that).

mod common;

use common::{any_args, call, contract, run, weather};
use serde_json::json;
use tool_calls::detect::{carries_contract, contract_in, count_tool_results};

use tool_calls::example::example_arguments;
use tool_calls::{
    ContractError, ParseFailure, ToolCall, ToolChoice, ToolContract, ToolSpec,
    render_assistant_turn, render_tool_result,
};

fn refused(tools: Vec<ToolSpec>, choice: ToolChoice) -> ContractError {
    ToolContract::new(tools, choice, true).expect_err("refused")
}

#[test]
fn bad_tools_are_refused_with_their_field() {
    let e = refused(vec![weather(), weather()], ToolChoice::Auto);
    assert!(matches!(e, ContractError::DuplicateName { index: 1, .. }));
    assert_eq!(e.param(), "tools[1].name");
    assert_eq!(
        refused(vec![any_args("")], ToolChoice::Auto).param(),
        "tools[0].name"
    );
    let long = any_args(&"x".repeat(tool_calls::MAX_NAME_BYTES + 1));
    assert!(matches!(
        refused(vec![long], ToolChoice::Auto),
        ContractError::NameTooLong { .. }
    ));
    assert!(matches!(
        refused(vec![any_args("a b")], ToolChoice::Auto),
        ContractError::NameCharacters { .. }
    ));
    let mut bad = weather();
    bad.parameters = json!({"type": 12});
    let e = refused(vec![any_args("ok"), bad], ToolChoice::Auto);
    assert_eq!(e.param(), "tools[1].parameters");
    assert!(e.to_string().contains("invalid parameters schema"), "{e}");
    let mut not_object = weather();
    not_object.parameters = json!("string");
    assert!(matches!(
        refused(vec![not_object], ToolChoice::Auto),
        ContractError::SchemaNotObject { .. }
    ));
    let e = refused(vec![weather()], ToolChoice::Named("nope".to_owned()));
    assert_eq!(e.param(), "tool_choice");
    assert_eq!(refused(vec![], ToolChoice::Required).param(), "tool_choice");
}

#[test]
fn remote_refs_are_never_fetched() {
    let mut remote = weather();
    remote.parameters = json!({"$ref": "http://127.0.0.1:9/schema.json"});
    let e = refused(vec![remote], ToolChoice::Auto);
    assert!(matches!(e, ContractError::InvalidSchema { .. }), "{e}");
}

#[test]
fn huge_contracts_are_refused_and_large_ones_work() {
    let big = ToolSpec {
        name: "big".to_owned(),
        description: Some("d".repeat(tool_calls::MAX_CONTRACT_BYTES)),
        parameters: json!({}),
    };
    assert_eq!(
        refused(vec![big], ToolChoice::Auto),
        ContractError::TooLarge
    );
    let many: Vec<ToolSpec> = (0..=tool_calls::MAX_TOOLS)
        .map(|i| any_args(&format!("t{i}")))
        .collect();
    assert_eq!(refused(many, ToolChoice::Auto), ContractError::TooManyTools);

    // A schema with hundreds of properties still compiles, renders and validates.
    let properties: serde_json::Map<String, serde_json::Value> = (0..500)
        .map(|i| {
            (
                format!("p{i}"),
                json!({"type": "string", "description": "x".repeat(100)}),
            )
        })
        .collect();
    let wide = ToolSpec {
        name: "wide".to_owned(),
        description: None,
        parameters: json!({"type": "object", "properties": properties, "required": ["p7"]}),
    };
    let c = ToolContract::new(vec![wide], ToolChoice::Required, false).expect("large contract");
    assert!(c.render_instructions().len() > 50_000);
    let (events, end) = run(
        &c,
        &["<tool_call>{\"name\":\"wide\",\"arguments\":{\"p7\":\"v\"}}</tool_call>"],
    );
    assert_eq!(events, vec![call("wide", r#"{"p7":"v"}"#)]);
    assert_eq!(end, Ok(()));
}

#[test]
fn names_that_look_like_the_syntax_work() {
    let names = [
        "</tool_call>",
        "<tool_call>{\"",
        "a\"b\\c",
        "`x`",
        "mcp__server__tool",
    ];
    let tools: Vec<ToolSpec> = names.iter().map(|n| any_args(n)).collect();
    let c = ToolContract::new(tools, ToolChoice::Auto, true).expect("contract");
    let calls: Vec<ToolCall> = names
        .iter()
        .map(|n| ToolCall {
            id: "call_1".to_owned(),
            name: (*n).to_owned(),
            arguments: "{}".to_owned(),
        })
        .collect();
    let answer = render_assistant_turn(Some("Calling them all."), &calls);
    let (events, end) = run(&c, &[&answer]);
    assert_eq!(end, Ok(()));
    let mut expected = vec![common::text("Calling them all.\n")];
    expected.extend(names.iter().map(|n| call(n, "{}")));
    assert_eq!(events, expected);
    let detected = contract_in(&c.render_instructions()).expect("detected");
    let detected_names: Vec<&str> = detected.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(detected_names, names);
}

#[test]
fn instructions_read_back() {
    for (choice, parallel) in [
        (ToolChoice::Auto, true),
        (ToolChoice::Required, false),
        (ToolChoice::Named("read_file".to_owned()), true),
    ] {
        let c = contract(choice.clone(), parallel);
        let text = c.render_instructions();
        assert!(carries_contract(&text));
        assert!(text.starts_with(tool_calls::CONTRACT_HEADER));
        let prompt = format!("system prelude\n{text}\n\nuser: what is the weather?");
        let d = contract_in(&prompt).expect("contract found");
        assert_eq!(
            tool_calls::detect::contract_text(&prompt),
            Some(text.as_str())
        );
        assert_eq!(d.choice, choice);
        assert_eq!(d.parallel, parallel);
        assert_eq!(d.tools.len(), 2);
        assert_eq!(d.tools[0].name, "get_weather");
        assert_eq!(d.tools[0].parameters, weather().parameters);
        assert_eq!(d.tools[1].parameters, json!({}));
        assert!(
            text.contains("\n{\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"parameters\":{"),
            "each tool line starts with its name: {text}"
        );
    }
    assert!(!carries_contract("plain question"));
    assert_eq!(contract_in("plain question"), None);
}

#[test]
fn tool_results_render_and_count() {
    let r = render_tool_result("call_abc", Some("get_weather"), "sunny\n");
    assert_eq!(
        r,
        "<tool_result call_id=\"call_abc\" name=\"get_weather\">\nsunny\n</tool_result>"
    );
    let odd = render_tool_result("id\"x", None, "");
    assert!(
        odd.starts_with("<tool_result call_id=\"id\\\"x\">"),
        "{odd}"
    );
    assert_eq!(count_tool_results(&format!("{r}\n\n{odd}\nthanks")), 2);
    assert_eq!(
        count_tool_results("no results, only <tool_result mentions"),
        0
    );
}

#[test]
fn corrective_message_names_the_failure_and_the_choice() {
    let c = contract(ToolChoice::Named("get_weather".to_owned()), false);
    let m = c.corrective_message(&ParseFailure::NoCall {
        tool: Some("get_weather".to_owned()),
    });
    assert!(m.contains("could not be used"), "{m}");
    assert!(m.contains("Call the tool \"get_weather\" now."), "{m}");
    assert!(m.contains("exactly one call"), "{m}");
    assert!(m.contains("<tool_call>"), "{m}");
}

#[test]
fn example_arguments_validate() {
    let schemas = [
        weather().parameters,
        json!({}),
        json!({"type": "object", "properties": {
            "n": {"type": "integer", "minimum": 5},
            "x": {"type": "number", "exclusiveMinimum": 0.5},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2},
            "mode": {"const": "fast"},
            "flag": {"type": ["boolean", "null"]},
            "nested": {"type": "object", "properties": {"s": {"type": "string", "minLength": 8}}, "required": ["s"]},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        }, "required": ["n", "x", "tags", "mode", "flag", "nested", "either"], "additionalProperties": false}),
    ];
    for schema in schemas {
        let v = example_arguments(&schema);
        let validator = jsonschema::validator_for(&schema).expect("schema");
        assert!(validator.is_valid(&v), "{schema} -> {v}");
    }
}

#[test]
fn contract_and_parser_can_cross_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ToolContract>();
    send_sync::<tool_calls::StreamParser>();
    send_sync::<ParseFailure>();
    send_sync::<ContractError>();
}
