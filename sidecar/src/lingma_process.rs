//! The supervised Lingma process: `LINGMA_BIN start --workDir D --socketPort P --httpPort H`,
//! restarted with exponential backoff (with jitter) whenever it exits, stopped with SIGINT
//! (then SIGKILL after a grace period) on shutdown.

use crate::state::SidecarState;
use backon::{BackoffBuilder, ExponentialBuilder};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a process must have run for its next crash to restart without delay growth.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Grace period between SIGINT and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// What Lingma inherits on top of the basics (PATH, HOME, locale, TZ, TMPDIR, proxies, CA
/// bundle): the simulator's own knobs, which tests and the local stack set on the sidecar.
/// Never the sidecar's secrets (SIDECAR_TOKEN, LINGMA_PASSWORD, LINGMA_ACCOUNTS, API keys):
/// Lingma is a closed binary and gets its ports and workDir on the command line.
pub const LINGMA_ENV: child_env::Allowlist<'static> = child_env::Allowlist {
    names: &[],
    prefixes: &["LINGMA_SIM_"],
};

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub bin: PathBuf,
    pub work_dir: PathBuf,
    pub socket_port: u16,
    pub http_port: u16,
    /// A restart request for a process younger than this is stale and ignored.
    pub startup_timeout: Duration,
}

impl ProcessSpec {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        child_env::restrict(cmd.as_std_mut(), &LINGMA_ENV);
        cmd.arg("start")
            .arg("--workDir")
            .arg(&self.work_dir)
            .arg("--socketPort")
            .arg(self.socket_port.to_string())
            .arg("--httpPort")
            .arg(self.http_port.to_string())
            // Lingma keeps its own log under workDir/logs; its stdout could carry account
            // details, so it does not go to ours.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

fn restart_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(15))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Run Lingma until `stop` is cancelled, restarting it when it exits.
pub async fn supervise(spec: ProcessSpec, state: Arc<SidecarState>, stop: CancellationToken) {
    let mut backoff = restart_backoff();
    loop {
        if stop.is_cancelled() {
            return;
        }
        if let Err(e) = std::fs::create_dir_all(&spec.work_dir) {
            tracing::warn!(dir = %spec.work_dir.display(), error = %e.kind(), "cannot create the Lingma work dir");
        }
        let started = tokio::time::Instant::now();
        match spec.command().spawn() {
            Ok(child) => {
                state.metrics.lingma_starts.inc();
                tracing::info!(pid = child.id(), bin = %spec.bin.display(), "Lingma started");
                if !run_until_exit(child, &stop, &state, spec.startup_timeout).await {
                    return;
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = restart_backoff();
                }
            }
            Err(e) => {
                tracing::error!(bin = %spec.bin.display(), error = %e.kind(), "cannot start Lingma");
            }
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(15));
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "restarting Lingma after a delay"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Wait for the child to exit or to be found unresponsive (returns true: restart it) or
/// for `stop` (stops it, returns false).
async fn run_until_exit(
    mut child: Child,
    stop: &CancellationToken,
    state: &SidecarState,
    startup_timeout: Duration,
) -> bool {
    let started = tokio::time::Instant::now();
    let unresponsive = async {
        loop {
            state.lingma_restart.notified().await;
            if started.elapsed() >= startup_timeout {
                return;
            }
        }
    };
    tokio::select! {
        _ = unresponsive => {
            tracing::warn!("Lingma does not answer; restarting it");
            stop_child(&mut child).await;
            true
        }
        status = child.wait() => {
            match status {
                Ok(s) => tracing::warn!(status = %s, "Lingma exited"),
                Err(e) => tracing::warn!(error = %e.kind(), "lost track of Lingma"),
            }
            true
        }
        _ = stop.cancelled() => {
            stop_child(&mut child).await;
            false
        }
    }
}

async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        );
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            tracing::info!("Lingma stopped");
            return;
        }
    }
    let _ = child.kill().await;
    tracing::info!("Lingma killed after the grace period");
}

/// The binary to run: LINGMA_BIN as is when set (a missing file shows up as a failed start
/// and is retried like a crash), else whatever `lingma_bootstrap::ensure_binary` installs
/// per LINGMA_SOURCE_TYPE (the image's binary, or a download into the work dir).
pub async fn resolve_bin(
    config: &lingma_bootstrap::BootstrapConfig,
) -> Result<PathBuf, lingma_bootstrap::BootstrapError> {
    if let Some(bin) = config.explicit_bin() {
        return Ok(bin.to_path_buf());
    }
    let installed = lingma_bootstrap::ensure_binary(config).await?;
    tracing::info!(
        bin = %installed.lingma.display(),
        version = installed.version.as_deref().unwrap_or("unknown"),
        origin = ?installed.origin,
        "Lingma binary ready"
    );
    Ok(installed.lingma)
}
