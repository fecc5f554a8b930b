//! API keys (`Authorization: Bearer` or Anthropic's `x-api-key`), compared in constant time.
//! Each key is a named [`VirtualKey`] (API_KEYS entries are `key-1`, `key-2`, ...; the
//! entries of API_KEYS_FILE carry their own names and limits). The route layers that
//! apply them are in `http::guards`.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::errors::GatewayError;
use crate::keys::{self, KeySpec, VirtualKey};

/// Who is calling: derived from the matched key, never the key itself.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// `mux_protocol::api_key_scope` of the key ("" without auth): session-map scope and
    /// part of the affinity key.
    pub scope: Arc<str>,
    /// The key's name, limits and weight (`anonymous` without auth).
    pub key: Arc<VirtualKey>,
}

/// The configured keys, stored as SHA-256 digests so every comparison has the same
/// length and takes the same time whatever the input.
#[derive(Clone)]
pub struct ApiKeys {
    keys: Arc<[([u8; 32], ClientIdentity)]>,
    /// METRICS_TOKEN and ADMIN_TOKEN (the ones set): what the admin routes take.
    admin_tokens: Arc<[[u8; 32]]>,
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
    /// `admin_tokens`: METRICS_TOKEN, ADMIN_TOKEN (empty ones are ignored). The keys are
    /// named `key-1`, `key-2`, ... and have no limits.
    pub fn new(keys: &[String], admin_tokens: &[&str]) -> Self {
        Self::from_specs(&keys::file::from_list(keys), admin_tokens, 1)
    }

    /// Named keys with their limits, each limit divided by `replicas` (GATEWAY_REPLICAS).
    /// `specs` are checked (unique names and keys) by the caller.
    pub fn from_specs(specs: &[KeySpec], admin_tokens: &[&str], replicas: u32) -> Self {
        let keys = specs
            .iter()
            .map(|spec| {
                (
                    spec.digest,
                    ClientIdentity {
                        scope: Arc::from(spec.scope.as_str()),
                        key: Arc::new(VirtualKey::from_spec(spec, replicas)),
                    },
                )
            })
            .collect();
        Self {
            keys,
            admin_tokens: admin_tokens
                .iter()
                .filter(|t| !t.is_empty())
                .map(|t| digest(t.as_bytes()))
                .collect(),
            anonymous: ClientIdentity {
                scope: Arc::from(""),
                key: Arc::new(VirtualKey::open(keys::ANONYMOUS)),
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
        let mut found: Option<&ClientIdentity> = None;
        // Look at every key, so the time does not say which one matched.
        for (key, identity) in self.keys.iter() {
            if bool::from(key.ct_eq(&d)) {
                found = Some(identity);
            }
        }
        found.cloned()
    }

    /// Admin routes (`/metrics`, `/internal/*`): open when neither an admin token nor API
    /// keys are set (a developer machine); else only an admin token. A client key is
    /// recognised and refused with 403, so it can never read metrics or force a login.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        if self.admin_tokens.is_empty() && !self.enabled() {
            return Ok(());
        }
        let presented = bearer(headers).ok_or(GatewayError::Unauthorized)?;
        let d = digest(presented.as_bytes());
        let mut admin = false;
        // Compare with every token, so the time does not say which one matched.
        for token in self.admin_tokens.iter() {
            admin |= bool::from(token.ct_eq(&d));
        }
        if admin {
            Ok(())
        } else if self.match_key(presented).is_some() {
            Err(GatewayError::Forbidden)
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
        let keys = ApiKeys::new(&["sk-a".into(), "sk-b".into()], &[]);
        let a = keys.check(&headers("Bearer sk-a")).expect("a ok");
        let b = keys.check(&headers("bearer sk-b")).expect("b ok");
        assert_ne!(a.scope, b.scope);
        assert_eq!(&*a.scope, mux_protocol::api_key_scope("sk-a"));
        assert_eq!((&*a.key.name, &*b.key.name), ("key-1", "key-2"));
        assert!(keys.check(&headers("Bearer sk-c")).is_err());
        assert!(keys.check(&headers("Bearer sk-a-longer")).is_err());
        assert!(keys.check(&headers("Basic sk-a")).is_err());
        assert!(keys.check(&HeaderMap::new()).is_err());
    }

    #[test]
    fn x_api_key_is_the_same_key() {
        let keys = ApiKeys::new(&["sk-a".into()], &[]);
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
        let keys = ApiKeys::new(&[], &[]);
        let open = keys.check(&HeaderMap::new()).expect("open");
        assert_eq!((&*open.scope, &*open.key.name), ("", "anonymous"));
        assert!(keys.check_admin(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn admin_routes_take_admin_tokens_and_refuse_client_keys() {
        let keys = ApiKeys::new(&["sk-a".into()], &["mt", "at"]);
        assert!(keys.check_admin(&headers("Bearer mt")).is_ok());
        assert!(keys.check_admin(&headers("Bearer at")).is_ok());
        assert!(matches!(
            keys.check_admin(&headers("Bearer sk-a")),
            Err(GatewayError::Forbidden)
        ));
        assert!(matches!(
            keys.check_admin(&headers("Bearer x")),
            Err(GatewayError::Unauthorized)
        ));
        assert!(keys.check_admin(&HeaderMap::new()).is_err());
        // Admin tokens are not client keys either.
        assert!(keys.check(&headers("Bearer mt")).is_err());
        // Keys but no admin token: the admin routes are closed to everyone.
        let keys_only = ApiKeys::new(&["sk-a".into()], &["", ""]);
        assert!(matches!(
            keys_only.check_admin(&headers("Bearer sk-a")),
            Err(GatewayError::Forbidden)
        ));
        let only_token = ApiKeys::new(&[], &["mt"]);
        assert!(only_token.check_admin(&HeaderMap::new()).is_err());
        assert!(only_token.check(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn file_keys_carry_their_names() {
        let specs = keys::file::parse(
            r#"{"keys":[{"name":"ci","key":"sk-ci","max_concurrent":1},{"name":"bob","key_sha256":"0b0b8a1e8f52b4b0d4d4d6d0f31f0bd27a0a3dc81ac1c4a4ae0fc0bdd7b8ebc1"}]}"#,
        )
        .expect("file");
        let keys = ApiKeys::from_specs(&specs, &[], 1);
        let ci = keys.check(&headers("Bearer sk-ci")).expect("ci");
        assert_eq!(&*ci.key.name, "ci");
        assert_eq!(ci.key.max_concurrent(), Some(1));
        assert!(keys.check(&headers("Bearer sk-other")).is_err());
    }

    #[test]
    fn debug_does_not_show_keys() {
        let keys = ApiKeys::new(&["sk-secret".into()], &[]);
        assert!(!format!("{keys:?}").contains("secret"));
    }
}
