//! A small instance of a JSON Schema: what the simulator sends as arguments. Covers what tool
//! schemas use (objects with required properties, types, enums, consts, arrays with
//! `minItems`, string `minLength`, number bounds, `anyOf`/`oneOf`/`allOf` by first branch);
//! `$ref` and patterns are not followed, so such schemas may get an instance that does not
//! validate (the simulator's answer then exercises the parse-failure path).

use serde_json::{Map, Value, json};

/// Depth beyond which nested schemas get `null`.
const MAX_DEPTH: usize = 16;

/// A minimal instance of `schema`: required properties only, enums' first value.
pub fn example_value(schema: &Value) -> Value {
    build(schema, 0)
}

/// Like [`example_value`], but always an object (tool arguments are objects).
pub fn example_arguments(schema: &Value) -> Value {
    match example_value(schema) {
        v @ Value::Object(_) => v,
        _ => Value::Object(Map::new()),
    }
}

fn build(schema: &Value, depth: usize) -> Value {
    let Value::Object(s) = schema else {
        return Value::Object(Map::new());
    };
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(v) = s.get("const") {
        return v.clone();
    }
    if let Some(v) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return v.clone();
    }
    if let Some(v) = s.get("default") {
        return v.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = s.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return build(first, depth + 1);
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ if s.contains_key("items") => "array",
        _ => "object",
    };
    match ty {
        "object" => object(s, depth),
        "array" => array(s, depth),
        "string" => string(s),
        "integer" => Value::from(int_bound(s)),
        "number" => number(s),
        "boolean" => Value::Bool(true),
        _ => Value::Null,
    }
}

fn object(s: &Map<String, Value>, depth: usize) -> Value {
    let mut out = Map::new();
    let properties = s.get("properties").and_then(Value::as_object);
    for name in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let sub = properties
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or_else(|| json!({}));
        out.insert(name.to_owned(), build(&sub, depth + 1));
    }
    Value::Object(out)
}

fn array(s: &Map<String, Value>, depth: usize) -> Value {
    let min = s
        .get("minItems")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(8);
    let item = s.get("items").cloned().unwrap_or_else(|| json!({}));
    Value::Array((0..min).map(|_| build(&item, depth + 1)).collect())
}

fn string(s: &Map<String, Value>) -> Value {
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = s
        .get("maxLength")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let len = min.max(max.min(3)).min(1024);
    Value::String("x".repeat(usize::try_from(len).unwrap_or(3)))
}

fn int_bound(s: &Map<String, Value>) -> i64 {
    if let Some(min) = s.get("minimum").and_then(Value::as_i64) {
        return min;
    }
    if let Some(min) = s.get("exclusiveMinimum").and_then(Value::as_i64) {
        return min.saturating_add(1);
    }
    match s.get("maximum").and_then(Value::as_i64) {
        Some(max) if max < 1 => max,
        _ => 1,
    }
}

fn number(s: &Map<String, Value>) -> Value {
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        return json!(min);
    }
    if let Some(min) = s.get("exclusiveMinimum").and_then(Value::as_f64) {
        return json!(min + 1.0);
    }
    match s.get("maximum").and_then(Value::as_f64) {
        Some(max) if max < 1.0 => json!(max),
        _ => json!(1),
    }
}
