//! API keys (`Authorization: Bearer` or Anthropic's `x-api-key`), compared in constant time.
//! The route layers that apply them are in `http::guards`.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::errors::GatewayError;

/// Who is calling: derived from the matched key, never the key itself.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// `mux_protocol::api_key_scope` of the key ("" without auth): session-map scope and
    /// part of the affinity key.
    pub scope: Arc<str>,
}

/// The configured keys, stored as SHA-256 digests so every comparison has the same
/// length and takes the same time whatever the input.
#[derive(Clone)]
pub struct ApiKeys {
    keys: Arc<[([u8; 32], Arc<str>)]>,
    metrics_token: Option<[u8; 32]>,
    anonymous: ClientIdentity,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys(<{} keys>)", self.keys.len())
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl ApiKeys {
    pub fn new(keys: &[String], metrics_token: &str) -> Self {
        let keys = keys
            .iter()
            .map(|k| {
                (
                    digest(k.as_bytes()),
                    Arc::from(mux_protocol::api_key_scope(k)),
                )
            })
            .collect();
        Self {
            keys,
            metrics_token: (!metrics_token.is_empty()).then(|| digest(metrics_token.as_bytes())),
            anonymous: ClientIdentity {
                scope: Arc::from(""),
            },
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The identity for these headers, or `Unauthorized`.
    pub fn check(&self, headers: &HeaderMap) -> Result<ClientIdentity, GatewayError> {
        if !self.enabled() {
            return Ok(self.anonymous.clone());
        }
        let presented = presented_key(headers).ok_or(GatewayError::Unauthorized)?;
        self.match_key(presented).ok_or(GatewayError::Unauthorized)
    }

    fn match_key(&self, presented: &str) -> Option<ClientIdentity> {
        let d = digest(presented.as_bytes());
        let mut found: Option<&Arc<str>> = None;
        // Look at every key, so the time does not say which one matched.
        for (key, scope) in self.keys.iter() {
            if bool::from(key.ct_eq(&d)) {
                found = Some(scope);
            }
        }
        found.map(|scope| ClientIdentity {
            scope: scope.clone(),
        })
    }

    /// `/metrics`: open when neither a metrics token nor API keys are set; else either one.
    pub fn check_metrics(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        if self.metrics_token.is_none() && !self.enabled() {
            return Ok(());
        }
        let presented = bearer(headers).ok_or(GatewayError::Unauthorized)?;
        let d = digest(presented.as_bytes());
        let token_ok = self.metrics_token.is_some_and(|t| bool::from(t.ct_eq(&d)));
        let key_ok = self.match_key(presented).is_some();
        if token_ok | key_ok {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized)
        }
    }
}

/// The key a client presents: `Authorization: Bearer <key>` (OpenAI clients) or
/// `x-api-key: <key>` (Anthropic clients); the same keys either way.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        headers
            .get("x-api-key")?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(auth).expect("header"),
        );
        h
    }

    #[test]
    fn keys_are_checked() {
        let keys = ApiKeys::new(&["sk-a".into(), "sk-b".into()], "");
        let a = keys.check(&headers("Bearer sk-a")).expect("a ok");
        let b = keys.check(&headers("bearer sk-b")).expect("b ok");
        assert_ne!(a.scope, b.scope);
        assert_eq!(&*a.scope, mux_protocol::api_key_scope("sk-a"));
        assert!(keys.check(&headers("Bearer sk-c")).is_err());
        assert!(keys.check(&headers("Bearer sk-a-longer")).is_err());
        assert!(keys.check(&headers("Basic sk-a")).is_err());
        assert!(keys.check(&HeaderMap::new()).is_err());
    }

    #[test]
    fn x_api_key_is_the_same_key() {
        let keys = ApiKeys::new(&["sk-a".into()], "");
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("sk-a"));
        let via_header = keys.check(&h).expect("x-api-key accepted");
        let via_bearer = keys.check(&headers("Bearer sk-a")).expect("bearer");
        assert_eq!(via_header.scope, via_bearer.scope, "one key, one scope");
        h.insert("x-api-key", HeaderValue::from_static("sk-b"));
        assert!(keys.check(&h).is_err());
    }

    #[test]
    fn no_keys_means_open_with_empty_scope() {
        let keys = ApiKeys::new(&[], "");
        assert_eq!(&*keys.check(&HeaderMap::new()).expect("open").scope, "");
        assert!(keys.check_metrics(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn metrics_take_token_or_key() {
        let keys = ApiKeys::new(&["sk-a".into()], "mt");
        assert!(keys.check_metrics(&headers("Bearer mt")).is_ok());
        assert!(keys.check_metrics(&headers("Bearer sk-a")).is_ok());
        assert!(keys.check_metrics(&headers("Bearer x")).is_err());
        assert!(keys.check_metrics(&HeaderMap::new()).is_err());
        let only_token = ApiKeys::new(&[], "mt");
        assert!(only_token.check_metrics(&HeaderMap::new()).is_err());
        assert!(only_token.check(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn debug_does_not_show_keys() {
        let keys = ApiKeys::new(&["sk-secret".into()], "");
        assert!(!format!("{keys:?}").contains("secret"));
    }
}
