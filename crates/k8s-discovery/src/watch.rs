//! The loop that turns an EndpointSlice watch into the gateway's sidecar set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use mux_protocol::SidecarEndpoint;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::names::{TOKEN_KEY, token_secret_name};
use crate::slices::SliceSet;

/// Where to look for sidecars.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Namespace of the LingmaInstances (GATEWAY_K8S_NAMESPACE; empty = the client's default).
    pub namespace: String,
    /// Label selector of their EndpointSlices (GATEWAY_K8S_LABEL_SELECTOR).
    pub label_selector: String,
    /// How often to retry reading a token Secret that could not be read.
    pub token_retry: Duration,
}

impl DiscoveryConfig {
    pub fn new(namespace: impl Into<String>, label_selector: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            label_selector: label_selector.into(),
            token_retry: Duration::from_secs(5),
        }
    }
}

/// Starts watching and returns the live sidecar set. The set holds ready addresses only, each
/// with its instance's token; an instance whose token Secret cannot be read is left out (its
/// sidecars would refuse the gateway anyway) and retried. The task ends when every receiver
/// is dropped.
pub fn watch_sidecars(
    client: Client,
    config: DiscoveryConfig,
) -> (watch::Receiver<Vec<SidecarEndpoint>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Vec::new());
    let task = tokio::spawn(run(client, config, tx));
    (rx, task)
}

async fn run(client: Client, config: DiscoveryConfig, tx: watch::Sender<Vec<SidecarEndpoint>>) {
    let (slices_api, secrets): (Api<EndpointSlice>, Api<Secret>) = if config.namespace.is_empty() {
        (
            Api::default_namespaced(client.clone()),
            Api::default_namespaced(client),
        )
    } else {
        (
            Api::namespaced(client.clone(), &config.namespace),
            Api::namespaced(client, &config.namespace),
        )
    };
    let stream = watcher::watcher(
        slices_api,
        watcher::Config::default().labels(&config.label_selector),
    )
    .default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut state = DiscoveryState::default();
    // Before the first complete list, publishing would announce a partial set.
    let mut listed = false;
    loop {
        let retry = state.missing_tokens() && listed;
        let event = tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(config.token_retry), if retry => None,
            event = stream.next() => match event {
                Some(event) => Some(event),
                None => return,
            },
        };
        match event {
            None => {}
            Some(Ok(Event::Init)) => {
                listed = false;
                state.slices.clear();
            }
            Some(Ok(Event::InitApply(slice))) => state.apply(&slice),
            Some(Ok(Event::InitDone)) => listed = true,
            Some(Ok(Event::Apply(slice))) => state.apply(&slice),
            Some(Ok(Event::Delete(slice))) => state.slices.delete(&slice),
            Some(Err(error)) => {
                tracing::warn!(%error, "EndpointSlice watch failed; retrying with backoff");
                continue;
            }
        }
        if listed {
            let endpoints = state.endpoints(&secrets).await;
            tx.send_if_modified(|current| {
                if *current == endpoints {
                    return false;
                }
                tracing::info!(sidecars = endpoints.len(), "sidecar set changed");
                *current = endpoints;
                true
            });
        }
    }
}

#[derive(Default)]
struct DiscoveryState {
    slices: SliceSet,
    tokens: BTreeMap<String, String>,
    /// Instances whose token must be (re)read: a changed slice may mean a re-created instance.
    stale: BTreeSet<String>,
}

impl DiscoveryState {
    fn apply(&mut self, slice: &EndpointSlice) {
        if let Some(instance) = self.slices.apply(slice) {
            self.stale.insert(instance);
        }
    }

    fn missing_tokens(&self) -> bool {
        self.slices
            .ready()
            .iter()
            .any(|a| !self.tokens.contains_key(&a.instance))
    }

    async fn endpoints(&mut self, secrets: &Api<Secret>) -> Vec<SidecarEndpoint> {
        let ready = self.slices.ready();
        let needed: BTreeSet<String> = ready.iter().map(|a| a.instance.clone()).collect();
        for instance in &needed {
            if self.stale.contains(instance) || !self.tokens.contains_key(instance) {
                match read_token(secrets, instance).await {
                    Ok(token) => {
                        self.tokens.insert(instance.clone(), token);
                        self.stale.remove(instance);
                    }
                    // A token read before stays in use: a passing API error must not take
                    // every sidecar of the instance out. It is re-read on the next change.
                    Err(error) if self.tokens.contains_key(instance) => {
                        tracing::warn!(%instance, %error, "re-reading sidecar token failed; keeping the known one");
                    }
                    Err(error) => {
                        tracing::warn!(%instance, %error, "sidecar token unavailable; instance left out");
                    }
                }
            }
        }
        self.tokens.retain(|instance, _| needed.contains(instance));
        ready
            .into_iter()
            .filter_map(|a| {
                let token = self.tokens.get(&a.instance)?.clone();
                Some(SidecarEndpoint {
                    name: a.name,
                    url: a.url,
                    token: Some(token),
                })
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum TokenError {
    #[error("reading Secret {0}: {1}")]
    Api(String, kube::Error),
    #[error("Secret {0} has no non-empty key `token`")]
    Missing(String),
}

async fn read_token(secrets: &Api<Secret>, instance: &str) -> Result<String, TokenError> {
    let name = token_secret_name(instance);
    let secret = secrets
        .get(&name)
        .await
        .map_err(|e| TokenError::Api(name.clone(), e))?;
    let token = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    token.ok_or(TokenError::Missing(name))
}
