//! A binary that is already there (baked into the image, or named by LINGMA_BIN).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::package::{LINGMA_LOCAL, digest_file};
use crate::{BootstrapError, InstalledBinary, Origin};

/// Checks that `path` is an executable regular file; nothing is downloaded or written.
/// `LingmaLocal` is reported when it sits beside it (a simulator needs none).
pub(crate) fn verify_existing(
    path: &Path,
    origin: Origin,
) -> Result<InstalledBinary, BootstrapError> {
    let unusable = |reason: String| BootstrapError::BinaryUnusable {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|err| unusable(err.to_string()))?;
    if !meta.is_file() {
        return Err(unusable("not a regular file".to_owned()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(unusable("not executable (no exec bit)".to_owned()));
    }
    let digest = digest_file(path)?;
    let local = path.with_file_name(LINGMA_LOCAL);
    let (lingma_local, lingma_local_sha256) = if local.is_file() {
        (Some(local.clone()), Some(digest_file(&local)?.sha256))
    } else {
        tracing::info!(path = %local.display(), "no LingmaLocal beside the binary");
        (None, None)
    };
    tracing::info!(path = %path.display(), sha256 = %digest.sha256, ?origin, "using an existing Lingma binary");
    Ok(InstalledBinary {
        lingma: path.to_path_buf(),
        lingma_local,
        version: None,
        sha256: digest.sha256,
        lingma_local_sha256,
        origin,
    })
}
