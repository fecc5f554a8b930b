//! The simulator's control API on its HTTP port (`/control/...`, bearer token): read its
//! statistics, arm faults, log it in or out. Works for any simulator whose HTTP port and
//! control token are known, also one a sidecar supervises.

use anyhow::Result;
use serde_json::{Value, json};
use std::time::Duration;

/// How long one control call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SimControl {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl SimControl {
    pub fn new(http_port: u16, token: &str) -> Self {
        Self {
            base: format!("http://127.0.0.1:{http_port}"),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// `GET /control/stats`.
    pub async fn stats(&self) -> Result<Value> {
        let resp = self
            .http
            .get(format!("{}/control/stats", self.base))
            .bearer_auth(&self.token)
            .timeout(CALL_TIMEOUT)
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.json().await?)
    }

    /// The `recent_asks` of the statistics (oldest first).
    pub async fn recent_asks(&self) -> Result<Vec<Value>> {
        Ok(self.stats().await?["recent_asks"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// `POST` to a body-less control endpoint: `/control/login`, `/control/logout`,
    /// `/control/expire-login`.
    pub async fn post(&self, path: &str) -> Result<()> {
        self.send(path, None).await
    }

    /// `POST /control/fault`: `times = None` applies it until cleared; `"none"` clears.
    pub async fn set_fault(&self, fault: &str, times: Option<u32>) -> Result<()> {
        let mut body = json!({ "fault": fault });
        if let Some(n) = times {
            body["times"] = n.into();
        }
        self.send("/control/fault", Some(body)).await
    }

    /// `POST /control/fault` with `for_ms`: the fault applies to every chat for `period`,
    /// then clears by itself (an account rate limited or out of quota for a while).
    pub async fn set_fault_for(&self, fault: &str, period: Duration) -> Result<()> {
        let for_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let body = json!({ "fault": fault, "for_ms": for_ms });
        self.send("/control/fault", Some(body)).await
    }

    async fn send(&self, path: &str, body: Option<Value>) -> Result<()> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await?.error_for_status()?;
        Ok(())
    }
}
