//! The on-disk layout of installed binaries, their manifests, and the atomic switch.
//!
//! ```text
//! <work_dir>/bin/
//!   .lock                        flock held by the one bootstrap running on this work dir
//!   .tmp/                        downloads, staging dirs, replaced installs; emptied at each start
//!   current.json                 {"version": "...", "platform": "..."}: the active install
//!   <version>/<platform>/        Lingma, LingmaLocal, manifest.json
//! ```
//!
//! An install directory only appears by a rename of a complete staging directory (manifest
//! written last inside it), and `current.json` only changes by a rename too, after that.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::package::{FileDigest, LINGMA, LINGMA_LOCAL, digest_file};
use crate::{BootstrapError, Platform, SourceType};

pub(crate) const MANIFEST: &str = "manifest.json";
const CURRENT: &str = "current.json";
const MANIFEST_SCHEMA: u32 = 1;

/// What `manifest.json` records about one installed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    /// The version in the nested zip's name (`lingma-<version>.zip`).
    pub version: String,
    pub platform: Platform,
    pub lingma: FileRecord,
    pub lingma_local: FileRecord,
    pub source: SourceRecord,
    /// sha256 of the downloaded body, as received (before any gunzip).
    pub package_sha256: String,
    pub package_bytes: u64,
    /// Seconds since the Unix epoch.
    pub installed_at_unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub sha256: String,
    pub size: u64,
}

/// Where an install came from. The URL is redacted (no query, no user info); it is also the
/// cache key: a cached install serves a config whose download URL redacts to the same string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    #[serde(rename = "type")]
    pub kind: SourceType,
    pub url: String,
}

/// `current.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ActiveVersion {
    version: String,
    platform: Platform,
}

impl From<&FileDigest> for FileRecord {
    fn from(digest: &FileDigest) -> Self {
        Self {
            sha256: digest.sha256.clone(),
            size: digest.size,
        }
    }
}

/// Paths under `<work_dir>/bin`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    bin: PathBuf,
}

impl Layout {
    pub fn new(work_dir: &Path) -> Self {
        Self {
            bin: work_dir.join("bin"),
        }
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.bin.join(".tmp")
    }

    pub fn install_dir(&self, version: &str, platform: Platform) -> PathBuf {
        self.bin.join(version).join(platform.dir_name())
    }

    fn current_path(&self) -> PathBuf {
        self.bin.join(CURRENT)
    }
}

/// Held while one bootstrap works on a work dir; dropping it releases the flock.
pub(crate) struct WorkDirLock {
    _file: File,
}

/// Creates the layout, takes the lock (waiting for another bootstrap on the same work dir)
/// and empties `.tmp`, which only a crashed or killed earlier run can have left non-empty.
pub(crate) fn lock_and_clean(layout: &Layout) -> Result<WorkDirLock, BootstrapError> {
    fs::create_dir_all(&layout.bin)
        .map_err(|err| BootstrapError::io("creating", &layout.bin, err))?;
    let lock_path = layout.bin.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|err| BootstrapError::io("opening", &lock_path, err))?;
    file.lock()
        .map_err(|err| BootstrapError::io("locking", &lock_path, err))?;
    let tmp = layout.tmp_dir();
    let leftovers = fs::read_dir(&tmp)
        .map(|entries| entries.count())
        .unwrap_or(0);
    match fs::remove_dir_all(&tmp) {
        Ok(()) if leftovers > 0 => {
            tracing::info!(dir = %tmp.display(), leftovers, "removed leftovers of an interrupted bootstrap");
        }
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(BootstrapError::io("cleaning", &tmp, err)),
    }
    fs::create_dir_all(&tmp).map_err(|err| BootstrapError::io("creating", &tmp, err))?;
    Ok(WorkDirLock { _file: file })
}

/// The active install, checked against its manifest (files present, executable, same sha256).
///
/// `Ok(None)`: nothing installed for `platform`. `Err(BadManifest)`: the marker, the manifest
/// or the files do not agree; the caller reinstalls.
pub(crate) fn read_active(
    layout: &Layout,
    platform: Platform,
) -> Result<Option<(PathBuf, Manifest)>, BootstrapError> {
    let current_path = layout.current_path();
    let text = match fs::read(&current_path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(BootstrapError::io("reading", &current_path, err)),
    };
    let active: ActiveVersion =
        serde_json::from_slice(&text).map_err(|err| bad(&current_path, err.to_string()))?;
    if active.platform != platform {
        return Ok(None);
    }
    let dir = layout.install_dir(&active.version, platform);
    let manifest = read_manifest(&dir.join(MANIFEST))?;
    if manifest.version != active.version || manifest.platform != platform {
        return Err(bad(
            &dir.join(MANIFEST),
            format!(
                "names {} {}, current.json names {} {}",
                manifest.version, manifest.platform, active.version, platform
            ),
        ));
    }
    check_file(&dir.join(LINGMA), &manifest.lingma)?;
    check_file(&dir.join(LINGMA_LOCAL), &manifest.lingma_local)?;
    Ok(Some((dir, manifest)))
}

fn read_manifest(path: &Path) -> Result<Manifest, BootstrapError> {
    let text = fs::read(path).map_err(|err| bad(path, format!("unreadable: {err}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|err| bad(path, err.to_string()))?;
    if manifest.schema != MANIFEST_SCHEMA {
        return Err(bad(path, format!("unknown schema {}", manifest.schema)));
    }
    Ok(manifest)
}

fn check_file(path: &Path, expected: &FileRecord) -> Result<(), BootstrapError> {
    let meta =
        fs::metadata(path).map_err(|err| bad(path, format!("installed file unusable: {err}")))?;
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(bad(path, "installed file is not executable".to_owned()));
    }
    if meta.len() != expected.size {
        return Err(bad(
            path,
            format!(
                "size {} differs from the manifest's {}",
                meta.len(),
                expected.size
            ),
        ));
    }
    let digest = digest_file(path)?;
    if digest.sha256 != expected.sha256 {
        return Err(bad(path, "sha256 differs from the manifest".to_owned()));
    }
    Ok(())
}

fn bad(path: &Path, reason: String) -> BootstrapError {
    BootstrapError::BadManifest {
        path: path.to_path_buf(),
        reason,
    }
}

/// Moves a complete staging directory into place and makes it the active install.
///
/// An existing directory of the same version is moved into `.tmp` first (so the swap is two
/// renames; if the second fails the first is undone). Returns the install directory.
pub(crate) fn install_staged(
    layout: &Layout,
    stage_dir: &Path,
    manifest: &Manifest,
) -> Result<PathBuf, BootstrapError> {
    write_json_synced(&stage_dir.join(MANIFEST), manifest)?;
    sync_dir(stage_dir);

    let target = layout.install_dir(&manifest.version, manifest.platform);
    let parent = target.parent().unwrap_or(&layout.bin);
    fs::create_dir_all(parent).map_err(|err| BootstrapError::io("creating", parent, err))?;
    let replaced = layout
        .tmp_dir()
        .join(format!("replaced-{}", uuid::Uuid::new_v4()));
    let had_old = match fs::rename(&target, &replaced) {
        Ok(()) => true,
        Err(err) if err.kind() == io::ErrorKind::NotFound => false,
        Err(err) => return Err(BootstrapError::io("moving aside", &target, err)),
    };
    if let Err(err) = fs::rename(stage_dir, &target) {
        if had_old && let Err(undo) = fs::rename(&replaced, &target) {
            tracing::error!(dir = %target.display(), error = %undo, "could not restore the previous install");
        }
        return Err(BootstrapError::io("moving into place", &target, err));
    }
    sync_dir(parent);
    activate(layout, &manifest.version, manifest.platform)?;
    if had_old && let Err(err) = fs::remove_dir_all(&replaced) {
        tracing::warn!(dir = %replaced.display(), error = %err, "could not remove the replaced install; the next start will");
    }
    Ok(target)
}

/// Points `current.json` at an installed version (write to `.tmp`, then rename over).
pub(crate) fn activate(
    layout: &Layout,
    version: &str,
    platform: Platform,
) -> Result<(), BootstrapError> {
    let staged = layout
        .tmp_dir()
        .join(format!("current-{}.json", uuid::Uuid::new_v4()));
    write_json_synced(
        &staged,
        &ActiveVersion {
            version: version.to_owned(),
            platform,
        },
    )?;
    let current = layout.current_path();
    fs::rename(&staged, &current).map_err(|err| BootstrapError::io("replacing", &current, err))?;
    sync_dir(&layout.bin);
    Ok(())
}

fn write_json_synced(path: &Path, value: &impl Serialize) -> Result<(), BootstrapError> {
    let text = serde_json::to_vec_pretty(value).map_err(|err| bad(path, err.to_string()))?;
    let mut file = File::create(path).map_err(|err| BootstrapError::io("creating", path, err))?;
    file.write_all(&text)
        .map_err(|err| BootstrapError::io("writing", path, err))?;
    file.sync_all()
        .map_err(|err| BootstrapError::io("syncing", path, err))
}

/// Makes a rename durable; failure only weakens crash safety, so it is logged, not returned.
fn sync_dir(dir: &Path) {
    if let Err(err) = File::open(dir).and_then(|dir| dir.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %err, "directory fsync failed");
    }
}
