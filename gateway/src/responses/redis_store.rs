//! The Redis backend of the response store: one string per response (its JSON), under
//! `lingma-gateway:response:{scope}:{id}`, set with the store's TTL. Every gateway replica
//! pointed at the same Redis sees every stored response.
//!
//! One multiplexed connection (`ConnectionManager`, which reconnects by itself), made on
//! first use; each command is bounded by [`OP_TIMEOUT`], so a Redis that hangs costs a
//! request a clear error, not its whole deadline.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::store::{StoreError, StoredResponse};

/// The most one Redis command (or the connection it waits for) may take.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
const KEY_PREFIX: &str = "lingma-gateway:response:";

pub struct RedisStore {
    conn: ConnectionManager,
    ttl_secs: u64,
}

impl RedisStore {
    /// Must be called inside a Tokio runtime (the manager connects in the background).
    pub fn new(url: &str, ttl: Duration) -> Result<Self, StoreError> {
        if url.starts_with("rediss:") {
            return Err(StoreError::Backend(
                "GATEWAY_RESPONSES_REDIS_URL: TLS (rediss://) is not built into this gateway; use redis:// over the cluster network or a TLS proxy".to_owned(),
            ));
        }
        // The parse error may quote the URL (and its password): say only what is wrong.
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::Backend(format!(
                "GATEWAY_RESPONSES_REDIS_URL is not a Redis URL ({:?})",
                e.kind()
            ))
        })?;
        // One quick reconnect try per failure, not a backoff series: a request waiting on
        // Redis has a deadline, and the next request tries again anyway.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Backend(describe(&e)))?;
        Ok(Self {
            conn,
            ttl_secs: ttl.as_secs().max(1),
        })
    }

    pub async fn get(&self, scope: &str, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(key(scope, id));
        let text: Option<String> = bounded(cmd.query_async(&mut conn)).await?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn insert(
        &self,
        scope: &str,
        id: &str,
        stored: &StoredResponse,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(scope, id))
            .arg(text)
            .arg("EX")
            .arg(self.ttl_secs);
        bounded(cmd.query_async::<()>(&mut conn)).await
    }
}

fn key(scope: &str, id: &str) -> String {
    format!("{KEY_PREFIX}{scope}:{id}")
}

/// A Redis future bounded by [`OP_TIMEOUT`], its error without addresses or secrets.
async fn bounded<T>(fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Err(_) => Err(StoreError::Timeout(OP_TIMEOUT)),
        Ok(Err(e)) => Err(StoreError::Backend(describe(&e))),
        Ok(Ok(v)) => Ok(v),
    }
}

/// What went wrong, by kind: the error's own text may name the server.
fn describe(e: &redis::RedisError) -> String {
    if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        "cannot reach Redis".to_owned()
    } else {
        format!("Redis answered with an error ({:?})", e.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_is_a_clear_error_without_the_password() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = RedisStore::new(
            &format!("redis://:pw-5ec2e7@127.0.0.1:{port}"),
            Duration::from_secs(60),
        )
        .expect("a Redis URL");
        let err = store
            .get("scope", "resp_1")
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(err, StoreError::Backend(_) | StoreError::Timeout(_)),
            "{err:?}"
        );
        assert!(!err.to_string().contains("pw-5ec2e7"), "{err}");
        let stored = StoredResponse {
            turns: Vec::new(),
            body: "{}".into(),
        };
        assert!(store.insert("scope", "resp_1", &stored).await.is_err());
    }
}
