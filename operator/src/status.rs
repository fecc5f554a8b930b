//! The instance's status and its conditions, computed by value from what the reconciler saw.
//!
//! Per-replica login state: a ready pod is logged in (its readiness probe is the sidecar's
//! `/readyz`, which is true only when connected to Lingma and logged in); for a pod that is not
//! ready the operator asks its sidecar's `GET /login/status` why. A pod whose login is going away
//! (expired session, re-login) turns not-ready first, so the gateway stops sending it new chats
//! while open streams finish (the sidecar drains); the status then shows it as not logged in.
//!
//! Account pauses: a sidecar whose account is rate limited or out of quota stays pod-ready (it
//! keeps its gateway connections, so they see the end of the pause at once) but takes no chats.
//! Its readiness cannot tell, so every pod's sidecar is asked, and `/login/status` carries the
//! pause. A paused replica is not counted ready and the `Ready` condition says why
//! (`AccountPaused`); a pause ends by itself, so it is not `Degraded`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::SignedDuration;
use mux_protocol::{AccountPause, LoginFailure, LoginState};

use crate::crd::{LingmaInstance, LingmaInstanceStatus, ReplicaPause, ReplicaStatus};

pub const READY: &str = "Ready";
pub const LOGGED_IN: &str = "LoggedIn";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Whether the last reconcile applied every object (False carries the API server's reason).
pub const RECONCILED: &str = "Reconciled";

/// One pod as the reconciler saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaObservation {
    pub name: String,
    pub ordinal: i32,
    pub ready: bool,
    /// `None` when the sidecar could not be asked.
    pub login: Option<LoginState>,
    /// The account pause the sidecar reported, if any.
    pub paused: Option<AccountPause>,
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
        Some(LoginState::Failed { reason }) => ("failed", Some(reason.as_str())),
    }
}

fn is_logged_in(r: &ReplicaObservation) -> bool {
    r.ready || matches!(r.login, Some(LoginState::LoggedIn))
}

pub fn compute_status(obs: &Observation<'_>) -> LingmaInstanceStatus {
    let instance = obs.instance;
    let desired = instance.spec.replicas;
    let accounts = obs.accounts.as_ref().ok().copied().unwrap_or(0);
    let instances = replica_statuses(&obs.replicas, accounts, &obs.now);
    let counts = ReplicaCounts::of(obs);
    let conditions = ConditionFactory::new(instance, obs.now.clone());
    let not_logged_in = not_logged_in(&instances, &obs.replicas);

    let ready = ready_condition(&conditions, desired, &counts, &instances);
    let logged_in = logged_in_condition(&conditions, desired, counts.logged_in, &not_logged_in);
    let progressing = progressing_condition(&conditions, obs.statefulset, desired);
    let degraded = degraded_condition(&conditions, obs, &not_logged_in);
    // The status is written only after every object applied.
    let reconciled = conditions.make(
        RECONCILED,
        true,
        "ReconcileSucceeded",
        "every object applied".to_owned(),
    );

    LingmaInstanceStatus {
        observed_generation: instance.metadata.generation,
        replicas: counts.replicas,
        ready_replicas: counts.ready,
        paused_replicas: counts.paused,
        logged_in_replicas: counts.logged_in,
        accounts: saturating_i32(accounts),
        selector: obs.selector.clone(),
        instances,
        conditions: vec![ready, logged_in, progressing, degraded, reconciled],
    }
}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// One status entry per observed pod; its account slot is the ordinal modulo the accounts.
fn replica_statuses(
    replicas: &[ReplicaObservation],
    accounts: usize,
    now: &Time,
) -> Vec<ReplicaStatus> {
    replicas
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
                    r.ordinal % saturating_i32(accounts)
                } else {
                    r.ordinal
                },
                ready: r.ready && r.paused.is_none(),
                login: login.to_owned(),
                reason: reason.map(str::to_owned),
                paused: r.paused.as_ref().map(|p| replica_pause(p, now)),
            }
        })
        .collect()
}

/// The sidecar's pause with its end as a time: `retry_after_ms` is relative to the answer,
/// which a status read minutes later could not use. Rounded up to whole seconds, as
/// metav1.Time is written, so the pause never looks over before it is.
fn replica_pause(pause: &AccountPause, now: &Time) -> ReplicaPause {
    let seconds = pause.retry_after_ms.div_ceil(1000);
    let left = SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
    let resume = now
        .0
        .checked_add(left)
        .unwrap_or(k8s_openapi::jiff::Timestamp::MAX);
    ReplicaPause {
        reason: pause.reason.as_str().to_owned(),
        resume_time: Time(resume),
        pauses: i32::try_from(pause.pauses).unwrap_or(i32::MAX),
    }
}

/// `team-1: quota_exhausted until 2026-01-01T00:02:00Z (pause 2)`, for condition messages
/// and events.
pub(crate) fn describe_pause(name: &str, pause: &ReplicaPause) -> String {
    format!(
        "{name}: {} until {} (pause {})",
        pause.reason,
        pause.resume_time.0.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pause.pauses
    )
}

/// The replica counts of the status.
struct ReplicaCounts {
    /// Pods the StatefulSet reports.
    replicas: i32,
    /// Pods that take chats: ready and not paused.
    ready: i32,
    /// Pods that are ready but whose account is paused.
    paused_ready: i32,
    /// Pods whose account is paused, ready or not.
    paused: i32,
    logged_in: i32,
}

impl ReplicaCounts {
    fn of(obs: &Observation<'_>) -> Self {
        let replicas = obs
            .statefulset
            .and_then(|s| s.status.as_ref())
            .map(|s| s.replicas)
            .unwrap_or(0);
        let count = |f: fn(&ReplicaObservation) -> bool| {
            saturating_i32(obs.replicas.iter().filter(|r| f(r)).count())
        };
        Self {
            replicas,
            ready: count(|r| r.ready && r.paused.is_none()),
            paused_ready: count(|r| r.ready && r.paused.is_some()),
            paused: count(|r| r.paused.is_some()),
            logged_in: count(is_logged_in),
        }
    }
}

/// Builds conditions that keep their `lastTransitionTime` while their status does not flip.
pub(crate) struct ConditionFactory<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    now: Time,
}

impl<'a> ConditionFactory<'a> {
    pub(crate) fn new(instance: &'a LingmaInstance, now: Time) -> Self {
        Self {
            previous: instance
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default(),
            generation: instance.metadata.generation,
            now,
        }
    }

    pub(crate) fn make(&self, type_: &str, ok: bool, reason: &str, message: String) -> Condition {
        let status = if ok { "True" } else { "False" };
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time,
            observed_generation: self.generation,
        }
    }
}

fn ready_condition(
    conditions: &ConditionFactory<'_>,
    desired: i32,
    counts: &ReplicaCounts,
    instances: &[ReplicaStatus],
) -> Condition {
    let ready = counts.ready;
    let mut message = format!("{ready}/{desired} replicas ready");
    let paused: Vec<String> = instances
        .iter()
        .filter_map(|i| i.paused.as_ref().map(|p| describe_pause(&i.name, p)))
        .collect();
    if !paused.is_empty() {
        message.push_str("; account paused: ");
        message.push_str(&paused.join(", "));
    }
    if desired == 0 {
        conditions.make(
            READY,
            true,
            "ScaledToZero",
            "no replicas requested".to_owned(),
        )
    } else if ready >= desired && counts.replicas == desired {
        conditions.make(READY, true, "AllReplicasReady", message)
    } else if ready + counts.paused_ready >= desired && counts.replicas == desired {
        // Every pod is fine; what keeps some out of rotation is only their accounts' pauses.
        conditions.make(READY, false, "AccountPaused", message)
    } else {
        conditions.make(READY, false, "ReplicasNotReady", message)
    }
}

/// The pods that are not logged in, each with the word for why.
fn not_logged_in<'a>(
    instances: &'a [ReplicaStatus],
    replicas: &[ReplicaObservation],
) -> Vec<(&'a str, &'static str)> {
    instances
        .iter()
        .zip(replicas)
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
        .collect()
}

/// The most frequent reason, so `kubectl get -o wide` shows the main cause.
fn most_frequent_reason(not_logged_in: &[(&str, &'static str)]) -> &'static str {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for (_, why) in not_logged_in {
        match counts.iter_mut().find(|(w, _)| w == why) {
            Some((_, n)) => *n += 1,
            None => counts.push((why, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts.first().map(|(w, _)| *w).unwrap_or("ReplicasMissing")
}

fn logged_in_condition(
    conditions: &ConditionFactory<'_>,
    desired: i32,
    logged_in: i32,
    not_logged_in: &[(&str, &'static str)],
) -> Condition {
    if not_logged_in.is_empty() && logged_in >= desired {
        return conditions.make(
            LOGGED_IN,
            true,
            "AllLoggedIn",
            format!("{logged_in}/{desired} replicas logged in"),
        );
    }
    let detail: Vec<String> = not_logged_in
        .iter()
        .map(|(n, w)| format!("{n}: {w}"))
        .collect();
    let mut message = format!("{logged_in}/{desired} replicas logged in");
    if !detail.is_empty() {
        message.push_str("; ");
        message.push_str(&detail.join(", "));
    }
    conditions.make(
        LOGGED_IN,
        false,
        most_frequent_reason(not_logged_in),
        message,
    )
}

fn progressing_condition(
    conditions: &ConditionFactory<'_>,
    statefulset: Option<&StatefulSet>,
    desired: i32,
) -> Condition {
    let sts_status = statefulset.and_then(|s| s.status.as_ref());
    let replicas = sts_status.map(|s| s.replicas).unwrap_or(0);
    let sts_generation = statefulset.and_then(|s| s.metadata.generation);
    let sts_observed = sts_status.and_then(|s| s.observed_generation);
    let updated = sts_status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let revisions_differ = sts_status
        .map(|s| s.update_revision.is_some() && s.current_revision != s.update_revision)
        .unwrap_or(false);
    if statefulset.is_none() || sts_observed < sts_generation {
        conditions.make(
            PROGRESSING,
            true,
            "Reconciling",
            "the StatefulSet is being updated".to_owned(),
        )
    } else if replicas != desired {
        conditions.make(
            PROGRESSING,
            true,
            "Scaling",
            format!("{replicas} replicas, {desired} desired"),
        )
    } else if revisions_differ || updated < desired {
        conditions.make(
            PROGRESSING,
            true,
            "RollingUpdate",
            format!("{updated}/{desired} replicas updated"),
        )
    } else {
        conditions.make(
            PROGRESSING,
            false,
            "RolloutComplete",
            "all replicas are up to date".to_owned(),
        )
    }
}

fn degraded_condition(
    conditions: &ConditionFactory<'_>,
    obs: &Observation<'_>,
    not_logged_in: &[(&str, &'static str)],
) -> Condition {
    let permanent: Vec<&str> = not_logged_in
        .iter()
        // A failure no retry fixes: a human must change the accounts Secret.
        .filter(|(_, w)| LoginFailure::from_name(w).is_some_and(LoginFailure::is_permanent))
        .map(|(n, _)| *n)
        .collect();
    match &obs.accounts {
        Err(problem) => conditions.make(
            DEGRADED,
            true,
            problem.reason(),
            problem.message(obs.instance),
        ),
        Ok(_) if !permanent.is_empty() => conditions.make(
            DEGRADED,
            true,
            "LoginRejected",
            format!(
                "the account of {} was rejected; fix the accounts Secret",
                permanent.join(", ")
            ),
        ),
        Ok(_) => conditions.make(DEGRADED, false, "AsExpected", "no problem found".to_owned()),
    }
}

#[cfg(test)]
mod tests;
