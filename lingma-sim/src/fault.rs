//! The faults a chat can be given: one enum, selectable at start (`--fault`) and at run
//! time (control API, `SimHandle::set_fault`), for all chats or the next N.

use crate::tools::ToolStyle;
use clap::ValueEnum;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Fault {
    /// Normal behaviour.
    #[default]
    None,
    /// The process exits mid-stream (library: this simulator's servers stop).
    Crash,
    /// `chat/ask` is accepted, then nothing more is sent for it (until `chat/stop`).
    Hang,
    /// JSON-RPC error on `chat/ask`.
    Error,
    /// Long first token and slow chunks (--slow-first-token-ms, --slow-chunk-delay-ms).
    Slow,
    /// The WebSocket is closed (TCP dropped, no close frame) mid-stream.
    Drop,
    /// `chat/finish` with statusCode 429.
    RateLimited,
    /// `chat/finish` with statusCode 403.
    Forbidden,
    /// `chat/finish` with statusCode 408.
    Timeout,
    /// `chat/finish` with statusCode 500.
    Internal,
    /// Part of the answer, then `chat/finish` with statusCode 601 (content filtered).
    Filtered,
    /// A well-delimited frame whose body is not JSON, mid-stream.
    MalformedFrame,
    /// A frame shorter than its Content-Length, then the connection is dropped.
    TruncatedFrame,
    /// Frames for the chat after its `chat/finish`.
    LateFrames,
    /// The first answer delta is sent twice with the same JSON-RPC id.
    DuplicateRequestId,
    /// A reply (`isReply:true`) is silently treated as a new session (turn 1).
    ForgetSession,
    /// `chat/ask` fails as if logged out (the login state is unchanged).
    NotLoggedIn,
    /// `chat/finish` with statusCode 403 and reason "quota_exhausted" (errorCode 110).
    QuotaExhausted,
    /// JSON-RPC error on `chat/ask`: unknown model key.
    UnknownModel,
    /// `chat/ask` gets no reply at all and nothing is sent (client RPC timeout path).
    NoReply,
    /// Under a tool contract: a call block whose JSON does not parse (`--tool-style malformed`).
    ToolMalformed,
    /// Under a tool contract: a call block cut off mid-JSON (`--tool-style partial`).
    ToolPartial,
    /// Under a tool contract: text, the call, more text (`--tool-style prose`).
    ToolProse,
    /// Under a tool contract: two calls (`--tool-style multiple`).
    ToolMultiple,
    /// Under a tool contract: plain text, no call (`--tool-style ignore`).
    ToolIgnore,
}

impl Fault {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    pub fn parse(name: &str) -> Option<Fault> {
        <Fault as ValueEnum>::from_str(name.trim(), true).ok()
    }

    /// The `chat/finish` of the status faults (sent after step_start, title and step_end).
    pub fn finish_status(self) -> Option<FinishStatus> {
        let (status_code, reason, error_code) = match self {
            Fault::RateLimited => (429, "rate_limited", None),
            Fault::Forbidden => (403, "forbidden", None),
            Fault::Timeout => (408, "timeout", None),
            Fault::Internal => (500, "internal_error", None),
            Fault::QuotaExhausted => (403, "quota_exhausted", Some(110)),
            _ => return None,
        };
        Some(FinishStatus {
            status_code,
            reason,
            error_code,
        })
    }

    /// The tool style this fault forces, if it is a tool fault.
    pub fn tool_style(self) -> Option<ToolStyle> {
        Some(match self {
            Fault::ToolMalformed => ToolStyle::Malformed,
            Fault::ToolPartial => ToolStyle::Partial,
            Fault::ToolProse => ToolStyle::Prose,
            Fault::ToolMultiple => ToolStyle::Multiple,
            Fault::ToolIgnore => ToolStyle::Ignore,
            _ => return None,
        })
    }

    pub fn all_names() -> Vec<String> {
        Fault::value_variants().iter().map(|f| f.name()).collect()
    }
}

/// How a status fault finishes a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishStatus {
    pub status_code: i64,
    pub reason: &'static str,
    pub error_code: Option<i64>,
}

/// The fault currently armed, with an optional count of chats it still applies to and an
/// optional end in time (an account rate limited or out of quota for a period).
#[derive(Debug, Default)]
pub struct FaultSlot {
    armed: AtomicBool,
    inner: Mutex<Armed>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Armed {
    fault: Fault,
    times: Option<u32>,
    until: Option<Instant>,
}

impl Armed {
    /// Still armed at `now` (its period, if any, has not run out).
    fn live(&self, now: Instant) -> bool {
        self.fault != Fault::None && self.until.is_none_or(|u| now < u)
    }
}

impl FaultSlot {
    pub fn new(fault: Fault, times: Option<u32>) -> Self {
        let slot = Self::default();
        slot.set(fault, times);
        slot
    }

    /// Arm `fault` for the next `times` chats (None = until cleared); `Fault::None` clears.
    pub fn set(&self, fault: Fault, times: Option<u32>) {
        self.set_for(fault, times, None);
    }

    /// [`FaultSlot::set`], ending by itself after `period` (whichever of `times` and
    /// `period` runs out first).
    pub fn set_for(&self, fault: Fault, times: Option<u32>, period: Option<Duration>) {
        let mut inner = self.inner.lock();
        let active = fault != Fault::None && times != Some(0) && period != Some(Duration::ZERO);
        *inner = if active {
            Armed {
                fault,
                times,
                until: period.map(|p| Instant::now() + p),
            }
        } else {
            Armed::default()
        };
        self.armed.store(active, Ordering::Release);
    }

    pub fn current(&self) -> (Fault, Option<u32>) {
        let inner = self.inner.lock();
        if inner.live(Instant::now()) {
            (inner.fault, inner.times)
        } else {
            (Fault::None, None)
        }
    }

    /// How long the armed fault still lasts, when it was armed for a period.
    pub fn remaining(&self) -> Option<Duration> {
        let inner = self.inner.lock();
        let now = Instant::now();
        inner
            .live(now)
            .then_some(inner.until)
            .flatten()
            .map(|u| u.saturating_duration_since(now))
    }

    /// The fault for the chat starting now (consumes one of its `times`).
    pub fn take(&self) -> Fault {
        if !self.armed.load(Ordering::Acquire) {
            return Fault::None;
        }
        let mut inner = self.inner.lock();
        if !inner.live(Instant::now()) {
            *inner = Armed::default();
            self.armed.store(false, Ordering::Release);
            return Fault::None;
        }
        let fault = inner.fault;
        match inner.times {
            Some(n) if n <= 1 => {
                *inner = Armed::default();
                self.armed.store(false, Ordering::Release);
            }
            Some(n) => inner.times = Some(n - 1),
            None => {}
        }
        fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_snake_case() {
        assert_eq!(Fault::RateLimited.name(), "rate_limited");
        assert_eq!(Fault::parse("late_frames"), Some(Fault::LateFrames));
        assert_eq!(Fault::parse("nope"), None);
        assert!(Fault::all_names().contains(&"duplicate_request_id".to_owned()));
    }

    #[test]
    fn times_counts_down_then_clears() {
        let slot = FaultSlot::new(Fault::Error, Some(2));
        assert_eq!(slot.take(), Fault::Error);
        assert_eq!(slot.take(), Fault::Error);
        assert_eq!(slot.take(), Fault::None);
        slot.set(Fault::Hang, None);
        assert_eq!(slot.take(), Fault::Hang);
        assert_eq!(slot.take(), Fault::Hang);
        slot.set(Fault::None, None);
        assert_eq!(slot.take(), Fault::None);
    }

    #[test]
    fn a_fault_armed_for_a_period_ends_by_itself() {
        let slot = FaultSlot::default();
        slot.set_for(Fault::QuotaExhausted, None, Some(Duration::from_millis(40)));
        assert_eq!(slot.take(), Fault::QuotaExhausted);
        assert_eq!(slot.current().0, Fault::QuotaExhausted);
        assert!(
            slot.remaining()
                .is_some_and(|r| r <= Duration::from_millis(40))
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(slot.current().0, Fault::None, "the period is over");
        assert_eq!(slot.remaining(), None);
        assert_eq!(slot.take(), Fault::None);
        // Times and a period: whichever runs out first.
        slot.set_for(Fault::RateLimited, Some(1), Some(Duration::from_secs(60)));
        assert_eq!(slot.take(), Fault::RateLimited);
        assert_eq!(slot.take(), Fault::None);
        slot.set_for(Fault::RateLimited, None, Some(Duration::ZERO));
        assert_eq!(slot.take(), Fault::None, "a zero period arms nothing");
    }
}
