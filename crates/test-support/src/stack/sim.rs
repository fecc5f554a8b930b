//! One `lingma-sim` process (the test double of Lingma) on free 127.0.0.1 ports, waited for
//! until it listens, with its control API at hand.

use super::{READY_TIMEOUT, SimControl, uuid_like};
use crate::{ChildProcess, ProcessBuilder, binary, free_port, wait_for_port};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Control token of the simulators integration tests start (`Sim::start_at` and friends).
pub const SIM_CONTROL_TOKEN: &str = "sim-control-token";

/// Settings of a logged-in simulator that the bench and the fault suite vary (flags of
/// `lingma-sim start`).
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub chunks: u32,
    pub first_token_delay_ms: u64,
    pub chunk_delay_ms: u64,
    /// 0 = unlimited.
    pub max_concurrent_chats: u32,
    pub extra_args: Vec<String>,
    /// Prefill cost per KiB of question, in microseconds (`--prefill-us-per-kib`; 0 = off).
    pub prefill_us_per_kib: u64,
    /// Run inside this network namespace (see [`super::netns`]); it listens on that
    /// namespace's loopback, so its control API is out of the test's reach.
    pub netns: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            chunks: 8,
            first_token_delay_ms: 0,
            chunk_delay_ms: 0,
            max_concurrent_chats: 0,
            extra_args: Vec::new(),
            prefill_us_per_kib: 0,
            netns: None,
        }
    }
}

impl SimOptions {
    fn flags(&self) -> Vec<String> {
        let mut flags: Vec<String> = [
            "--logged-in".to_owned(),
            "--max-concurrent-chats".to_owned(),
            self.max_concurrent_chats.to_string(),
            "--first-token-delay-ms".to_owned(),
            self.first_token_delay_ms.to_string(),
            "--chunk-delay-ms".to_owned(),
            self.chunk_delay_ms.to_string(),
            "--chunks".to_owned(),
            self.chunks.to_string(),
            "--log-level".to_owned(),
            "warn".to_owned(),
        ]
        .into();
        if self.prefill_us_per_kib > 0 {
            flags.push("--prefill-us-per-kib".to_owned());
            flags.push(self.prefill_us_per_kib.to_string());
        }
        flags.extend(self.extra_args.iter().cloned());
        flags
    }
}

/// Where and how one simulator runs; kept to start it again after a kill.
#[derive(Debug, Clone)]
struct Launch {
    bin: PathBuf,
    work_dir: PathBuf,
    ws_port: u16,
    http_port: u16,
    control_token: String,
    flags: Vec<String>,
    netns: Option<String>,
}

impl Launch {
    fn spawn(&self) -> Result<ChildProcess> {
        ProcessBuilder::new("lingma-sim", &self.bin)
            .arg("start")
            .arg("--workDir")
            .arg(&self.work_dir)
            .args(["--socketPort", &self.ws_port.to_string()])
            .args(["--httpPort", &self.http_port.to_string()])
            .args(["--control-token", &self.control_token])
            .args(self.flags.iter())
            .netns(self.netns.as_deref())
            .spawn()
            .context("starting lingma-sim")
    }
}

pub struct Sim {
    process: ChildProcess,
    launch: Launch,
    control: SimControl,
    _temp_dir: Option<tempfile::TempDir>,
    pub ws_port: u16,
    pub http_port: u16,
}

impl Sim {
    /// A logged-in simulator from `bin` in a temporary work dir, with a random control token
    /// (the bench and the fault suite).
    pub async fn start(bin: &Path, options: SimOptions) -> Result<Self> {
        let temp = tempfile::Builder::new().prefix("stack-sim-").tempdir()?;
        let launch = Launch {
            bin: bin.to_path_buf(),
            work_dir: temp.path().to_path_buf(),
            ws_port: free_port(),
            http_port: free_port(),
            control_token: format!("sim-control-{}", uuid_like()),
            flags: options.flags(),
            netns: options.netns.clone(),
        };
        Self::launch(launch, Some(temp)).await
    }

    /// The debug binary in `work_dir` on the given ports with [`SIM_CONTROL_TOKEN`] and
    /// `flags` (integration tests; panics when it does not start listening).
    pub async fn start_at(work_dir: &Path, ws_port: u16, http_port: u16, flags: &[&str]) -> Self {
        let launch = Launch {
            bin: binary("lingma-sim", "lingma-sim"),
            work_dir: work_dir.to_path_buf(),
            ws_port,
            http_port,
            control_token: SIM_CONTROL_TOKEN.to_owned(),
            flags: flags.iter().map(|s| (*s).to_owned()).collect(),
            netns: None,
        };
        Self::launch(launch, None)
            .await
            .expect("lingma-sim listens")
    }

    /// [`Sim::start_at`] in a temporary work dir on free ports.
    pub async fn start_with(flags: &[&str]) -> Self {
        let temp = tempfile::Builder::new()
            .prefix("stack-sim-")
            .tempdir()
            .expect("temp dir");
        let mut sim = Self::start_at(temp.path(), free_port(), free_port(), flags).await;
        sim._temp_dir = Some(temp);
        sim
    }

    /// [`Sim::start_with`], logged in from the start.
    pub async fn start_logged_in(flags: &[&str]) -> Self {
        let mut all = vec!["--logged-in"];
        all.extend_from_slice(flags);
        Self::start_with(&all).await
    }

    async fn launch(launch: Launch, temp: Option<tempfile::TempDir>) -> Result<Self> {
        let process = launch.spawn()?;
        let sim = Self {
            process,
            control: SimControl::new(launch.http_port, &launch.control_token),
            ws_port: launch.ws_port,
            http_port: launch.http_port,
            launch,
            _temp_dir: temp,
        };
        sim.wait_listening()
            .await
            .with_context(|| format!("lingma-sim not listening; output:\n{}", sim.output()))?;
        Ok(sim)
    }

    /// Start it again on the same ports and workDir (after a crash or a kill).
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = self.launch.spawn()?;
        self.wait_listening().await
    }

    /// Until its WebSocket port accepts connections (inside its namespace, if it has one).
    async fn wait_listening(&self) -> Result<()> {
        match &self.launch.netns {
            Some(ns) => {
                super::netns::wait_for_port_in(ns, "127.0.0.1", self.ws_port, READY_TIMEOUT).await
            }
            None => wait_for_port(self.ws_port, READY_TIMEOUT).await,
        }
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// Its stdout and stderr, then its `logs/lingma.log`.
    pub fn output(&self) -> String {
        self.process.output()
            + &std::fs::read_to_string(self.launch.work_dir.join("logs/lingma.log"))
                .unwrap_or_default()
    }

    pub fn work_dir(&self) -> &Path {
        &self.launch.work_dir
    }

    pub fn control_token(&self) -> &str {
        &self.launch.control_token
    }

    /// Its control API.
    pub fn control(&self) -> &SimControl {
        &self.control
    }

    /// The settings of a sidecar that attaches to this simulator instead of starting one.
    pub fn attach_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LINGMA_ATTACH", "true".into()),
            ("LINGMA_SOCKET_PORT", self.ws_port.to_string()),
            ("LINGMA_HTTP_PORT", self.http_port.to_string()),
            ("LINGMA_WORK_DIR", self.work_dir().display().to_string()),
        ]
    }
}
