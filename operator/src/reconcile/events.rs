//! The events a user needs: for what changed and matters, never for a repeated state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType};
use mux_protocol::LoginFailure;

use crate::crd::{LingmaInstance, ReplicaPause, ReplicaStatus};
use crate::status::{DEGRADED, LOGGED_IN, RECONCILED, describe_pause};

/// How far a pause's end may move between two looks and still be the same pause: the end is
/// the operator's clock plus the time the sidecar said was left, so it jitters by the time
/// an answer takes (at most the probe's 2 s timeout) and the rounding to seconds.
const SAME_PAUSE_SLACK_SECONDS: i64 = 5;

pub(super) fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Events for what changed and matters to a user; repeated states produce no new events.
pub(super) fn events_for(
    instance: &LingmaInstance,
    new: &[Condition],
    accounts: i32,
) -> Vec<Event> {
    let old = instance
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let changed = |type_: &str| {
        let before = condition(old, type_).map(|c| (c.status.as_str(), c.reason.as_str()));
        let after = condition(new, type_).map(|c| (c.status.as_str(), c.reason.as_str()));
        before != after
    };
    let mut events = Vec::new();
    let new_generation = instance.status.as_ref().and_then(|s| s.observed_generation)
        != instance.metadata.generation;
    let replicas = instance.spec.replicas;
    if new_generation && accounts > 0 && accounts < replicas {
        events.push(Event {
            type_: EventType::Warning,
            reason: "AccountsFewerThanReplicas".to_owned(),
            note: Some(format!(
                "{replicas} replicas share {accounts} accounts: replica i uses account i mod {accounts}"
            )),
            action: "Reconcile".to_owned(),
            secondary: None,
        });
    }
    let recovered = condition(old, RECONCILED).is_some_and(|c| c.status == "False")
        && condition(new, RECONCILED).is_some_and(|c| c.status == "True");
    if recovered {
        events.push(Event {
            type_: EventType::Normal,
            reason: "Reconciled".to_owned(),
            note: Some("every object applied again".to_owned()),
            action: "Reconcile".to_owned(),
            secondary: None,
        });
    }
    if let Some(degraded) = condition(new, DEGRADED)
        && degraded.status == "True"
        && changed(DEGRADED)
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: degraded.reason.clone(),
            note: Some(degraded.message.clone()),
            action: "Reconcile".to_owned(),
            secondary: None,
        });
    }
    if let Some(logged_in) = condition(new, LOGGED_IN)
        && changed(LOGGED_IN)
    {
        let failure =
            LoginFailure::from_name(&logged_in.reason).is_some_and(LoginFailure::is_login_failure);
        if logged_in.status == "True" {
            events.push(Event {
                type_: EventType::Normal,
                reason: "LoggedIn".to_owned(),
                note: Some(logged_in.message.clone()),
                action: "Login".to_owned(),
                secondary: None,
            });
        } else if failure {
            events.push(Event {
                type_: EventType::Warning,
                reason: format!("Login{}", logged_in.reason),
                note: Some(logged_in.message.clone()),
                action: "Login".to_owned(),
                secondary: None,
            });
        }
    }
    events
}

/// One Warning `AccountPaused` naming the replicas whose account pause started since the last
/// status (a new pause of the streak, or a longer-lasting reason), so `kubectl describe` shows
/// when an account ran out; nothing while the same pauses go on.
pub(super) fn pause_event(instance: &LingmaInstance, new: &[ReplicaStatus]) -> Option<Event> {
    let old = instance
        .status
        .as_ref()
        .map(|s| s.instances.as_slice())
        .unwrap_or_default();
    let started: Vec<String> = new
        .iter()
        .filter_map(|r| {
            let pause = r.paused.as_ref()?;
            let before = old
                .iter()
                .find(|o| o.name == r.name)
                .and_then(|o| o.paused.as_ref());
            (!before.is_some_and(|b| same_pause(b, pause))).then(|| describe_pause(&r.name, pause))
        })
        .collect();
    if started.is_empty() {
        return None;
    }
    Some(Event {
        type_: EventType::Warning,
        reason: "AccountPaused".to_owned(),
        note: Some(format!(
            "rate limited or out of quota, taking no chats until the pause ends: {}",
            started.join(", ")
        )),
        action: "Observe".to_owned(),
        secondary: None,
    })
}

fn same_pause(before: &ReplicaPause, now: &ReplicaPause) -> bool {
    let moved = now.resume_time.0.as_second() - before.resume_time.0.as_second();
    before.reason == now.reason && before.pauses == now.pauses && moved <= SAME_PAUSE_SLACK_SECONDS
}
