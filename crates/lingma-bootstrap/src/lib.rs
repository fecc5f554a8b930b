//! Makes the Lingma binary available: from the container image, or downloaded from the VS Code
//! marketplace or a VSIX URL and installed under `<work_dir>/bin/<version>/<platform>/`.
//!
//! One entry point, [`ensure_binary`]; the settings are [`BootstrapConfig`] (a `clap::Args` the
//! sidecar flattens). The cache rules and the on-disk layout are in `docs/bootstrap.md`.

mod config;
mod download;
mod error;
mod explicit;
mod install;
mod package;
mod platform;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use config::{
    BootstrapArgs, BootstrapConfig, DEFAULT_CONNECT_TIMEOUT_SEC, DEFAULT_EXTENSION,
    DEFAULT_IDLE_TIMEOUT_SEC, DEFAULT_IMAGE_BIN, DEFAULT_LINGMA_VERSION, DEFAULT_MARKETPLACE_URL,
    DEFAULT_MAX_BYTES, DEFAULT_PROGRESS_STEP_BYTES, DEFAULT_PUBLISHER, DEFAULT_WORK_DIR,
    PlatformChoice, SourceType,
};
pub use error::{BootstrapError, redact_url};
pub use install::{FileRecord, Manifest, SourceRecord};
pub use platform::Platform;

use download::{DownloadLimits, DownloadTrust, download_to_file};
use install::{Layout, WorkDirLock};
use package::{LINGMA, LINGMA_LOCAL};

/// How [`ensure_binary`] obtained the binary it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `LINGMA_BIN` named it; nothing was downloaded.
    ExplicitPath,
    /// The `image` source, at [`DEFAULT_IMAGE_BIN`]; nothing was downloaded.
    Image,
    /// The installed version was reused without contacting the source.
    Cached,
    /// `bootstrap_always`: the source was downloaded and matched the installed version.
    Unchanged,
    /// Downloaded and installed now.
    Downloaded,
    /// `bootstrap_always`: checking the source failed; the installed version was kept.
    CachedAfterFailedCheck,
}

/// The binary to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledBinary {
    /// The `Lingma` executable (run `Lingma start --workDir ... --socketPort ... --httpPort ...`).
    pub lingma: PathBuf,
    /// `LingmaLocal` beside it; always present for downloaded installs, optional for explicit
    /// paths (a simulator has none).
    pub lingma_local: Option<PathBuf>,
    /// The version from the package; unknown (`None`) for explicit paths.
    pub version: Option<String>,
    /// sha256 (hex) of `lingma`.
    pub sha256: String,
    /// sha256 (hex) of `lingma_local`.
    pub lingma_local_sha256: Option<String>,
    pub origin: Origin,
}

impl InstalledBinary {
    fn from_install(dir: &Path, manifest: &Manifest, origin: Origin) -> Self {
        Self {
            lingma: dir.join(LINGMA),
            lingma_local: Some(dir.join(LINGMA_LOCAL)),
            version: Some(manifest.version.clone()),
            sha256: manifest.lingma.sha256.clone(),
            lingma_local_sha256: Some(manifest.lingma_local.sha256.clone()),
            origin,
        }
    }
}

/// Returns a runnable Lingma binary, downloading and installing it when the config says so.
///
/// - `LINGMA_BIN` set: that file, checked (exists, executable), whatever the source.
/// - `image`: [`DEFAULT_IMAGE_BIN`], checked; nothing is downloaded.
/// - `marketplace` / `vsix`: the active install when it came from the same URL (and its files
///   still match their manifest), else a download. `bootstrap_always` downloads every time but
///   keeps the installed files when the package or the binaries are identical, and falls back to
///   the installed version when the check fails; `force_refresh` downloads and reinstalls every
///   time and fails when it cannot.
///
/// Downloads are https only (see [`BootstrapArgs::allow_http_loopback`] for tests), never
/// follow a redirect to http, and must match `LINGMA_DOWNLOAD_SHA256` when it is set (an
/// install whose package has another digest is not reused either).
///
/// On any error the previously active install stays active.
pub async fn ensure_binary(config: &BootstrapConfig) -> Result<InstalledBinary, BootstrapError> {
    if let Some(bin) = config.explicit_bin() {
        if config.args.source != SourceType::Image {
            tracing::info!(source = ?config.args.source, "LINGMA_BIN is set: using it, not the configured source");
        }
        let bin = bin.to_path_buf();
        return blocking(move || explicit::verify_existing(&bin, Origin::ExplicitPath)).await;
    }
    let Some(url) = config.args.download_url()? else {
        return blocking(|| explicit::verify_existing(Path::new(DEFAULT_IMAGE_BIN), Origin::Image))
            .await;
    };
    let platform = config.args.platform()?;
    let expected_sha256 = config.args.expected_sha256()?;
    let layout = Layout::new(&config.work_dir);
    let lock = {
        let layout = layout.clone();
        Arc::new(blocking(move || install::lock_and_clean(&layout)).await?)
    };
    let shown = redact_url(&url);

    let active = {
        let layout = layout.clone();
        match blocking(move || install::read_active(&layout, platform)).await {
            Ok(active) => active,
            Err(err) => {
                tracing::warn!(error = %err, "the active Lingma install is unusable; installing again");
                None
            }
        }
    };
    let reusable = active.filter(|(_, manifest)| {
        manifest.source.url == shown
            && expected_sha256
                .as_deref()
                .is_none_or(|pinned| manifest.package_sha256 == pinned)
    });
    if let Some((dir, manifest)) = &reusable
        && !config.args.force_refresh
        && !config.args.bootstrap_always
    {
        tracing::info!(version = %manifest.version, dir = %dir.display(), "using the installed Lingma");
        return Ok(InstalledBinary::from_install(dir, manifest, Origin::Cached));
    }

    let run = Fetch {
        config,
        layout: &layout,
        lock: &lock,
        url: &url,
        shown: &shown,
        platform,
        expected_sha256: expected_sha256.as_deref(),
        installed: if config.args.force_refresh {
            None
        } else {
            reusable.as_ref()
        },
    };
    match run.fetch_and_install().await {
        Ok(binary) => Ok(binary),
        Err(err) => match &reusable {
            Some((dir, manifest)) if config.args.bootstrap_always && !config.args.force_refresh => {
                tracing::warn!(error = %err, version = %manifest.version, "checking the Lingma source failed; keeping the installed version");
                Ok(InstalledBinary::from_install(
                    dir,
                    manifest,
                    Origin::CachedAfterFailedCheck,
                ))
            }
            _ => Err(err),
        },
    }
}

/// The active downloaded install of `config.work_dir` for `config`'s platform, checked against
/// its manifest, without any network access. `Ok(None)` when nothing is installed.
pub async fn active_install(
    config: &BootstrapConfig,
) -> Result<Option<InstalledBinary>, BootstrapError> {
    let platform = config.args.platform()?;
    let layout = Layout::new(&config.work_dir);
    let active = blocking(move || install::read_active(&layout, platform)).await?;
    Ok(
        active
            .map(|(dir, manifest)| InstalledBinary::from_install(&dir, &manifest, Origin::Cached)),
    )
}

/// One download-and-install attempt.
struct Fetch<'a> {
    config: &'a BootstrapConfig,
    layout: &'a Layout,
    lock: &'a Arc<WorkDirLock>,
    url: &'a str,
    shown: &'a str,
    platform: Platform,
    /// LINGMA_DOWNLOAD_SHA256, when set.
    expected_sha256: Option<&'a str>,
    /// The active install from the same source, when identical content may be kept.
    installed: Option<&'a (PathBuf, Manifest)>,
}

impl Fetch<'_> {
    async fn fetch_and_install(&self) -> Result<InstalledBinary, BootstrapError> {
        let scratch = ScratchDir::create(&self.layout.tmp_dir())?;
        let package = scratch.path.join("package.download");
        let limits = DownloadLimits {
            max_bytes: self.config.args.max_bytes,
            connect_timeout: self.config.args.connect_timeout(),
            idle_timeout: self.config.args.idle_timeout(),
            progress_step_bytes: self.config.args.progress_step_bytes,
        };
        let trust = DownloadTrust {
            allow_http_loopback: self.config.args.allow_http_loopback,
            ca_file: self.config.args.ca_file().map(Path::to_path_buf),
        };
        let downloaded = download_to_file(self.url, &package, &limits, &trust).await?;
        if let Some(expected) = self.expected_sha256
            && downloaded.sha256 != expected
        {
            return Err(BootstrapError::DigestMismatch {
                url: self.shown.to_owned(),
                expected: expected.to_owned(),
                actual: downloaded.sha256,
            });
        }

        if let Some((dir, manifest)) = self.installed
            && manifest.package_sha256 == downloaded.sha256
        {
            tracing::info!(version = %manifest.version, "the source serves the installed package; keeping it");
            return Ok(InstalledBinary::from_install(
                dir,
                manifest,
                Origin::Unchanged,
            ));
        }

        let stage = scratch.path.join("stage");
        let unpacked = {
            let (scratch_path, stage, platform, max) = (
                scratch.path.clone(),
                stage.clone(),
                self.platform,
                self.config.args.max_bytes,
            );
            let lock = Arc::clone(self.lock);
            blocking(move || {
                let _lock = lock;
                std::fs::create_dir(&stage)
                    .map_err(|err| BootstrapError::io("creating", &stage, err))?;
                package::unpack(&package, &scratch_path, &stage, platform, max)
            })
            .await?
        };

        if let Some((dir, manifest)) = self.installed
            && manifest.version == unpacked.version
            && manifest.lingma == FileRecord::from(&unpacked.lingma)
            && manifest.lingma_local == FileRecord::from(&unpacked.lingma_local)
        {
            tracing::info!(version = %manifest.version, "the new package holds the installed binaries; keeping them");
            return Ok(InstalledBinary::from_install(
                dir,
                manifest,
                Origin::Unchanged,
            ));
        }

        let manifest = Manifest {
            schema: 1,
            version: unpacked.version.clone(),
            platform: self.platform,
            lingma: FileRecord::from(&unpacked.lingma),
            lingma_local: FileRecord::from(&unpacked.lingma_local),
            source: SourceRecord {
                kind: self.config.args.source,
                url: self.shown.to_owned(),
            },
            package_sha256: downloaded.sha256,
            package_bytes: downloaded.bytes,
            installed_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or(0),
        };
        let dir = {
            let (layout, manifest, lock) =
                (self.layout.clone(), manifest.clone(), Arc::clone(self.lock));
            blocking(move || {
                let _lock = lock;
                install::install_staged(&layout, &stage, &manifest)
            })
            .await?
        };
        tracing::info!(version = %manifest.version, dir = %dir.display(), "installed Lingma");
        Ok(InstalledBinary::from_install(
            &dir,
            &manifest,
            Origin::Downloaded,
        ))
    }
}

/// A per-attempt directory under `.tmp`, removed when the attempt ends (success, error or the
/// future being dropped); a killed process leaves it for the next start's cleaning.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create(tmp: &Path) -> Result<Self, BootstrapError> {
        let path = tmp.join(format!("run-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&path).map_err(|err| BootstrapError::io("creating", &path, err))?;
        Ok(Self { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.path.display(), error = %err, "could not remove a scratch directory; the next start will");
        }
    }
}

async fn blocking<T, F>(work: F) -> Result<T, BootstrapError>
where
    F: FnOnce() -> Result<T, BootstrapError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| BootstrapError::Io {
            action: "running a blocking step for",
            path: PathBuf::from("the bootstrap"),
            source: std::io::Error::other(err.to_string()),
        })?
}
