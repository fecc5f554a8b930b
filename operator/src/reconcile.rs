//! The reconciler: read what exists, apply the desired objects with server-side apply under one
//! field manager, then write the status and the events a user needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_discovery::names::{TOKEN_KEY, token_secret_name};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use mux_protocol::LoginFailure;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::accounts::count_accounts;
use crate::builders::{
    BuildError, PodSettings, desired_pdb, desired_service, desired_statefulset,
    desired_token_secret, generate_token, selector_string,
};
use crate::crd::LingmaInstance;
use crate::login::LoginProbe;
use crate::metrics::Metrics;
use crate::status::{
    AccountsProblem, DEGRADED, LOGGED_IN, Observation, READY, ReplicaObservation, compute_status,
};

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "lingma-operator";
/// Requeue while replicas are not ready (login progress is not visible through watches).
const REQUEUE_NOT_READY: Duration = Duration::from_secs(15);
const REQUEUE_READY: Duration = Duration::from_secs(300);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// What every reconcile shares. Nothing global.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub pod_settings: PodSettings,
    pub login_probe: Arc<dyn LoginProbe>,
    /// Consecutive failures per object, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        pod_settings: PodSettings,
        login_probe: Arc<dyn LoginProbe>,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            pod_settings,
            login_probe,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic elsewhere cannot leave the counters inconsistent: keep using them.
        match self.failures.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Counts one more consecutive failure of `key` and returns the count.
    fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures();
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn clear_failures(&self, key: &str) {
        self.failures().remove(key);
    }
}

fn object_key(instance: &LingmaInstance) -> String {
    format!(
        "{}/{}",
        instance.namespace().unwrap_or_default(),
        instance.name_any()
    )
}

/// Exponential backoff (5s, 10s, 20s ... 300s) per object; reset by a successful reconcile.
pub fn error_policy(instance: Arc<LingmaInstance>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed();
    let failures = ctx.record_failure(&object_key(&instance));
    let delay = backoff(failures);
    tracing::warn!(instance = %object_key(&instance), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(10);
    BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX)
}

pub async fn reconcile(instance: Arc<LingmaInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.start_reconcile();
    let result = reconcile_inner(&instance, &ctx).await;
    if let Ok(action) = &result {
        ctx.clear_failures(&object_key(&instance));
        ctx.metrics
            .reconciled(if *action == Action::await_change() {
                "success"
            } else {
                "requeue_after"
            });
    }
    result
}

async fn reconcile_inner(instance: &LingmaInstance, ctx: &Context) -> Result<Action, Error> {
    let namespace = instance
        .namespace()
        .ok_or(BuildError::MissingMetadata("namespace"))?;
    let name = instance.name_any();
    let client = ctx.client.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    let accounts = read_accounts(&secrets, instance).await?;
    let token = existing_token(&secrets, &name)
        .await?
        .unwrap_or_else(generate_token);

    apply(&secrets, &desired_token_secret(instance, &token)?).await?;
    apply(
        &Api::<Service>::namespaced(client.clone(), &namespace),
        &desired_service(instance)?,
    )
    .await?;
    let statefulset = apply(
        &Api::<StatefulSet>::namespaced(client.clone(), &namespace),
        &desired_statefulset(instance, &ctx.pod_settings)?,
    )
    .await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace),
        &desired_pdb(instance)?,
    )
    .await?;

    let selector = selector_string(instance);
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let replicas = observe_replicas(&name, pods.items, &token, ctx.login_probe.as_ref()).await;

    let status = compute_status(&Observation {
        instance,
        statefulset: Some(&statefulset),
        replicas,
        accounts,
        selector,
        now: Time(k8s_openapi::jiff::Timestamp::now()),
    });
    let ready = condition(&status.conditions, READY).is_some_and(|c| c.status == "True");
    let events = events_for(instance, &status.conditions, status.accounts);
    Api::<LingmaInstance>::namespaced(client, &namespace)
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    let reference = instance.object_ref(&());
    for event in events {
        // An event that cannot be written must not fail the reconcile.
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, reason = %event.reason, "publishing event failed");
        }
    }
    Ok(Action::requeue(if ready {
        REQUEUE_READY
    } else {
        REQUEUE_NOT_READY
    }))
}

async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

async fn read_accounts(
    secrets: &Api<Secret>,
    instance: &LingmaInstance,
) -> Result<Result<usize, AccountsProblem>, kube::Error> {
    let reference = &instance.spec.accounts.secret_ref;
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Err(AccountsProblem::SecretMissing));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&reference.key))
                .map(|v| v.clone().into_bytes())
        });
    Ok(match value {
        None => Err(AccountsProblem::KeyMissing),
        Some(raw) => count_accounts(&raw).map_err(|e| AccountsProblem::Invalid(e.to_string())),
    })
}

/// The token already stored, so that re-applying never rotates it.
async fn existing_token(secrets: &Api<Secret>, name: &str) -> Result<Option<String>, kube::Error> {
    let secret = secrets.get_opt(&token_secret_name(name)).await?;
    Ok(secret
        .and_then(|s| s.data)
        .and_then(|d| d.get(TOKEN_KEY).cloned())
        .and_then(|v| String::from_utf8(v.0).ok())
        .filter(|t| !t.trim().is_empty()))
}

/// Pod name "x-3" -> 3 for the pods of StatefulSet "x".
fn ordinal(statefulset: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(statefulset)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

async fn observe_replicas(
    statefulset: &str,
    pods: Vec<Pod>,
    token: &str,
    probe: &dyn LoginProbe,
) -> Vec<ReplicaObservation> {
    let mut observed: Vec<(ReplicaObservation, Option<IpAddr>)> = pods
        .into_iter()
        .filter_map(|pod| {
            let name = pod.name_any();
            let ordinal = ordinal(statefulset, &name)?;
            let status = pod.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let ip = status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            Some((
                ReplicaObservation {
                    name,
                    ordinal,
                    ready,
                    login: None,
                },
                ip,
            ))
        })
        .collect();
    observed.sort_by_key(|(r, _)| r.ordinal);
    // Only pods that are not ready are asked: a ready pod is logged in by definition.
    let asks = observed.iter().map(|(r, ip)| async move {
        match (r.ready, ip) {
            (false, Some(ip)) => probe.login_state(*ip, token).await,
            _ => None,
        }
    });
    let answers = futures::future::join_all(asks).await;
    observed
        .into_iter()
        .zip(answers)
        .map(|((mut r, _), login)| {
            r.login = login;
            r
        })
        .collect()
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Events for what changed and matters to a user; repeated states produce no new events.
fn events_for(instance: &LingmaInstance, new: &[Condition], accounts: i32) -> Vec<Event> {
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

#[cfg(test)]
mod tests;
