//! Bootstrap settings; the sidecar flattens them into its CLI (`#[command(flatten)]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{BootstrapError, Platform};

/// Where the binary comes from when `LINGMA_BIN` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// Baked into the container image at [`DEFAULT_IMAGE_BIN`]; nothing is downloaded.
    Image,
    /// The VS Code marketplace package of `publisher.extension`.
    Marketplace,
    /// A VSIX at an arbitrary URL (`LINGMA_VSIX_URL`).
    Vsix,
}

/// Where the `image` source expects the binary when `LINGMA_BIN` is empty.
pub const DEFAULT_IMAGE_BIN: &str = "/opt/lingma/bin/Lingma";
pub const DEFAULT_MARKETPLACE_URL: &str = "https://marketplace.visualstudio.com";
pub const DEFAULT_PUBLISHER: &str = "Alibaba-Cloud";
pub const DEFAULT_EXTENSION: &str = "tongyi-lingma";
/// The extension version downloaded when `LINGMA_VERSION` is empty: a pin, not `latest`, so
/// a restart never brings an untested upgrade (set `LINGMA_VERSION=latest` to opt in). 2.6.10
/// is the newest VSIX whose layout this project's sources describe (lingma-protocol.md 2.1).
pub const DEFAULT_LINGMA_VERSION: &str = "2.6.10";
pub const DEFAULT_WORK_DIR: &str = "/data/lingma";
/// 1 GiB: the 2.6 package is ~200 MB (compressed nested zip), the cap only stops runaways.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT_SEC: u64 = 30;
pub const DEFAULT_IDLE_TIMEOUT_SEC: u64 = 60;
pub const DEFAULT_PROGRESS_STEP_BYTES: u64 = 16 * 1024 * 1024;

/// The bootstrap's own flags: everything but the two paths a sidecar also needs for running
/// Lingma (`LINGMA_WORK_DIR`, `LINGMA_BIN`), so a CLI that already has those can flatten this.
/// Every flag reads the env name shown.
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapArgs {
    /// Where the binary comes from: image (no download) | marketplace | vsix.
    #[arg(
        id = "lingma_source_type",
        long = "lingma-source-type",
        env = "LINGMA_SOURCE_TYPE",
        value_enum,
        default_value_t = SourceType::Marketplace,
    )]
    pub source: SourceType,

    /// Marketplace publisher of the Lingma extension.
    #[arg(
        id = "lingma_marketplace_publisher",
        long = "lingma-marketplace-publisher",
        env = "LINGMA_MARKETPLACE_PUBLISHER",
        default_value = DEFAULT_PUBLISHER,
    )]
    pub marketplace_publisher: String,

    /// Marketplace name of the Lingma extension.
    #[arg(
        id = "lingma_marketplace_extension",
        long = "lingma-marketplace-extension",
        env = "LINGMA_MARKETPLACE_EXTENSION",
        default_value = DEFAULT_EXTENSION,
    )]
    pub marketplace_extension: String,

    /// Extension version to download from the marketplace (empty = the built-in pin,
    /// DEFAULT_LINGMA_VERSION; `latest` only when asked for by name).
    #[arg(id = "lingma_version", long = "lingma-version", env = "LINGMA_VERSION")]
    pub pinned_version: Option<String>,

    /// sha256 (hex) the downloaded package must have; a mismatch fails the bootstrap and
    /// keeps the previous install (empty = not checked).
    #[arg(
        id = "lingma_download_sha256",
        long = "lingma-download-sha256",
        env = "LINGMA_DOWNLOAD_SHA256"
    )]
    pub expected_sha256: Option<String>,

    /// Extra CA certificate(s), PEM, trusted for the download besides the built-in roots (a
    /// private mirror, a TLS-inspecting proxy; empty = none).
    #[arg(
        id = "lingma_download_ca_file",
        long = "lingma-download-ca-file",
        env = "LINGMA_DOWNLOAD_CA_FILE",
        value_parser = any_path,
    )]
    pub ca_file: Option<PathBuf>,

    /// Also accept plain-http download URLs (and redirects) on loopback hosts: for local
    /// test servers only. An https->http redirect is never followed, whatever this says.
    #[arg(
        id = "lingma_download_allow_http_loopback",
        long = "lingma-download-allow-http-loopback",
        env = "LINGMA_DOWNLOAD_ALLOW_HTTP_LOOPBACK",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
    )]
    pub allow_http_loopback: bool,

    /// Base URL of the marketplace gallery API (tests point it at a local server).
    #[arg(
        id = "lingma_marketplace_url",
        long = "lingma-marketplace-url",
        env = "LINGMA_MARKETPLACE_URL",
        default_value = DEFAULT_MARKETPLACE_URL,
    )]
    pub marketplace_url: String,

    /// URL of the VSIX when the source is `vsix`.
    #[arg(
        id = "lingma_vsix_url",
        long = "lingma-vsix-url",
        env = "LINGMA_VSIX_URL"
    )]
    pub vsix_url: Option<String>,

    /// Check the source at every start; a download identical to the install is not reinstalled.
    #[arg(
        id = "lingma_bootstrap_always",
        long = "lingma-bootstrap-always",
        env = "LINGMA_BOOTSTRAP_ALWAYS",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
    )]
    pub bootstrap_always: bool,

    /// Download and reinstall at every start, even when the same version is installed.
    #[arg(
        id = "lingma_force_refresh",
        long = "lingma-force-refresh",
        env = "LINGMA_FORCE_REFRESH",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
    )]
    pub force_refresh: bool,

    /// Platform directory to install: x86_64_linux | aarch64_linux | auto (or empty: detect).
    #[arg(
        id = "lingma_platform",
        long = "lingma-platform",
        env = "LINGMA_PLATFORM",
        default_value = "auto",
        value_parser = parse_platform_choice,
    )]
    pub platform: PlatformChoice,

    /// Largest package accepted, in bytes (also caps each unpacked file).
    #[arg(
        id = "lingma_download_max_bytes",
        long = "lingma-download-max-bytes",
        env = "LINGMA_DOWNLOAD_MAX_BYTES",
        default_value_t = DEFAULT_MAX_BYTES,
    )]
    pub max_bytes: u64,

    /// Seconds to wait for the TCP/TLS connection of the download.
    #[arg(
        id = "lingma_download_connect_timeout_sec",
        long = "lingma-download-connect-timeout-sec",
        env = "LINGMA_DOWNLOAD_CONNECT_TIMEOUT_SEC",
        default_value_t = DEFAULT_CONNECT_TIMEOUT_SEC,
        value_parser = clap::value_parser!(u64).range(0..=3600),
    )]
    pub connect_timeout_sec: u64,

    /// Seconds without a received byte after which the download is abandoned.
    #[arg(
        id = "lingma_download_idle_timeout_sec",
        long = "lingma-download-idle-timeout-sec",
        env = "LINGMA_DOWNLOAD_IDLE_TIMEOUT_SEC",
        default_value_t = DEFAULT_IDLE_TIMEOUT_SEC,
        value_parser = clap::value_parser!(u64).range(0..=3600),
    )]
    pub idle_timeout_sec: u64,

    /// Bytes between two progress log lines (not a flag).
    #[arg(skip = DEFAULT_PROGRESS_STEP_BYTES)]
    pub progress_step_bytes: u64,
}

/// Settings of [`crate::ensure_binary`]: the flags plus the two paths.
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapConfig {
    #[command(flatten)]
    pub args: BootstrapArgs,

    /// Lingma's working directory; binaries go to `<dir>/bin/<version>/<platform>/`.
    #[arg(
        id = "lingma_work_dir",
        long = "lingma-work-dir",
        env = "LINGMA_WORK_DIR",
        default_value = DEFAULT_WORK_DIR,
    )]
    pub work_dir: PathBuf,

    /// Use this Lingma binary as is, whatever the source (no download; empty = unset).
    #[arg(
        id = "lingma_bin",
        long = "lingma-bin",
        env = "LINGMA_BIN",
        value_parser = any_path,
    )]
    pub lingma_bin: Option<PathBuf>,
}

impl BootstrapConfig {
    /// The defaults of every flag, for `source` installing into `work_dir`.
    pub fn new(source: SourceType, work_dir: impl Into<PathBuf>) -> Self {
        Self::from_args(BootstrapArgs::defaults(source), work_dir, None)
    }

    /// For a CLI that flattens [`BootstrapArgs`] and has its own `LINGMA_WORK_DIR`/`LINGMA_BIN`.
    pub fn from_args(
        args: BootstrapArgs,
        work_dir: impl Into<PathBuf>,
        lingma_bin: Option<PathBuf>,
    ) -> Self {
        Self {
            args,
            work_dir: work_dir.into(),
            lingma_bin,
        }
    }

    /// The explicit binary path, treating an empty value as unset.
    pub fn explicit_bin(&self) -> Option<&std::path::Path> {
        self.lingma_bin
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty())
    }
}

impl BootstrapArgs {
    /// The default of every flag, for `source`.
    pub fn defaults(source: SourceType) -> Self {
        Self {
            source,
            marketplace_publisher: DEFAULT_PUBLISHER.to_owned(),
            marketplace_extension: DEFAULT_EXTENSION.to_owned(),
            pinned_version: None,
            expected_sha256: None,
            ca_file: None,
            allow_http_loopback: false,
            marketplace_url: DEFAULT_MARKETPLACE_URL.to_owned(),
            vsix_url: None,
            bootstrap_always: false,
            force_refresh: false,
            platform: PlatformChoice::default(),
            max_bytes: DEFAULT_MAX_BYTES,
            connect_timeout_sec: DEFAULT_CONNECT_TIMEOUT_SEC,
            idle_timeout_sec: DEFAULT_IDLE_TIMEOUT_SEC,
            progress_step_bytes: DEFAULT_PROGRESS_STEP_BYTES,
        }
    }

    /// The configured platform, else the detected one.
    pub fn platform(&self) -> Result<Platform, BootstrapError> {
        match self.platform.0 {
            Some(platform) => Ok(platform),
            None => Platform::detect(),
        }
    }

    /// The URL the package is downloaded from (`None` for the image source).
    ///
    /// Marketplace: `<base>/_apis/public/gallery/publishers/<p>/vsextensions/<e>/<version>/vspackage`,
    /// with [`DEFAULT_LINGMA_VERSION`] when `LINGMA_VERSION` is empty.
    pub fn download_url(&self) -> Result<Option<String>, BootstrapError> {
        match self.source {
            SourceType::Image => Ok(None),
            SourceType::Vsix => {
                let url = self
                    .vsix_url
                    .as_deref()
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .ok_or_else(|| {
                        BootstrapError::Config(
                            "LINGMA_SOURCE_TYPE=vsix needs LINGMA_VSIX_URL".to_owned(),
                        )
                    })?;
                check_download_url(url, self.allow_http_loopback)?;
                Ok(Some(url.to_owned()))
            }
            SourceType::Marketplace => {
                let publisher =
                    path_segment("LINGMA_MARKETPLACE_PUBLISHER", &self.marketplace_publisher)?;
                let extension =
                    path_segment("LINGMA_MARKETPLACE_EXTENSION", &self.marketplace_extension)?;
                let version = match self.pinned_version.as_deref().map(str::trim) {
                    Some(v) if !v.is_empty() => path_segment("LINGMA_VERSION", v)?,
                    _ => DEFAULT_LINGMA_VERSION,
                };
                let base = self.marketplace_url.trim().trim_end_matches('/');
                let url = format!(
                    "{base}/_apis/public/gallery/publishers/{publisher}/vsextensions/{extension}/{version}/vspackage"
                );
                check_download_url(&url, self.allow_http_loopback)?;
                Ok(Some(url))
            }
        }
    }

    /// LINGMA_DOWNLOAD_SHA256, lowercased; `None` when empty. Anything but 64 hex digits is
    /// a configuration error (a typo must not silently disable the check).
    pub fn expected_sha256(&self) -> Result<Option<String>, BootstrapError> {
        let Some(text) = self
            .expected_sha256
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Some(text.to_ascii_lowercase()))
        } else {
            Err(BootstrapError::Config(
                "LINGMA_DOWNLOAD_SHA256 must be 64 hex digits (the sha256 of the package)"
                    .to_owned(),
            ))
        }
    }

    /// LINGMA_DOWNLOAD_CA_FILE, empty = unset.
    pub(crate) fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file
            .as_deref()
            .filter(|path| !path.as_os_str().is_empty())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_sec.max(1))
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_sec.max(1))
    }
}

/// The `--lingma-platform` setting: `None` detects the platform at run time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlatformChoice(pub Option<Platform>);

fn parse_platform_choice(text: &str) -> Result<PlatformChoice, String> {
    match text.trim() {
        "" | "auto" => Ok(PlatformChoice(None)),
        "x86_64_linux" => Ok(PlatformChoice(Some(Platform::X86_64Linux))),
        "aarch64_linux" => Ok(PlatformChoice(Some(Platform::Aarch64Linux))),
        other => Err(format!(
            "unknown platform {other:?}; use x86_64_linux, aarch64_linux or auto"
        )),
    }
}

/// A path that may be empty (the .env convention for "unset"); [`BootstrapConfig::explicit_bin`]
/// treats empty as unset.
fn any_path(text: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text))
}

/// A value that goes into a URL path: no separators or anything needing escaping.
fn path_segment<'a>(name: &str, value: &'a str) -> Result<&'a str, BootstrapError> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && value != "." && value != ".." {
        Ok(value)
    } else {
        Err(BootstrapError::Config(format!(
            "{name} must be letters, digits, '-', '_' or '.', got {value:?}"
        )))
    }
}

/// Where a package may come from: https, or plain http on a loopback host when the test
/// opt-out is set.
pub(crate) fn check_download_url(
    url: &str,
    allow_http_loopback: bool,
) -> Result<(), BootstrapError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| BootstrapError::Config(format!("download URL does not parse: {err}")))?;
    if is_acceptable(&parsed, allow_http_loopback) {
        Ok(())
    } else {
        Err(BootstrapError::Config(format!(
            "download URL must be https (plain http only on loopback, with LINGMA_DOWNLOAD_ALLOW_HTTP_LOOPBACK=true for tests): {}",
            crate::error::redact_url(url)
        )))
    }
}

/// https anywhere; http only on a loopback host and only with the opt-out.
pub(crate) fn is_acceptable(url: &reqwest::Url, allow_http_loopback: bool) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => allow_http_loopback && is_loopback(url),
        _ => false,
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests;
