//! Stored responses for `previous_response_id` and `GET /v1/responses/{id}`, keyed by
//! API-key scope and response id, so one key never sees (or continues) another key's
//! conversation. Two backends with the same contract: a bounded LRU with a TTL in this
//! process (one replica), or Redis (GATEWAY_RESPONSES_REDIS_URL), which every replica
//! shares, with the same TTL.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::redis_store::RedisStore;
use crate::chat::turns::Turn;
use crate::ttl_cache::TtlCache;

/// What a finished response leaves behind.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The conversation without `instructions` (they are not carried over, as in
    /// OpenAI's API): the input turns and the response's output as turns.
    pub turns: Vec<Turn>,
    /// The final `response` object as JSON text.
    pub body: String,
}

/// Why the store could not answer. Messages never carry the store's address or password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the response store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the response store failed: {0}")]
    Backend(String),
    #[error("a stored response could not be read: {0}")]
    Corrupt(String),
}

/// (API-key scope, response id).
type Key = (Arc<str>, String);

pub struct ResponseStore {
    backend: Backend,
}

enum Backend {
    Memory(TtlCache<Key, Arc<StoredResponse>>),
    Redis(RedisStore),
}

impl ResponseStore {
    /// In this process: at most `capacity` responses, each for `ttl` after it was stored.
    pub fn memory(capacity: usize, ttl: Duration) -> Self {
        Self {
            backend: Backend::Memory(TtlCache::new(capacity, ttl)),
        }
    }

    /// In Redis at `url`, each response for `ttl`. Connects on first use (and again after
    /// a failure), so a gateway starts while Redis is still coming up.
    pub fn redis(url: &str, ttl: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Redis(RedisStore::new(url, ttl)?),
        })
    }

    /// `memory` or `redis`, for logs and `/internal/stats`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    pub async fn get(
        &self,
        scope: &Arc<str>,
        id: &str,
    ) -> Result<Option<Arc<StoredResponse>>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.get(&(scope.clone(), id.to_owned()))),
            Backend::Redis(r) => r.get(scope, id).await.map(|s| s.map(Arc::new)),
        }
    }

    pub async fn insert(
        &self,
        scope: Arc<str>,
        id: String,
        stored: StoredResponse,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.insert((scope, id), Arc::new(stored));
                Ok(())
            }
            Backend::Redis(r) => r.insert(&scope, &id, &stored).await,
        }
    }

    /// Responses held in this process (`None` for Redis: not this process's to count).
    pub fn held_in_process(&self) -> Option<usize> {
        match &self.backend {
            Backend::Memory(m) => Some(m.len()),
            Backend::Redis(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredResponse {
        StoredResponse {
            turns: Vec::new(),
            body: "{}".into(),
        }
    }

    #[tokio::test]
    async fn scopes_are_separate_and_entries_expire_and_are_bounded() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let store = ResponseStore::memory(2, Duration::from_secs(60));
        let get = async |s: &ResponseStore, scope: &Arc<str>, id: &str| {
            s.get(scope, id).await.expect("memory never fails")
        };
        store
            .insert(a.clone(), "resp_1".into(), stored())
            .await
            .expect("memory");
        assert!(get(&store, &a, "resp_1").await.is_some());
        assert!(
            get(&store, &b, "resp_1").await.is_none(),
            "another key's response"
        );
        store
            .insert(a.clone(), "resp_2".into(), stored())
            .await
            .expect("memory");
        store
            .insert(a.clone(), "resp_3".into(), stored())
            .await
            .expect("memory");
        assert_eq!(store.held_in_process(), Some(2));
        assert!(get(&store, &a, "resp_1").await.is_none(), "evicted");
        let expiring = ResponseStore::memory(2, Duration::ZERO);
        expiring
            .insert(a.clone(), "resp_1".into(), stored())
            .await
            .expect("memory");
        std::thread::sleep(Duration::from_millis(2));
        assert!(get(&expiring, &a, "resp_1").await.is_none());
        assert_eq!(expiring.held_in_process(), Some(0));
    }

    #[test]
    fn a_bad_redis_url_is_refused_without_echoing_it() {
        let err = ResponseStore::redis("http://user:hunter2@host", Duration::from_secs(1))
            .err()
            .expect("not a redis URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let tls = ResponseStore::redis("rediss://:hunter2@host:6380", Duration::from_secs(1))
            .err()
            .expect("TLS is not built in");
        assert!(tls.to_string().contains("TLS"), "{tls}");
        assert!(!tls.to_string().contains("hunter2"), "{tls}");
    }
}
