//! The instance's status and its conditions, computed by value from what the reconciler saw.
//!
//! Per-replica login state: a ready pod is logged in (its readiness probe is the sidecar's
//! `/readyz`, which is true only when connected to Lingma and logged in); for a pod that is not
//! ready the operator asks its sidecar's `GET /login/status` why. A pod whose login is going away
//! (expired session, re-login) turns not-ready first, so the gateway stops sending it new chats
//! while open streams finish (the sidecar drains); the status then shows it as not logged in.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use mux_protocol::{LoginFailure, LoginState};

use crate::crd::{LingmaInstance, LingmaInstanceStatus, ReplicaStatus};

pub const READY: &str = "Ready";
pub const LOGGED_IN: &str = "LoggedIn";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// One pod as the reconciler saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaObservation {
    pub name: String,
    pub ordinal: i32,
    pub ready: bool,
    /// `None` when the sidecar could not be asked.
    pub login: Option<LoginState>,
}

/// What is wrong with the accounts Secret, if anything. Never carries its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountsProblem {
    SecretMissing,
    KeyMissing,
    Invalid(String),
}

impl AccountsProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            AccountsProblem::SecretMissing => "AccountsSecretMissing",
            AccountsProblem::KeyMissing => "AccountsKeyMissing",
            AccountsProblem::Invalid(_) => "AccountsInvalid",
        }
    }

    pub fn message(&self, instance: &LingmaInstance) -> String {
        let r = &instance.spec.accounts.secret_ref;
        match self {
            AccountsProblem::SecretMissing => format!("Secret {} does not exist", r.name),
            AccountsProblem::KeyMissing => format!("Secret {} has no key {}", r.name, r.key),
            AccountsProblem::Invalid(why) => format!("Secret {} key {}: {why}", r.name, r.key),
        }
    }
}

/// Everything the status is computed from.
pub struct Observation<'a> {
    pub instance: &'a LingmaInstance,
    pub statefulset: Option<&'a StatefulSet>,
    pub replicas: Vec<ReplicaObservation>,
    pub accounts: Result<usize, AccountsProblem>,
    pub selector: String,
    pub now: Time,
}

pub fn login_label(login: &Option<LoginState>) -> (&'static str, Option<&'static str>) {
    match login {
        None | Some(LoginState::Unknown) => ("unknown", None),
        Some(LoginState::LoggedOut) => ("logged_out", None),
        Some(LoginState::LoggingIn) => ("logging_in", None),
        Some(LoginState::LoggedIn) => ("logged_in", None),
        Some(LoginState::Failed { reason }) => ("failed", Some(failure_name(*reason))),
    }
}

fn failure_name(reason: LoginFailure) -> &'static str {
    match reason {
        LoginFailure::Expired => "Expired",
        LoginFailure::ChallengeRequired => "ChallengeRequired",
        LoginFailure::QuotaExhausted => "QuotaExhausted",
        LoginFailure::WrongCredentials => "WrongCredentials",
        LoginFailure::NoAccount => "NoAccount",
        LoginFailure::Timeout => "Timeout",
        LoginFailure::Unavailable => "Unavailable",
    }
}

/// A failure no retry fixes: a human must change the accounts Secret.
fn is_permanent(reason: &str) -> bool {
    matches!(reason, "WrongCredentials" | "NoAccount")
}

fn is_logged_in(r: &ReplicaObservation) -> bool {
    r.ready || matches!(r.login, Some(LoginState::LoggedIn))
}

pub fn compute_status(obs: &Observation<'_>) -> LingmaInstanceStatus {
    let instance = obs.instance;
    let desired = instance.spec.replicas;
    let generation = instance.metadata.generation;
    let accounts = obs.accounts.as_ref().ok().copied().unwrap_or(0);
    let instances: Vec<ReplicaStatus> = obs
        .replicas
        .iter()
        .map(|r| {
            let (login, reason) = if r.ready {
                ("logged_in", None)
            } else {
                login_label(&r.login)
            };
            ReplicaStatus {
                name: r.name.clone(),
                account_slot: if accounts > 0 {
                    r.ordinal % i32::try_from(accounts).unwrap_or(i32::MAX)
                } else {
                    r.ordinal
                },
                ready: r.ready,
                login: login.to_owned(),
                reason: reason.map(str::to_owned),
            }
        })
        .collect();
    let sts_status = obs.statefulset.and_then(|s| s.status.as_ref());
    let replicas = sts_status.map(|s| s.replicas).unwrap_or(0);
    let ready_replicas = obs.replicas.iter().filter(|r| r.ready).count();
    let logged_in = obs.replicas.iter().filter(|r| is_logged_in(r)).count();
    let ready_replicas = i32::try_from(ready_replicas).unwrap_or(i32::MAX);
    let logged_in = i32::try_from(logged_in).unwrap_or(i32::MAX);

    let previous = instance
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        // lastTransitionTime moves only when the status flips.
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| obs.now.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time,
            observed_generation: generation,
        }
    };

    let all_ready = ready_replicas >= desired && replicas == desired;
    let ready = if desired == 0 {
        condition(
            READY,
            true,
            "ScaledToZero",
            "no replicas requested".to_owned(),
        )
    } else if all_ready {
        condition(
            READY,
            true,
            "AllReplicasReady",
            format!("{ready_replicas}/{desired} replicas ready"),
        )
    } else {
        condition(
            READY,
            false,
            "ReplicasNotReady",
            format!("{ready_replicas}/{desired} replicas ready"),
        )
    };

    let not_logged_in: Vec<(&str, &'static str)> = instances
        .iter()
        .zip(&obs.replicas)
        .filter(|(_, r)| !is_logged_in(r))
        .map(|(s, r)| {
            let why = match login_label(&r.login) {
                (_, Some(reason)) => reason,
                ("logging_in", None) => "LoggingIn",
                ("logged_out", None) => "LoggedOut",
                _ => "Unknown",
            };
            (s.name.as_str(), why)
        })
        .collect();
    let logged_in_condition = if not_logged_in.is_empty() && logged_in >= desired {
        condition(
            LOGGED_IN,
            true,
            "AllLoggedIn",
            format!("{logged_in}/{desired} replicas logged in"),
        )
    } else {
        // The reason is the most frequent one, so `kubectl get -o wide` shows the main cause.
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for (_, why) in &not_logged_in {
            match counts.iter_mut().find(|(w, _)| w == why) {
                Some((_, n)) => *n += 1,
                None => counts.push((why, 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        let reason = counts.first().map(|(w, _)| *w).unwrap_or("ReplicasMissing");
        let detail: Vec<String> = not_logged_in
            .iter()
            .map(|(n, w)| format!("{n}: {w}"))
            .collect();
        let mut message = format!("{logged_in}/{desired} replicas logged in");
        if !detail.is_empty() {
            message.push_str("; ");
            message.push_str(&detail.join(", "));
        }
        condition(LOGGED_IN, false, reason, message)
    };

    let sts_generation = obs.statefulset.and_then(|s| s.metadata.generation);
    let sts_observed = sts_status.and_then(|s| s.observed_generation);
    let updated = sts_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let revisions_differ = sts_status
        .map(|s| s.update_revision.is_some() && s.current_revision != s.update_revision)
        .unwrap_or(false);
    let progressing = if obs.statefulset.is_none() || sts_observed < sts_generation {
        condition(
            PROGRESSING,
            true,
            "Reconciling",
            "the StatefulSet is being updated".to_owned(),
        )
    } else if replicas != desired {
        condition(
            PROGRESSING,
            true,
            "Scaling",
            format!("{replicas} replicas, {desired} desired"),
        )
    } else if revisions_differ || updated < desired {
        condition(
            PROGRESSING,
            true,
            "RollingUpdate",
            format!("{updated}/{desired} replicas updated"),
        )
    } else {
        condition(
            PROGRESSING,
            false,
            "RolloutComplete",
            "all replicas are up to date".to_owned(),
        )
    };

    let permanent: Vec<&str> = not_logged_in
        .iter()
        .filter(|(_, w)| is_permanent(w))
        .map(|(n, _)| *n)
        .collect();
    let degraded = match &obs.accounts {
        Err(problem) => condition(DEGRADED, true, problem.reason(), problem.message(instance)),
        Ok(_) if !permanent.is_empty() => condition(
            DEGRADED,
            true,
            "LoginRejected",
            format!(
                "the account of {} was rejected; fix the accounts Secret",
                permanent.join(", ")
            ),
        ),
        Ok(_) => condition(DEGRADED, false, "AsExpected", "no problem found".to_owned()),
    };

    LingmaInstanceStatus {
        observed_generation: generation,
        replicas,
        ready_replicas,
        logged_in_replicas: logged_in,
        accounts: i32::try_from(accounts).unwrap_or(i32::MAX),
        selector: obs.selector.clone(),
        instances,
        conditions: vec![ready, logged_in_condition, progressing, degraded],
    }
}

#[cfg(test)]
mod tests;
