//! The words of the protocol's enums: one metric label per kind (the same text as the wire
//! name), and the decisions every binary takes from a kind (what blames an instance, what
//! may be retried elsewhere, which login failures no retry fixes). Gateway, sidecar and
//! operator read them from here instead of keeping their own copies.

use crate::messages::{
    ConnectionState, ErrorKind, FinishReason, LoginFailure, LoginState, PauseReason, SessionOutcome,
};

/// Whose fault a failure is ([`ErrorKind::blame`]). Only [`Blame::Instance`] counts towards
/// ejection; only `Instance` and `Busy` are retried elsewhere (and only before Lingma
/// accepted the ask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blame {
    /// The request: Lingma refused it, or it names an unknown model, or it is malformed.
    /// Any instance would fail it the same way.
    Request,
    /// The client: it cancelled or went away.
    Client,
    /// A healthy instance at its limit (rate limited, at capacity).
    Busy,
    /// The instance, its Lingma or its account failed.
    Instance,
}

impl Blame {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Blame::Request => "request",
            Blame::Client => "client",
            Blame::Busy => "busy",
            Blame::Instance => "instance",
        }
    }
}

impl ErrorKind {
    /// Every kind, for exhaustive tests and pre-registered metric labels.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::BadRequest,
        ErrorKind::UnknownModel,
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::Unavailable,
        ErrorKind::UpstreamAuth,
        ErrorKind::Timeout,
        ErrorKind::ConnectionLost,
        ErrorKind::Upstream,
        ErrorKind::Cancelled,
        ErrorKind::Internal,
    ];

    /// The metric label, equal to the wire name (`unknown_model`, `upstream`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UnknownModel => "unknown_model",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::UpstreamAuth => "upstream_auth",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whose fault this failure is: decided once here, read by every binary.
    pub const fn blame(self) -> Blame {
        match self {
            // The request itself (malformed, unknown model, or refused by Lingma): the
            // same request fails on any instance.
            ErrorKind::BadRequest | ErrorKind::UnknownModel => Blame::Request,
            // The client went away (or read too slowly and was given up on).
            ErrorKind::Cancelled => Blame::Client,
            // The instance is healthy but at its limit (its account's rate limit, its
            // full capacity): another instance may take the request.
            ErrorKind::RateLimited | ErrorKind::Overloaded => Blame::Busy,
            ErrorKind::Unavailable
            | ErrorKind::UpstreamAuth
            | ErrorKind::Timeout
            | ErrorKind::ConnectionLost
            | ErrorKind::Upstream
            | ErrorKind::Internal => Blame::Instance,
        }
    }

    /// Whether this failure counts against the instance that reported it (towards passive
    /// ejection): the instance, its Lingma or its account failed, not the request.
    pub const fn blames_instance(self) -> bool {
        matches!(self.blame(), Blame::Instance)
    }

    /// Whether a failure before `Started` may be retried on another instance: the
    /// instance's fault or limit, and the failure proves Lingma never ran the ask (at most
    /// once upstream). Not a timeout, a lost connection, an invalid answer or a sidecar
    /// bug: the ask may have reached Lingma. Never the request's or the client's.
    pub const fn retriable_elsewhere(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable
                | ErrorKind::Overloaded
                | ErrorKind::RateLimited
                | ErrorKind::UpstreamAuth
        )
    }

    /// Whether Lingma (or the cloud behind it) produced this failure, as opposed to the
    /// sidecar itself or the request: what the sidecar counts as an upstream error.
    pub const fn is_upstream_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::UpstreamAuth
                | ErrorKind::Timeout
                | ErrorKind::ConnectionLost
                | ErrorKind::Upstream
        )
    }
}

impl LoginFailure {
    pub const ALL: [LoginFailure; 7] = [
        LoginFailure::Expired,
        LoginFailure::ChallengeRequired,
        LoginFailure::QuotaExhausted,
        LoginFailure::WrongCredentials,
        LoginFailure::NoAccount,
        LoginFailure::Timeout,
        LoginFailure::Unavailable,
    ];

    /// The wire name, also the operator's condition reason (`WrongCredentials`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            LoginFailure::Expired => "Expired",
            LoginFailure::ChallengeRequired => "ChallengeRequired",
            LoginFailure::QuotaExhausted => "QuotaExhausted",
            LoginFailure::WrongCredentials => "WrongCredentials",
            LoginFailure::NoAccount => "NoAccount",
            LoginFailure::Timeout => "Timeout",
            LoginFailure::Unavailable => "Unavailable",
        }
    }

    /// The failure named by [`LoginFailure::as_str`], if `name` is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// A failure no retry fixes: a human must change the account.
    pub const fn is_permanent(self) -> bool {
        matches!(
            self,
            LoginFailure::WrongCredentials | LoginFailure::NoAccount
        )
    }

    /// A failure of the login itself (the account, the page, the time it took), as
    /// opposed to `Unavailable`: the sidecar could not run a login flow at all.
    pub const fn is_login_failure(self) -> bool {
        !matches!(self, LoginFailure::Unavailable)
    }
}

impl LoginState {
    /// The metric label: the state's wire name, without the failure reason.
    pub const fn as_str(&self) -> &'static str {
        match self {
            LoginState::Unknown => "unknown",
            LoginState::LoggedOut => "logged_out",
            LoginState::LoggingIn => "logging_in",
            LoginState::LoggedIn => "logged_in",
            LoginState::Failed { .. } => "failed",
        }
    }

    /// Every label [`LoginState::as_str`] can give, for pre-registered gauges.
    pub const LABELS: [&'static str; 5] =
        ["unknown", "logged_out", "logging_in", "logged_in", "failed"];
}

impl ConnectionState {
    pub const ALL: [ConnectionState; 6] = [
        ConnectionState::Stopped,
        ConnectionState::Starting,
        ConnectionState::Ready,
        ConnectionState::Reconnecting,
        ConnectionState::Failed,
        ConnectionState::Closed,
    ];

    /// The metric label, equal to the wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Stopped => "stopped",
            ConnectionState::Starting => "starting",
            ConnectionState::Ready => "ready",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Failed => "failed",
            ConnectionState::Closed => "closed",
        }
    }
}

impl FinishReason {
    /// The wire name (also OpenAI's `finish_reason` text).
    pub const fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

impl SessionOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionOutcome::Reused => "reused",
            SessionOutcome::New => "new",
        }
    }
}

impl PauseReason {
    pub const ALL: [PauseReason; 2] = [PauseReason::RateLimited, PauseReason::QuotaExhausted];

    /// The metric label, equal to the wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PauseReason::RateLimited => "rate_limited",
            PauseReason::QuotaExhausted => "quota_exhausted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde name of a unit variant, as it travels on the wire.
    fn wire<T: serde::Serialize>(value: &T) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a unit variant: {other:?}"),
        }
    }

    #[test]
    fn labels_are_the_wire_names() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.as_str(), wire(&kind));
        }
        for failure in LoginFailure::ALL {
            assert_eq!(failure.as_str(), wire(&failure));
            assert_eq!(LoginFailure::from_name(failure.as_str()), Some(failure));
        }
        assert_eq!(LoginFailure::from_name("NotLoggedIn"), None);
        for state in ConnectionState::ALL {
            assert_eq!(state.as_str(), wire(&state));
        }
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ContentFilter,
        ] {
            assert_eq!(reason.as_str(), wire(&reason));
        }
        for outcome in [SessionOutcome::Reused, SessionOutcome::New] {
            assert_eq!(outcome.as_str(), wire(&outcome));
        }
        for reason in PauseReason::ALL {
            assert_eq!(reason.as_str(), wire(&reason));
        }
        let states = [
            LoginState::Unknown,
            LoginState::LoggedOut,
            LoginState::LoggingIn,
            LoginState::LoggedIn,
            LoginState::Failed {
                reason: LoginFailure::Expired,
            },
        ];
        for (state, label) in states.iter().zip(LoginState::LABELS) {
            assert_eq!(state.as_str(), label);
            let json = serde_json::to_value(state).expect("json");
            assert_eq!(json["state"], label);
        }
    }

    #[test]
    fn only_the_instances_faults_blame_it() {
        let blamed: Vec<ErrorKind> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.blames_instance())
            .collect();
        assert_eq!(
            blamed,
            [
                ErrorKind::Unavailable,
                ErrorKind::UpstreamAuth,
                ErrorKind::Timeout,
                ErrorKind::ConnectionLost,
                ErrorKind::Upstream,
                ErrorKind::Internal,
            ]
        );
    }

    #[test]
    fn retried_elsewhere_are_only_failures_that_prove_the_ask_never_ran() {
        for kind in ErrorKind::ALL {
            if kind.retriable_elsewhere() {
                assert!(
                    matches!(kind.blame(), Blame::Instance | Blame::Busy),
                    "{kind:?}"
                );
            }
        }
        // The request's own faults and a cancel are never retried.
        for kind in [
            ErrorKind::BadRequest,
            ErrorKind::UnknownModel,
            ErrorKind::Cancelled,
        ] {
            assert!(!kind.retriable_elsewhere(), "{kind:?}");
            assert!(!kind.blames_instance(), "{kind:?}");
        }
        // The ask may have reached Lingma: blamed, but never run a second time.
        for kind in [
            ErrorKind::Timeout,
            ErrorKind::ConnectionLost,
            ErrorKind::Upstream,
            ErrorKind::Internal,
        ] {
            assert!(!kind.retriable_elsewhere(), "{kind:?}");
            assert!(kind.blames_instance(), "{kind:?}");
        }
        for kind in [
            ErrorKind::Unavailable,
            ErrorKind::Overloaded,
            ErrorKind::RateLimited,
        ] {
            assert!(kind.retriable_elsewhere(), "{kind:?}");
        }
    }

    #[test]
    fn every_kind_has_exactly_one_blame() {
        let of = |b: Blame| -> Vec<ErrorKind> {
            ErrorKind::ALL
                .into_iter()
                .filter(|k| k.blame() == b)
                .collect()
        };
        assert_eq!(
            of(Blame::Request),
            [ErrorKind::BadRequest, ErrorKind::UnknownModel]
        );
        assert_eq!(of(Blame::Client), [ErrorKind::Cancelled]);
        assert_eq!(
            of(Blame::Busy),
            [ErrorKind::RateLimited, ErrorKind::Overloaded]
        );
        assert_eq!(of(Blame::Instance).len(), 6);
        for kind in ErrorKind::ALL {
            assert_eq!(kind.blames_instance(), kind.blame() == Blame::Instance);
        }
        assert_eq!(Blame::Instance.as_str(), "instance");
    }

    #[test]
    fn upstream_failures_are_lingmas() {
        let upstream: Vec<ErrorKind> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.is_upstream_failure())
            .collect();
        assert_eq!(
            upstream,
            [
                ErrorKind::RateLimited,
                ErrorKind::UpstreamAuth,
                ErrorKind::Timeout,
                ErrorKind::ConnectionLost,
                ErrorKind::Upstream,
            ]
        );
    }

    #[test]
    fn only_account_problems_are_permanent() {
        let permanent: Vec<LoginFailure> = LoginFailure::ALL
            .into_iter()
            .filter(|f| f.is_permanent())
            .collect();
        assert_eq!(
            permanent,
            [LoginFailure::WrongCredentials, LoginFailure::NoAccount]
        );
        let login_failures: Vec<LoginFailure> = LoginFailure::ALL
            .into_iter()
            .filter(|f| !f.is_login_failure())
            .collect();
        assert_eq!(login_failures, [LoginFailure::Unavailable]);
    }
}
