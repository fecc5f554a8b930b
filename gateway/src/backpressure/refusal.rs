//! Why admission said no, and the client-facing error each reason becomes.

use std::time::Duration;

use super::estimate::retry_after_secs;
use crate::errors::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The wait queue is full; `retry_after` is the estimated wait at its end.
    QueueFull { retry_after: Duration },
    /// The deadline passed; `retry_after` is the estimated wait from the position it had.
    QueueTimeout { retry_after: Duration },
    /// Nothing to route to; `paused_for` when that is because every account is paused
    /// (the soonest a pause should end).
    NoSidecar { paused_for: Option<Duration> },
}

impl Refusal {
    pub fn into_error(self) -> GatewayError {
        match self {
            Self::QueueFull { retry_after } => GatewayError::RateLimited {
                message: "Too many requests are waiting; retry later.",
                code: "queue_full",
                retry_after_secs: retry_after_secs(retry_after),
            },
            Self::QueueTimeout { retry_after } => GatewayError::RateLimited {
                message: "No capacity became free in time; retry later.",
                code: "queue_timeout",
                retry_after_secs: retry_after_secs(retry_after),
            },
            Self::NoSidecar { paused_for: None } => GatewayError::Unavailable {
                message: "No upstream Lingma instance is ready to take requests.",
                retry_after_secs: None,
            },
            Self::NoSidecar {
                paused_for: Some(left),
            } => GatewayError::Unavailable {
                message: "Every upstream Lingma account is paused (rate limited or out of quota); retry later.",
                retry_after_secs: Some(retry_after_secs(left)),
            },
        }
    }
}
