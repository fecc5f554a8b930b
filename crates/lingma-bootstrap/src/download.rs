//! Streams a package to a file, with a size cap, an idle timeout and progress in the logs.
//! Over https only: a redirect to plain http is refused (and an https->http downgrade even
//! with the loopback test opt-out), and an extra CA can be trusted for a private mirror.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::BootstrapError;
use crate::error::{error_chain, redact_url};

/// A package fully written to disk.
#[derive(Debug)]
pub(crate) struct Downloaded {
    pub bytes: u64,
    pub sha256: String,
}

pub(crate) struct DownloadLimits {
    pub max_bytes: u64,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub progress_step_bytes: u64,
}

/// Which servers a download may reach.
pub(crate) struct DownloadTrust {
    /// Plain http on loopback hosts (LINGMA_DOWNLOAD_ALLOW_HTTP_LOOPBACK, tests only).
    pub allow_http_loopback: bool,
    /// Extra CA certificates, PEM (LINGMA_DOWNLOAD_CA_FILE).
    pub ca_file: Option<PathBuf>,
}

/// Redirects followed at most (reqwest's default limit).
const MAX_REDIRECTS: usize = 10;

/// Why a redirect was not followed; found again in reqwest's error chain.
#[derive(Debug)]
struct RedirectRefused {
    from: String,
    to: String,
    too_many: bool,
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.too_many {
            write!(f, "more than {MAX_REDIRECTS} redirects")
        } else {
            write!(f, "redirect from {} to {} refused", self.from, self.to)
        }
    }
}

impl std::error::Error for RedirectRefused {}

/// Whether a redirect from the chain `previous` to `next` may be followed: `next` must be
/// acceptable on its own (https, or loopback http with the opt-out), and once any hop was
/// https, every later hop must be https too.
pub(crate) fn redirect_allowed(
    previous: &[reqwest::Url],
    next: &reqwest::Url,
    allow_http_loopback: bool,
) -> bool {
    let downgrade = next.scheme() != "https" && previous.iter().any(|u| u.scheme() == "https");
    !downgrade && crate::config::is_acceptable(next, allow_http_loopback)
}

fn redirect_policy(allow_http_loopback: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let refusal = |too_many| RedirectRefused {
            from: attempt
                .previous()
                .last()
                .map_or_else(String::new, |u| redact_url(u.as_str())),
            to: redact_url(attempt.url().as_str()),
            too_many,
        };
        if attempt.previous().len() > MAX_REDIRECTS {
            let refused = refusal(true);
            return attempt.error(refused);
        }
        if redirect_allowed(attempt.previous(), attempt.url(), allow_http_loopback) {
            attempt.follow()
        } else {
            let refused = refusal(false);
            attempt.error(refused)
        }
    })
}

fn client(
    shown: &str,
    limits: &DownloadLimits,
    trust: &DownloadTrust,
) -> Result<reqwest::Client, BootstrapError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .redirect(redirect_policy(trust.allow_http_loopback))
        .user_agent(concat!(
            "lingma-gateway-bootstrap/",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(path) = &trust.ca_file {
        let pem = std::fs::read(path).map_err(|err| {
            BootstrapError::Config(format!(
                "cannot read LINGMA_DOWNLOAD_CA_FILE {}: {}",
                path.display(),
                err.kind()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
            BootstrapError::Config(format!(
                "LINGMA_DOWNLOAD_CA_FILE {} holds no PEM certificate",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(BootstrapError::Config(format!(
                "LINGMA_DOWNLOAD_CA_FILE {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|err| network(shown, err))
}

/// Downloads `url` into `dest` (created or truncated). On error `dest` may hold a partial
/// body: the caller owns it and removes it.
pub(crate) async fn download_to_file(
    url: &str,
    dest: &Path,
    limits: &DownloadLimits,
    trust: &DownloadTrust,
) -> Result<Downloaded, BootstrapError> {
    let shown = redact_url(url);
    // reqwest is built without its gzip feature, so a `Content-Encoding: gzip` body (which the
    // marketplace sends at times) arrives as is and the package sniffing unwraps it.
    let client = client(&shown, limits, trust)?;

    let response = tokio::time::timeout(limits.idle_timeout, client.get(url).send())
        .await
        .map_err(|_| stalled(&shown, limits.idle_timeout))?
        .map_err(|err| network(&shown, err))?;
    let status = response.status();
    if !status.is_success() {
        return Err(BootstrapError::HttpStatus {
            url: shown,
            status: status.as_u16(),
        });
    }
    let expected = response.content_length();
    if let Some(len) = expected
        && len > limits.max_bytes
    {
        return Err(BootstrapError::TooLarge {
            what: format!("the package at {shown} ({len} bytes announced)"),
            limit: limits.max_bytes,
        });
    }
    tracing::info!(url = %shown, bytes = ?expected, "downloading Lingma package");

    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|err| BootstrapError::io("creating", dest, err))?;
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut next_progress = limits.progress_step_bytes.max(1);
    let mut response = response;
    loop {
        let chunk = tokio::time::timeout(limits.idle_timeout, response.chunk())
            .await
            .map_err(|_| stalled(&shown, limits.idle_timeout))?;
        let chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => {
                return Err(match expected {
                    Some(expected) if received < expected => BootstrapError::Truncated {
                        url: shown,
                        received,
                        expected,
                    },
                    _ => network(&shown, err),
                });
            }
        };
        received += chunk.len() as u64;
        if received > limits.max_bytes {
            return Err(BootstrapError::TooLarge {
                what: format!("the package at {shown}"),
                limit: limits.max_bytes,
            });
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|err| BootstrapError::io("writing", dest, err))?;
        if received >= next_progress {
            tracing::info!(url = %shown, received_mb = received / (1024 * 1024), total_bytes = ?expected, "download progress");
            next_progress = received + limits.progress_step_bytes.max(1);
        }
    }
    if let Some(expected) = expected
        && received != expected
    {
        return Err(BootstrapError::Truncated {
            url: shown,
            received,
            expected,
        });
    }
    file.flush()
        .await
        .map_err(|err| BootstrapError::io("writing", dest, err))?;
    file.sync_all()
        .await
        .map_err(|err| BootstrapError::io("syncing", dest, err))?;
    tracing::info!(url = %shown, bytes = received, "download complete");
    Ok(Downloaded {
        bytes: received,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn network(shown: &str, err: reqwest::Error) -> BootstrapError {
    if let Some(refused) = find_source::<RedirectRefused>(&err) {
        return if refused.too_many {
            BootstrapError::Network {
                url: shown.to_owned(),
                detail: refused.to_string(),
            }
        } else {
            BootstrapError::InsecureRedirect {
                url: shown.to_owned(),
                from: refused.from.clone(),
                to: refused.to.clone(),
            }
        };
    }
    // reqwest's Display includes the full URL; strip it so a pre-signed query never leaks.
    let err = err.without_url();
    BootstrapError::Network {
        url: shown.to_owned(),
        detail: error_chain(&err),
    }
}

fn stalled(shown: &str, idle: Duration) -> BootstrapError {
    BootstrapError::Stalled {
        url: shown.to_owned(),
        idle_secs: idle.as_secs(),
    }
}

/// The first error of type `E` in `err`'s source chain.
fn find_source<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<reqwest::Url> {
        list.iter()
            .map(|u| reqwest::Url::parse(u).expect("url"))
            .collect()
    }

    #[test]
    fn a_downgrade_is_never_followed() {
        let next = |u: &str| reqwest::Url::parse(u).expect("url");
        let from_https = urls(&["https://marketplace.example/p"]);
        assert!(redirect_allowed(
            &from_https,
            &next("https://cdn.example/p"),
            false
        ));
        assert!(!redirect_allowed(
            &from_https,
            &next("http://cdn.example/p"),
            false
        ));
        // Not even to loopback with the test opt-out: a downgrade is a downgrade.
        assert!(!redirect_allowed(
            &from_https,
            &next("http://127.0.0.1:8/p"),
            true
        ));
        let chain = urls(&["http://127.0.0.1:8/a", "https://127.0.0.1:9/b"]);
        assert!(!redirect_allowed(
            &chain,
            &next("http://127.0.0.1:8/c"),
            true
        ));
        let plain = urls(&["http://127.0.0.1:8/a"]);
        assert!(redirect_allowed(
            &plain,
            &next("http://127.0.0.1:8/c"),
            true
        ));
        assert!(redirect_allowed(
            &plain,
            &next("https://cdn.example/c"),
            true
        ));
        assert!(!redirect_allowed(
            &plain,
            &next("http://cdn.example/c"),
            true
        ));
        assert!(!redirect_allowed(&plain, &next("file:///etc/passwd"), true));
    }
}
