//! Wiring: client, leader election, the controller, the HTTP endpoints.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_discovery::names::{LABEL_MANAGED_BY, MANAGED_BY};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;

use crate::builders::PodSettings;
use crate::config::RunConfig;
use crate::crd::LingmaInstance;
use crate::login::HttpLoginProbe;
use crate::metrics::Metrics;
use crate::reconcile::{Context, error_policy, reconcile};

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
    let mut leadership = None;
    if config.leader_election {
        let namespace = if config.lease_namespace.is_empty() {
            client.default_namespace().to_owned()
        } else {
            config.lease_namespace.clone()
        };
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
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
        leadership = Some((rx, task));
    }

    let (instances, statefulsets): (Api<LingmaInstance>, Api<StatefulSet>) =
        if config.watch_namespace.is_empty() {
            (Api::all(client.clone()), Api::all(client.clone()))
        } else {
            (
                Api::namespaced(client.clone(), &config.watch_namespace),
                Api::namespaced(client.clone(), &config.watch_namespace),
            )
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
        },
        Arc::new(HttpLoginProbe::new(Duration::from_secs(2))?),
    ));
    let controller = Controller::new(instances, watcher::Config::default().any_semantic())
        .owns(
            statefulsets,
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")),
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
