//! The reconciler: read what exists, apply the desired objects with server-side apply under one
//! field manager, then write the status and the events a user needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_discovery::names::{LABEL_MANAGED_BY, MANAGED_BY, TOKEN_KEY, token_secret_name};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::accounts::count_accounts;
use crate::builders::{
    BuildError, CHECKSUM_KEY, PodSettings, accounts_checksum, desired_pdb, desired_service,
    desired_statefulset, desired_token_secret, desired_tokens_entry, generate_token,
    selector_string,
};
use crate::crd::LingmaInstance;
use crate::login::LoginProbe;
use crate::metrics::Metrics;
use crate::status::{AccountsProblem, Observation, READY, ReplicaObservation, compute_status};
use events::{condition, events_for, pause_event};

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "lingma-operator";
/// Requeue while replicas are not ready or paused (login progress and the end of a pause are
/// not visible through watches).
const REQUEUE_NOT_READY: Duration = Duration::from_secs(15);
const REQUEUE_READY: Duration = Duration::from_secs(300);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name} exists and is not controlled by this LingmaInstance")]
    NotOwned { kind: String, name: String },
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
    if let Err(error) = &result {
        failure::report_failure(&instance, &ctx, error).await;
    }
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

    let (accounts, accounts_raw) = read_accounts(&secrets, instance).await?;
    let stored = stored_token_secret(&secrets, instance).await?;
    let token = stored.token.unwrap_or_else(generate_token);
    let checksum_key = stored.checksum_key.unwrap_or_else(generate_token);
    let checksum = accounts_checksum(&checksum_key, &accounts_raw);

    apply(
        &secrets,
        &desired_token_secret(instance, &token, &checksum_key)?,
    )
    .await?;
    let service = apply_owned(
        &Api::<Service>::namespaced(client.clone(), &namespace),
        &desired_service(instance)?,
        instance,
    )
    .await?;
    let service_uid = service.metadata.uid.unwrap_or_default();
    apply_tokens_entry(
        &secrets,
        &desired_tokens_entry(instance, &token, &service_uid)?,
        &name,
    )
    .await?;
    let statefulset = apply_owned(
        &Api::<StatefulSet>::namespaced(client.clone(), &namespace),
        &desired_statefulset(instance, &ctx.pod_settings, &checksum)?,
        instance,
    )
    .await?;
    apply_owned(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace),
        &desired_pdb(instance)?,
        instance,
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
    let mut events = events_for(instance, &status.conditions, status.accounts);
    events.extend(pause_event(instance, &status.instances));
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

async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: K::kind(&()).into_owned(),
        name,
        source,
    })
}

/// Applies `object` unless an object of that name exists that this instance does not control:
/// the operator never adopts or overwrites what it did not create (a LingmaInstance named like
/// an existing Service must not take it over, nor delete it with itself).
async fn apply_owned<K>(api: &Api<K>, object: &K, instance: &LingmaInstance) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    if let Some(existing) = api.get_opt(&name).await? {
        ensure_controlled(&existing, instance)?;
    }
    apply(api, object).await
}

/// Applies this instance's key of the shared tokens Secret under its own field manager. The
/// Secret must be the operator's (its managed-by label) or absent.
async fn apply_tokens_entry(
    secrets: &Api<Secret>,
    entry: &Secret,
    instance: &str,
) -> Result<Secret, Error> {
    let name = entry.metadata.name.clone().unwrap_or_default();
    if let Some(existing) = secrets.get_opt(&name).await?
        && existing.labels().get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY)
    {
        return Err(Error::NotOwned {
            kind: "Secret".to_owned(),
            name,
        });
    }
    secrets
        .patch(
            &name,
            &PatchParams::apply(&format!("{FIELD_MANAGER}-{instance}")).force(),
            &Patch::Apply(entry),
        )
        .await
        .map_err(|source| Error::Apply {
            kind: "Secret".to_owned(),
            name,
            source,
        })
}

/// Err(NotOwned) unless `object`'s controller owner reference is `instance`.
fn ensure_controlled<K>(object: &K, instance: &LingmaInstance) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let uid = instance.metadata.uid.as_deref();
    let controlled = object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid);
    if controlled {
        Ok(())
    } else {
        Err(Error::NotOwned {
            kind: K::kind(&()).into_owned(),
            name: object.meta().name.clone().unwrap_or_default(),
        })
    }
}

/// The account count (or what is wrong with the Secret) and the raw accounts value, for the
/// pod-template checksum (empty when there is none).
async fn read_accounts(
    secrets: &Api<Secret>,
    instance: &LingmaInstance,
) -> Result<(Result<usize, AccountsProblem>, Vec<u8>), kube::Error> {
    let reference = &instance.spec.accounts.secret_ref;
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok((Err(AccountsProblem::SecretMissing), Vec::new()));
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
        None => (Err(AccountsProblem::KeyMissing), Vec::new()),
        Some(raw) => {
            let count = count_accounts(&raw).map_err(|e| AccountsProblem::Invalid(e.to_string()));
            (count, raw)
        }
    })
}

/// What the token Secret already holds, so that re-applying never rotates it.
struct StoredTokenSecret {
    token: Option<String>,
    checksum_key: Option<String>,
}

/// Reads the token Secret. A Secret of that name the instance does not control is never read
/// nor overwritten.
async fn stored_token_secret(
    secrets: &Api<Secret>,
    instance: &LingmaInstance,
) -> Result<StoredTokenSecret, Error> {
    let secret = secrets
        .get_opt(&token_secret_name(&instance.name_any()))
        .await?;
    if let Some(secret) = &secret {
        ensure_controlled(secret, instance)?;
    }
    let data = secret.and_then(|s| s.data).unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|t| !t.trim().is_empty())
    };
    Ok(StoredTokenSecret {
        token: value(TOKEN_KEY),
        checksum_key: value(CHECKSUM_KEY),
    })
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
                    paused: None,
                },
                ip,
            ))
        })
        .collect();
    observed.sort_by_key(|(r, _)| r.ordinal);
    // Ready pods are asked too: a ready pod is logged in, but its account may be paused, which
    // its readiness does not show (the sidecar stays ready to keep its gateway connections).
    let asks = observed.iter().map(|(_, ip)| async move {
        match ip {
            Some(ip) => probe.login_status(*ip, token).await,
            None => None,
        }
    });
    let answers = futures::future::join_all(asks).await;
    observed
        .into_iter()
        .zip(answers)
        .map(|((mut r, _), answer)| {
            if let Some(answer) = answer {
                r.login = Some(answer.login);
                r.paused = answer.paused;
            }
            r
        })
        .collect()
}

mod events;
mod failure;

#[cfg(test)]
mod tests;
