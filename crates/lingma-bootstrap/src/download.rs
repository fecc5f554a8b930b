//! Streams a package to a file, with a size cap, an idle timeout and progress in the logs.

use std::path::Path;
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

/// Downloads `url` into `dest` (created or truncated). On error `dest` may hold a partial
/// body: the caller owns it and removes it.
pub(crate) async fn download_to_file(
    url: &str,
    dest: &Path,
    limits: &DownloadLimits,
) -> Result<Downloaded, BootstrapError> {
    let shown = redact_url(url);
    // reqwest is built without its gzip feature, so a `Content-Encoding: gzip` body (which the
    // marketplace sends at times) arrives as is and the package sniffing unwraps it.
    let client = reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .user_agent(concat!(
            "lingma-gateway-bootstrap/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|err| network(&shown, err))?;

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
