//! Where the sidecars are. Every source hands the pool the same thing: a watch channel of
//! the current endpoint list. The static list lives here; the Kubernetes EndpointSlice
//! source (crate `k8s-discovery`) produces the same receiver.

use mux_protocol::SidecarEndpoint;
use tokio::sync::watch;

/// A source of sidecar endpoints.
pub trait Discovery: Send + Sync + 'static {
    /// The current list, updated whenever the source sees a change.
    fn subscribe(&self) -> watch::Receiver<Vec<SidecarEndpoint>>;
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("GATEWAY_SIDECARS entry {0:?} is not a ws://, wss://, http:// or https:// URL")]
    BadUrl(String),
    #[error("GATEWAY_SIDECARS names sidecar {0:?} twice")]
    DuplicateName(String),
}

/// A fixed list (GATEWAY_SIDECARS), for one host and the local stack.
pub struct StaticDiscovery {
    tx: watch::Sender<Vec<SidecarEndpoint>>,
}

impl StaticDiscovery {
    pub fn new(endpoints: Vec<SidecarEndpoint>) -> Self {
        let (tx, _rx) = watch::channel(endpoints);
        Self { tx }
    }

    /// Parse `name=ws://host:port,ws://host:port` (a missing name becomes `host:port`;
    /// http(s) URLs are taken as ws(s)).
    pub fn parse(list: &str) -> Result<Self, DiscoveryError> {
        let mut endpoints: Vec<SidecarEndpoint> = Vec::new();
        for entry in crate::config::split_list(list) {
            let (name, url) = match entry.split_once('=') {
                Some((name, url)) if !name.contains("://") => {
                    (Some(name.trim().to_owned()), url.trim())
                }
                _ => (None, entry.as_str()),
            };
            let url = normalize_url(url).ok_or_else(|| DiscoveryError::BadUrl(entry.clone()))?;
            let name = name.unwrap_or_else(|| host_port(&url).to_owned());
            if endpoints.iter().any(|e| e.name == name) {
                return Err(DiscoveryError::DuplicateName(name));
            }
            endpoints.push(SidecarEndpoint {
                name,
                url,
                token: None,
            });
        }
        Ok(Self::new(endpoints))
    }
}

impl Discovery for StaticDiscovery {
    fn subscribe(&self) -> watch::Receiver<Vec<SidecarEndpoint>> {
        self.tx.subscribe()
    }
}

fn normalize_url(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{scheme}://{rest}"))
}

fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_and_bare_entries() {
        let d =
            StaticDiscovery::parse(" a=ws://127.0.0.1:1 , http://10.0.0.2:8318/ ").expect("valid");
        let list = d.subscribe().borrow().clone();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].name.as_str(), list[0].url.as_str()),
            ("a", "ws://127.0.0.1:1")
        );
        assert_eq!(
            (list[1].name.as_str(), list[1].url.as_str()),
            ("10.0.0.2:8318", "ws://10.0.0.2:8318")
        );
    }

    #[test]
    fn refuses_bad_entries() {
        assert!(matches!(
            StaticDiscovery::parse("ftp://x"),
            Err(DiscoveryError::BadUrl(_))
        ));
        assert!(matches!(
            StaticDiscovery::parse("a=ws://x:1,a=ws://y:1"),
            Err(DiscoveryError::DuplicateName(_))
        ));
        assert!(
            StaticDiscovery::parse("")
                .expect("empty ok")
                .subscribe()
                .borrow()
                .is_empty()
        );
    }
}
