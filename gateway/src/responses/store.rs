//! Stored responses for `previous_response_id` and `GET /v1/responses/{id}`: a bounded LRU
//! with a TTL, keyed by API-key scope and response id, so one key never sees (or continues)
//! another key's conversation.

use std::sync::Arc;
use std::time::Duration;

use crate::ttl_cache::TtlCache;

use crate::chat::turns::Turn;

/// What a finished response leaves behind.
#[derive(Debug)]
pub struct StoredResponse {
    /// The conversation without `instructions` (they are not carried over, as in
    /// OpenAI's API): the input turns and the response's output as turns.
    pub turns: Vec<Turn>,
    /// The final `response` object as JSON text.
    pub body: String,
}

/// (API-key scope, response id).
type Key = (Arc<str>, String);

pub struct ResponseStore {
    entries: TtlCache<Key, Arc<StoredResponse>>,
}

impl ResponseStore {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: TtlCache::new(capacity, ttl),
        }
    }

    pub fn get(&self, scope: &Arc<str>, id: &str) -> Option<Arc<StoredResponse>> {
        self.entries.get(&(scope.clone(), id.to_owned()))
    }

    pub fn insert(&self, scope: Arc<str>, id: String, stored: StoredResponse) {
        self.entries.insert((scope, id), Arc::new(stored));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    #[test]
    fn scopes_are_separate_and_entries_expire_and_are_bounded() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let store = ResponseStore::new(2, Duration::from_secs(60));
        store.insert(a.clone(), "resp_1".into(), stored());
        assert!(store.get(&a, "resp_1").is_some());
        assert!(store.get(&b, "resp_1").is_none(), "another key's response");
        store.insert(a.clone(), "resp_2".into(), stored());
        store.insert(a.clone(), "resp_3".into(), stored());
        assert_eq!(store.len(), 2);
        assert!(store.get(&a, "resp_1").is_none(), "evicted");
        let expiring = ResponseStore::new(2, Duration::ZERO);
        expiring.insert(a.clone(), "resp_1".into(), stored());
        std::thread::sleep(Duration::from_millis(2));
        assert!(expiring.get(&a, "resp_1").is_none());
        assert!(expiring.is_empty());
    }
}
