//! Wiring: client, leader election, the controller, the HTTP endpoints.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_discovery::names::{LABEL_MANAGED_BY, MANAGED_BY};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;

use crate::builders::PodSettings;
use crate::config::RunConfig;
use crate::crd::LingmaInstance;
use crate::login::HttpLoginProbe;
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};

/// The namespace the operator watches (empty = all).
struct Scope {
    client: Client,
    namespace: String,
}

impl Scope {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        if self.namespace.is_empty() {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), &self.namespace)
        }
    }
}

/// The instances a Secret change concerns: the one controlling it (its token Secret) and every
/// instance whose accounts come from it.
pub fn instances_of_secret(
    instances: &Store<LingmaInstance>,
    secret: &Secret,
) -> Vec<ObjectRef<LingmaInstance>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    let owner = secret
        .owner_references()
        .iter()
        .filter(|o| o.controller == Some(true) && o.kind == "LingmaInstance")
        .map(|o| {
            let reference = ObjectRef::new(&o.name);
            match &namespace {
                Some(ns) => reference.within(ns),
                None => reference,
            }
        });
    let readers = instances
        .state()
        .into_iter()
        .filter(|i| i.namespace() == namespace && i.spec.accounts.secret_ref.name == name)
        .map(|i| ObjectRef::from_obj(i.as_ref()));
    owner.chain(readers).collect()
}

/// Wait until this replica holds the leader-election Lease; the receiver turns false when it
/// loses it.
async fn lead(
    client: &Client,
    config: &RunConfig,
    identity: &str,
) -> anyhow::Result<(tokio::sync::watch::Receiver<bool>, impl Sized + use<>)> {
    let namespace = if config.lease_namespace.is_empty() {
        client.default_namespace().to_owned()
    } else {
        config.lease_namespace.clone()
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .context("creating the leader-election Lease")?;
    let (mut rx, task) = manager.watch().await;
    tracing::info!(lease = %config.lease_name, %namespace, %identity, "waiting for leadership");
    rx.wait_for(|leader| *leader)
        .await
        .context("leader election stopped")?;
    tracing::info!("leading");
    Ok((rx, task))
}

pub async fn run(config: RunConfig) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let metrics = Metrics::new()?;
    let http = tokio::spawn(crate::http::serve(config.http_addr, metrics.clone()));
    let identity = if config.pod_name.is_empty() {
        format!("lingma-operator-{}", std::process::id())
    } else {
        config.pod_name.clone()
    };

    // Keep the receiver alive for as long as we lead: dropping it releases the Lease.
    let leadership = if config.leader_election {
        Some(lead(&client, &config, &identity).await?)
    } else {
        None
    };

    let scope = Scope {
        client: client.clone(),
        namespace: config.watch_namespace.clone(),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "lingma-operator".to_owned(),
            instance: Some(identity),
        },
    );
    let ctx = Arc::new(Context::new(
        client,
        recorder,
        metrics,
        PodSettings {
            default_image: config.lingma_pod_image.clone(),
            account_selector_image: config.account_selector_image.clone(),
        },
        Arc::new(HttpLoginProbe::new(Duration::from_secs(2))?),
    ));
    let ours = || watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let controller = Controller::new(
        scope.api::<LingmaInstance>(),
        watcher::Config::default().any_semantic(),
    );
    let instances = controller.store();
    let controller = controller
        .owns(scope.api::<StatefulSet>(), ours())
        .owns(scope.api::<Service>(), ours())
        .owns(scope.api::<PodDisruptionBudget>(), ours())
        // Every Secret, not only ours: the accounts Secret is the user's.
        .watches(
            scope.api::<Secret>(),
            watcher::Config::default(),
            move |secret| instances_of_secret(&instances, &secret),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile outcome");
            }
        });

    match leadership {
        Some((mut rx, _task)) => {
            tokio::select! {
                _ = controller => Ok(()),
                // Losing the Lease ends the process, as controller-runtime does: a restart
                // is the simplest way to be sure no stale reconcile keeps writing.
                _ = rx.wait_for(|leader| !*leader) => anyhow::bail!("lost leadership"),
                result = http => anyhow::bail!("HTTP server stopped: {result:?}"),
            }
        }
        None => {
            tokio::select! {
                _ = controller => Ok(()),
                result = http => anyhow::bail!("HTTP server stopped: {result:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;

    fn instance(name: &str, namespace: &str, accounts: &str) -> LingmaInstance {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lingma.io/v1alpha1", "kind": "LingmaInstance",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
            "spec": {"accounts": {"secretRef": {"name": accounts}}},
        }))
        .expect("valid LingmaInstance")
    }

    #[test]
    fn a_secret_change_wakes_its_owner_and_the_instances_reading_it() {
        let (store, mut writer) = reflector::store::<LingmaInstance>();
        for i in [
            instance("a", "lingma", "shared"),
            instance("b", "lingma", "shared"),
            instance("c", "lingma", "other"),
            instance("d", "elsewhere", "shared"),
        ] {
            writer.apply_watcher_event(&Event::Apply(i));
        }
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shared", "namespace": "lingma"}
        }))
        .expect("secret");
        let mut names: Vec<String> = instances_of_secret(&store, &secret)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);

        let token: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c-sidecar-token", "namespace": "lingma", "ownerReferences": [
                {"apiVersion": "lingma.io/v1alpha1", "kind": "LingmaInstance", "name": "c",
                 "uid": "uid-c", "controller": true}]}
        }))
        .expect("secret");
        let woken = instances_of_secret(&store, &token);
        assert_eq!(woken.len(), 1);
        assert_eq!(
            (woken[0].name.as_str(), woken[0].namespace.as_deref()),
            ("c", Some("lingma"))
        );
    }
}
