//! The one error type of the bootstrap, and the helpers that build it.

use std::io;
use std::path::{Path, PathBuf};

/// Why the Lingma binary could not be made available.
///
/// Every variant that names a URL names it without its query string or user info: a VSIX URL
/// may be a pre-signed link whose query is a credential.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The configuration cannot work (missing URL, unknown platform, ...).
    #[error("bad bootstrap configuration: {0}")]
    Config(String),

    /// The server answered, but not with 2xx.
    #[error("download of {url} failed: HTTP {status}")]
    HttpStatus { url: String, status: u16 },

    /// Connecting, TLS, or reading the body failed (includes a body cut short by the server).
    #[error("download of {url} failed: {detail}")]
    Network { url: String, detail: String },

    /// A redirect led away from https (or to plain http off loopback); it was not followed.
    #[error(
        "download of {url} refused: redirected from {from} to {to}, which is not https (an https->http downgrade is never followed)"
    )]
    InsecureRedirect {
        url: String,
        from: String,
        to: String,
    },

    /// The package's sha256 is not the pinned one (LINGMA_DOWNLOAD_SHA256).
    #[error(
        "the package at {url} has sha256 {actual}, not the pinned LINGMA_DOWNLOAD_SHA256 {expected}; nothing was installed"
    )]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },

    /// No byte arrived for `idle_secs` seconds.
    #[error("download of {url} stalled: nothing received for {idle_secs} s")]
    Stalled { url: String, idle_secs: u64 },

    /// The body ended before the length the server announced.
    #[error("download of {url} is truncated: got {received} of {expected} bytes")]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
    },

    /// The package (or something unpacked from it) is larger than the configured cap.
    #[error("{what} is larger than the limit of {limit} bytes (LINGMA_DOWNLOAD_MAX_BYTES)")]
    TooLarge { what: String, limit: u64 },

    /// The downloaded body is neither a zip nor a gzip-wrapped zip.
    #[error("{what} is not a zip archive: {detail}")]
    NotAZip { what: String, detail: String },

    /// The package is a zip, but not laid out like the Lingma extension.
    #[error("the package has no Lingma binaries where expected: {detail}")]
    PackageLayout { detail: String },

    /// The package holds Lingma binaries, but not for this platform.
    #[error(
        "the package has no Lingma binary for {platform}; platforms in the package: {}",
        if found.is_empty() { "none".to_owned() } else { found.join(", ") }
    )]
    PlatformMissing {
        platform: String,
        found: Vec<String>,
    },

    /// The disk (or quota) is full.
    #[error("no space left on the device while writing {}", path.display())]
    DiskFull { path: PathBuf },

    /// Any other file-system failure.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A manifest or the active-version marker cannot be read.
    #[error("bad manifest {}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },

    /// An explicitly given binary (image source or LINGMA_BIN) is missing or not executable.
    #[error("Lingma binary {}: {reason}", path.display())]
    BinaryUnusable { path: PathBuf, reason: String },
}

impl BootstrapError {
    /// Maps an I/O error on `path`, telling a full disk apart from the rest.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        if is_disk_full(&source) {
            return Self::DiskFull {
                path: path.to_path_buf(),
            };
        }
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    // ENOSPC = 28, EDQUOT = 122 on Linux; the kinds cover other platforms.
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28) | Some(122))
}

/// A URL as it may appear in logs, errors and manifests: no user info, no query, no fragment.
pub fn redact_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// The error and its causes on one line (reqwest hides the useful part in the source chain).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_from_urls() {
        let shown = redact_url("https://user:secret@example.com/a/b.vsix?sig=abc&se=1#frag");
        assert_eq!(shown, "https://example.com/a/b.vsix");
    }

    #[test]
    fn enospc_is_disk_full() {
        let err = BootstrapError::io("writing", Path::new("/x"), io::Error::from_raw_os_error(28));
        assert!(matches!(err, BootstrapError::DiskFull { .. }), "{err}");
        let err = BootstrapError::io("writing", Path::new("/x"), io::Error::from_raw_os_error(13));
        assert!(matches!(err, BootstrapError::Io { .. }), "{err}");
    }

    #[test]
    fn platform_error_lists_found_platforms() {
        let err = BootstrapError::PlatformMissing {
            platform: "aarch64_linux".into(),
            found: vec!["x86_64_darwin".into(), "x86_64_linux".into()],
        };
        assert_eq!(
            err.to_string(),
            "the package has no Lingma binary for aarch64_linux; platforms in the package: x86_64_darwin, x86_64_linux"
        );
    }
}
