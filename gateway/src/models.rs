//! Model names: what `/v1/models` lists and how a request's `model` maps to a Lingma key.
//!
//! Mapping (see docs/openai-compatibility.md):
//! 1. a Lingma key the sidecars report (`dashscope_qwen3_coder`) is used as is;
//! 2. a reported display name (case-insensitive) maps to its key;
//! 3. a name that looks like a Lingma key of a known provider (`dashscope_...`) but is not
//!    reported is refused with 404 `model_not_found` (asking for a specific Lingma model
//!    and silently getting another would be wrong);
//! 4. anything else (`gpt-4o`, `auto`, no model at all) uses DEFAULT_MODEL, so clients with
//!    a hard-coded OpenAI model name work.

use mux_protocol::ModelInfo;

use crate::errors::GatewayError;
use crate::quote::quoted;

/// Longest `model` name accepted, in bytes. Every streamed chunk echoes the name, so an
/// unbounded one multiplies into every event of the answer; real model names are far
/// shorter (OpenAI's and Anthropic's longest are under 64 characters).
pub const MAX_MODEL_NAME_BYTES: usize = 256;

/// The `model` of a request as the gateway keeps it: trimmed, `None` when blank, refused
/// (400, `param: model`) when over [`MAX_MODEL_NAME_BYTES`]. Every surface decodes its
/// `model` through here, so each answers the refusal in its own error shape.
pub fn accepted_model_name(raw: Option<&str>) -> Result<Option<String>, GatewayError> {
    let Some(name) = raw.map(str::trim).filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    if name.len() > MAX_MODEL_NAME_BYTES {
        return Err(GatewayError::invalid(
            format!(
                "The model name '{}' is {} bytes long; at most {MAX_MODEL_NAME_BYTES} are accepted.",
                quoted(name),
                name.len()
            ),
            Some("model"),
        ));
    }
    Ok(Some(name.to_owned()))
}

/// Which Lingma key serves a requested model name; `None` = DEFAULT_MODEL, which is left
/// to the sidecar (it applies its own DEFAULT_MODEL, e.g. `org_auto`, that Lingma
/// accepts without listing it).
pub fn resolve_model(
    requested: Option<&str>,
    known: &[ModelInfo],
    default_model: &str,
) -> Result<Option<String>, GatewayError> {
    let Some(name) = requested else {
        return Ok(None);
    };
    if name == default_model {
        return Ok(None);
    }
    if let Some(m) = known.iter().find(|m| m.id == name) {
        return Ok(Some(m.id.clone()));
    }
    if let Some(m) = known
        .iter()
        .find(|m| m.display_name.eq_ignore_ascii_case(name))
    {
        return Ok(Some(m.id.clone()));
    }
    if known.iter().any(|m| same_provider(&m.id, name)) {
        return Err(model_not_found(name));
    }
    Ok(None)
}

fn same_provider(key: &str, name: &str) -> bool {
    match key.split_once('_') {
        Some((provider, _)) if !provider.is_empty() => name
            .strip_prefix(provider)
            .is_some_and(|rest| rest.starts_with('_')),
        _ => false,
    }
}

pub fn model_not_found(name: &str) -> GatewayError {
    GatewayError::NotFound {
        message: format!(
            "The model '{}' does not exist or you do not have access to it.",
            quoted(name)
        ),
        param: Some("model"),
        code: "model_not_found",
    }
}

/// Whether `GET /v1/models/{id}` knows `id`: a reported key or DEFAULT_MODEL.
pub fn lookup<'a>(id: &str, known: &'a [ModelInfo], default_model: &str) -> Option<&'a str> {
    known
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.id.as_str())
        .or_else(|| (id == default_model).then_some(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<ModelInfo> {
        vec![
            ModelInfo {
                id: "dashscope_qwen3_coder".into(),
                display_name: "Qwen3-Coder".into(),
                is_reasoning: false,
                is_vl: false,
            },
            ModelInfo {
                id: "org_auto".into(),
                display_name: "Auto".into(),
                is_reasoning: false,
                is_vl: false,
            },
        ]
    }

    #[test]
    fn mapping_rules() {
        let k = known();
        let r = |name: Option<&str>| resolve_model(name, &k, "org_auto").expect("resolves");
        assert_eq!(
            r(Some("dashscope_qwen3_coder")).as_deref(),
            Some("dashscope_qwen3_coder")
        );
        assert_eq!(
            r(Some("qwen3-coder")).as_deref(),
            Some("dashscope_qwen3_coder")
        );
        assert_eq!(r(Some("gpt-4o")), None);
        assert_eq!(r(Some("org_auto")), None);
        assert_eq!(r(None), None);
        let err =
            resolve_model(Some("dashscope_nonexistent"), &k, "org_auto").expect_err("unknown key");
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn model_names_are_trimmed_and_bounded() {
        assert_eq!(accepted_model_name(None).expect("none"), None);
        assert_eq!(accepted_model_name(Some("  ")).expect("blank"), None);
        assert_eq!(
            accepted_model_name(Some(" gpt-4o "))
                .expect("short")
                .as_deref(),
            Some("gpt-4o")
        );
        let edge = "m".repeat(MAX_MODEL_NAME_BYTES);
        assert!(accepted_model_name(Some(&edge)).is_ok());
        let err = accepted_model_name(Some(&format!("{edge}x"))).expect_err("too long");
        assert_eq!(err.status(), 400);
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn lookup_knows_reported_and_default() {
        let k = known();
        assert!(lookup("dashscope_qwen3_coder", &k, "org_auto").is_some());
        assert!(lookup("org_auto", &[], "org_auto").is_some());
        assert!(lookup("gpt-4o", &k, "org_auto").is_none());
    }
}
