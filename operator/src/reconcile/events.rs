//! The events a user needs: for what changed and matters, never for a repeated state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType};
use mux_protocol::LoginFailure;

use crate::crd::LingmaInstance;
use crate::status::{DEGRADED, LOGGED_IN, RECONCILED};

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
