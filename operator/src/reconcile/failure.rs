//! A failed reconcile made visible: the `Reconciled` condition turns False with the API
//! server's reason and a Warning event is published, so a permanent failure (a 422 on an
//! immutable field, an object the operator does not own) is not only a log line.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use super::events::condition;
use super::{Context, Error};
use crate::crd::LingmaInstance;
use crate::status::{ConditionFactory, RECONCILED};

/// Longest message written, in bytes: an event's note may hold 1 kB (a condition's 32 kB).
const MAX_MESSAGE: usize = 1000;

impl Error {
    /// The `Reconciled` condition's reason: one CamelCase word per kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            // A 4xx other than a conflict or throttling: retrying the same object cannot help,
            // the spec (or the object in the way) must change.
            Error::Apply {
                source: kube::Error::Api(status),
                ..
            } if (400..500).contains(&status.code) && !matches!(status.code, 409 | 429) => {
                "ApplyRejected"
            }
            Error::Apply { .. } => "ApplyFailed",
            Error::NotOwned { .. } => "NotOwned",
            Error::Kube(_) => "ApiError",
            Error::Build(_) => "InvalidInstance",
        }
    }

    /// What the condition and the event say: the API server's own explanation, never an
    /// object's content.
    pub fn message(&self) -> String {
        let message = match self {
            Error::Apply { kind, name, source } => {
                format!("applying {kind} {name}: {}", api_message(source))
            }
            Error::NotOwned { kind, name } => format!(
                "{kind} {name} exists and is not controlled by this LingmaInstance; \
                 delete or rename it, or give the instance another name"
            ),
            Error::Kube(error) => api_message(error),
            Error::Build(error) => error.to_string(),
        };
        truncate(message, MAX_MESSAGE)
    }
}

fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        kube::Error::Api(status) => format!("{} ({})", status.reason, status.code),
        other => other.to_string(),
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The instance's conditions with `Reconciled` set False for `error`; the others unchanged.
pub(super) fn failed_conditions(
    instance: &LingmaInstance,
    error: &Error,
    now: Time,
) -> Vec<Condition> {
    let reconciled = ConditionFactory::new(instance, now).make(
        RECONCILED,
        false,
        error.reason(),
        error.message(),
    );
    let mut conditions: Vec<Condition> = instance
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    match conditions.iter_mut().find(|c| c.type_ == RECONCILED) {
        Some(existing) => *existing = reconciled,
        None => conditions.push(reconciled),
    }
    conditions
}

/// Writes the failure to the status and, when it is news, as a Warning event. Neither may
/// hide the original error: their own failures are logged only.
pub(super) async fn report_failure(instance: &LingmaInstance, ctx: &Context, error: &Error) {
    let Some(namespace) = instance.namespace() else {
        return;
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let conditions = failed_conditions(instance, error, now);
    let api = Api::<LingmaInstance>::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({ "status": { "conditions": conditions } });
    if let Err(patch_error) = api
        .patch_status(
            &instance.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        tracing::warn!(error = %patch_error, "writing the Reconciled condition failed");
    }
    let old = instance
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, RECONCILED));
    let news = old.is_none_or(|c| {
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
            != ("False", error.reason(), error.message().as_str())
    });
    if news {
        let event = Event {
            type_: EventType::Warning,
            reason: error.reason().to_owned(),
            note: Some(error.message()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(event_error) = ctx
            .recorder
            .publish(&event, &instance.object_ref(&()))
            .await
        {
            tracing::warn!(error = %event_error, "publishing the failure event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(600), MAX_MESSAGE);
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
