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

use crate::names::{SIDECAR_TOKENS_SECRET, TokenEntry};
use crate::slices::SliceSet;

/// Where to look for sidecars.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Namespace of the LingmaInstances (GATEWAY_K8S_NAMESPACE; empty = the client's default).
    pub namespace: String,
    /// Label selector of their EndpointSlices (GATEWAY_K8S_LABEL_SELECTOR).
    pub label_selector: String,
    /// How often to retry reading a token that could not be read.
    pub token_retry: Duration,
    /// How often the tokens Secret is read again even without a change of the slices, so a
    /// rotated token reaches the gateway without a restart.
    pub token_refresh: Duration,
}

impl DiscoveryConfig {
    pub fn new(namespace: impl Into<String>, label_selector: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            label_selector: label_selector.into(),
            token_retry: Duration::from_secs(5),
            token_refresh: Duration::from_secs(30),
        }
    }
}

/// Starts watching and returns the live sidecar set. The set holds ready addresses only, each
/// with its instance's token; an instance whose token cannot be read is left out (its
/// sidecars would refuse the gateway anyway) and retried. The task ends when every receiver
/// is dropped.
pub fn watch_sidecars(
    client: Client,
    config: DiscoveryConfig,
) -> (watch::Receiver<Vec<SidecarEndpoint>>, JoinHandle<()>) {
    let (rx, _synced, task) = watch_sidecars_synced(client, config);
    (rx, task)
}

/// [`watch_sidecars`] plus whether discovery has synced: `true` once the first complete list
/// of EndpointSlices was published (possibly empty), `false` again while the watch re-lists.
/// A gateway is ready when it serves and discovery has synced, whatever the number of sidecars.
pub fn watch_sidecars_synced(
    client: Client,
    config: DiscoveryConfig,
) -> (
    watch::Receiver<Vec<SidecarEndpoint>>,
    watch::Receiver<bool>,
    JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(Vec::new());
    let (synced_tx, synced_rx) = watch::channel(false);
    let task = tokio::spawn(run(client, config, tx, synced_tx));
    (rx, synced_rx, task)
}

async fn run(
    client: Client,
    config: DiscoveryConfig,
    tx: watch::Sender<Vec<SidecarEndpoint>>,
    synced: watch::Sender<bool>,
) {
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
    let mut refresh = tokio::time::interval(config.token_refresh);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.reset();
    // Before the first complete list, publishing would announce a partial set.
    let mut listed = false;
    loop {
        let retry = state.missing_tokens() && listed;
        let event = tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(config.token_retry), if retry => None,
            _ = refresh.tick(), if listed => {
                state.refresh();
                None
            }
            event = stream.next() => match event {
                Some(event) => Some(event),
                None => return,
            },
        };
        match event {
            None => {}
            Some(Ok(Event::Init)) => {
                listed = false;
                synced.send_replace(false);
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
            synced.send_if_modified(|s| !std::mem::replace(s, true));
        }
    }
}

#[derive(Default)]
struct DiscoveryState {
    slices: SliceSet,
    tokens: BTreeMap<String, TokenEntry>,
    /// Instances whose token must be (re)read: a changed slice may mean a re-created instance.
    stale: BTreeSet<String>,
}

impl DiscoveryState {
    fn apply(&mut self, slice: &EndpointSlice) {
        if let Some(instance) = self.slices.apply(slice) {
            self.stale.insert(instance);
        }
    }

    /// Marks every known token for a re-read (rotation).
    fn refresh(&mut self) {
        self.stale.extend(self.tokens.keys().cloned());
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
        let must_read = needed
            .iter()
            .any(|i| self.stale.contains(i) || !self.tokens.contains_key(i));
        if must_read {
            match read_tokens(secrets).await {
                Ok(mut entries) => {
                    for instance in &needed {
                        match entries.remove(instance) {
                            Some(entry) => {
                                self.tokens.insert(instance.clone(), entry);
                            }
                            None => {
                                tracing::warn!(%instance, "no sidecar token for the instance; left out");
                                self.tokens.remove(instance);
                            }
                        }
                    }
                    self.stale.clear();
                }
                // Tokens read before stay in use: a passing API error must not take every
                // sidecar out. They are re-read on the next change or refresh.
                Err(error) => {
                    tracing::warn!(%error, "reading the sidecar tokens failed; keeping the known ones");
                }
            }
        }
        self.tokens.retain(|instance, _| needed.contains(instance));
        ready
            .into_iter()
            .filter_map(|a| {
                let entry = self.tokens.get(&a.instance)?;
                // Only a slice of the instance's own Service gets the token.
                if a.service_uid.as_deref() != Some(entry.service_uid.as_str()) {
                    tracing::warn!(instance = %a.instance, endpoint = %a.name,
                        "EndpointSlice not owned by the instance's Service; not trusted");
                    return None;
                }
                Some(SidecarEndpoint {
                    name: a.name,
                    url: a.url,
                    token: Some(entry.token.clone()),
                })
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum TokenError {
    #[error("reading Secret {SIDECAR_TOKENS_SECRET}: {0}")]
    Api(kube::Error),
}

/// Every well-formed entry of the tokens Secret, by instance. A malformed entry is left out
/// (and said so) without its content.
async fn read_tokens(secrets: &Api<Secret>) -> Result<BTreeMap<String, TokenEntry>, TokenError> {
    let secret = secrets
        .get(SIDECAR_TOKENS_SECRET)
        .await
        .map_err(TokenError::Api)?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(
            |(instance, value)| match serde_json::from_slice::<TokenEntry>(&value.0) {
                Ok(entry) if !entry.token.trim().is_empty() => Some((instance, entry)),
                _ => {
                    tracing::warn!(%instance, "malformed sidecar token entry; left out");
                    None
                }
            },
        )
        .collect())
}
