//! `API_KEYS_FILE`: named client keys with optional limits, as JSON (a Kubernetes Secret
//! mounts as a file). Checked at start: a bad file stops the gateway with a clear error
//! instead of serving with keys or limits other than the ones written.
//!
//! ```json
//! {"keys": [
//!   {"name": "ci-agent", "key_sha256": "<64 hex>", "max_concurrent": 2,
//!    "requests_per_minute": 60, "models": ["gpt-4o"], "weight": 1},
//!   {"name": "alice", "key": "sk-alice-..."}
//! ]}
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

/// One entry of the file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// Chats of this key queued or running at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Model ids as clients name them; absent = every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Share of the slots when keys compete (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
}

/// A checked entry: the key only as its SHA-256 digest.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    pub digest: [u8; 32],
    pub max_concurrent: Option<u32>,
    pub requests_per_minute: Option<u32>,
    pub models: Option<Vec<String>>,
    pub weight: u32,
    /// The session scope: from the digest, so `key` and `key_sha256` of one key agree.
    pub scope: String,
}

/// What is wrong with the keys (never shows a key).
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("API_KEYS_FILE {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("API_KEYS_FILE: not valid JSON of the documented format: {0}")]
    Parse(#[from] serde_json::Error),
    #[error(
        "API_KEYS_FILE: entry {index}: name must be 1-64 characters of letters, digits, '.', '_' or '-'"
    )]
    BadName { index: usize },
    #[error("API_KEYS_FILE: the name {0:?} is used twice (also by API_KEYS' key-N names)")]
    DuplicateName(String),
    #[error("API_KEYS_FILE: key {0:?} needs exactly one of 'key' or 'key_sha256'")]
    KeyOrDigest(String),
    #[error("API_KEYS_FILE: key {0:?} has an empty key")]
    EmptyKey(String),
    #[error("API_KEYS_FILE: key {0:?}: key_sha256 must be 64 hex digits")]
    BadDigest(String),
    #[error("API_KEYS_FILE: keys {0:?} and {1:?} are the same key")]
    DuplicateKey(String, String),
    #[error("API_KEYS_FILE: key {0:?}: {1} must be at least 1 (leave it out for no limit)")]
    Zero(String, &'static str),
    #[error("API_KEYS_FILE: key {0:?}: models is empty (leave it out to allow every model)")]
    NoModels(String),
}

pub fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// The session scope of a key known by its digest.
pub fn scope_of_digest(digest: &[u8; 32]) -> String {
    mux_protocol::api_key_scope(&format!("sha256:{}", hex::encode(digest)))
}

/// Read and check `path`.
pub fn load(path: &Path) -> Result<Vec<KeySpec>, KeysFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// Check the file's text.
pub fn parse(text: &str) -> Result<Vec<KeySpec>, KeysFileError> {
    let file: KeysFile = serde_json::from_str(text)?;
    file.keys
        .into_iter()
        .enumerate()
        .map(|(index, entry)| check_entry(index, entry))
        .collect()
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_entry(index: usize, e: KeyEntry) -> Result<KeySpec, KeysFileError> {
    if !valid_name(&e.name) {
        return Err(KeysFileError::BadName { index });
    }
    let name = e.name;
    let digest = match (e.key.as_deref(), e.key_sha256.as_deref()) {
        (Some(key), None) if key.trim().is_empty() => {
            return Err(KeysFileError::EmptyKey(name));
        }
        (Some(key), None) => digest(key.trim().as_bytes()),
        (None, Some(hex_digest)) => {
            let mut out = [0u8; 32];
            hex::decode_to_slice(hex_digest.trim(), &mut out)
                .map_err(|_| KeysFileError::BadDigest(name.clone()))?;
            out
        }
        _ => return Err(KeysFileError::KeyOrDigest(name)),
    };
    for (field, value) in [
        ("max_concurrent", e.max_concurrent),
        ("requests_per_minute", e.requests_per_minute),
        ("weight", e.weight),
    ] {
        if value == Some(0) {
            return Err(KeysFileError::Zero(name, field));
        }
    }
    if e.models.as_ref().is_some_and(Vec::is_empty) {
        return Err(KeysFileError::NoModels(name));
    }
    Ok(KeySpec {
        scope: scope_of_digest(&digest),
        digest,
        max_concurrent: e.max_concurrent,
        requests_per_minute: e.requests_per_minute,
        models: e.models,
        weight: e.weight.unwrap_or(1),
        name,
    })
}

/// `API_KEYS` entries as specs named `key-1`, `key-2`, ... in order (no limits; their
/// scope stays `api_key_scope(key)`, as before named keys existed).
pub fn from_list(keys: &[String]) -> Vec<KeySpec> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| KeySpec {
            name: format!("key-{}", i + 1),
            digest: digest(k.as_bytes()),
            max_concurrent: None,
            requests_per_minute: None,
            models: None,
            weight: 1,
            scope: mux_protocol::api_key_scope(k),
        })
        .collect()
}

/// No name or key twice over both sources.
pub fn check_unique(specs: &[KeySpec]) -> Result<(), KeysFileError> {
    let mut names: HashMap<&str, ()> = HashMap::new();
    let mut digests: HashMap<[u8; 32], &str> = HashMap::new();
    for s in specs {
        if names.insert(&s.name, ()).is_some() {
            return Err(KeysFileError::DuplicateName(s.name.clone()));
        }
        if let Some(other) = digests.insert(s.digest, &s.name) {
            return Err(KeysFileError::DuplicateKey(
                other.to_owned(),
                s.name.clone(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text).and_then(|s| check_unique(&s).map(|()| s)) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_full_entry_parses() {
        let hex_digest = hex::encode(digest(b"sk-b"));
        let text = format!(
            r#"{{"keys":[{{"name":"a","key":"sk-a","max_concurrent":2,"requests_per_minute":60,"models":["gpt-4o"],"weight":3}},{{"name":"b","key_sha256":"{hex_digest}"}}]}}"#
        );
        let specs = parse(&text).expect("valid");
        check_unique(&specs).expect("unique");
        assert_eq!(specs[0].digest, digest(b"sk-a"));
        assert_eq!(
            (
                specs[0].max_concurrent,
                specs[0].requests_per_minute,
                specs[0].weight
            ),
            (Some(2), Some(60), 3)
        );
        assert_eq!(specs[1].digest, digest(b"sk-b"));
        assert_eq!(specs[1].weight, 1);
        assert_eq!(specs[1].scope, scope_of_digest(&digest(b"sk-b")));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            err(r#"{"keys":[{"name":"a","key":"x","max_concurent":2}]}"#).contains("unknown field")
        );
        assert!(err(r#"{"keys":[{"name":"a","key":"x"}],"extra":1}"#).contains("unknown field"));
        assert!(err(r#"{"keys":[{"name":"a","key":" "}]}"#).contains("empty key"));
        assert!(err(r#"{"keys":[{"name":"a"}]}"#).contains("exactly one"));
        assert!(
            err(r#"{"keys":[{"name":"a","key":"x","key_sha256":"00"}]}"#).contains("exactly one")
        );
        assert!(err(r#"{"keys":[{"name":"a","key_sha256":"zz"}]}"#).contains("64 hex"));
        assert!(err(r#"{"keys":[{"name":"a b","key":"x"}]}"#).contains("entry 0"));
        assert!(err(r#"{"keys":[{"name":"a","key":"x","weight":0}]}"#).contains("weight"));
        assert!(
            err(r#"{"keys":[{"name":"a","key":"x","models":[]}]}"#).contains("models is empty")
        );
        assert!(
            err(r#"{"keys":[{"name":"a","key":"x"},{"name":"a","key":"y"}]}"#)
                .contains("used twice")
        );
        let same = err(r#"{"keys":[{"name":"a","key":"x"},{"name":"b","key":"x"}]}"#);
        assert!(
            same.contains("same key") && !same.contains("\"x\""),
            "{same}"
        );
    }

    #[test]
    fn api_keys_get_ordinal_names() {
        let specs = from_list(&["sk-1".into(), "sk-2".into()]);
        assert_eq!(specs[1].name, "key-2");
        assert_eq!(specs[0].scope, mux_protocol::api_key_scope("sk-1"));
    }
}
