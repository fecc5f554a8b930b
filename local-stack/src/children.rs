//! The stack's child processes: their output prefixed with their name, a graceful stop
//! (SIGTERM, then SIGKILL after a grace period), and notice when one dies.

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Children inherit only the basics (`child_env::Allowlist::BASE`: PATH, HOME, locale and
/// the like), never this process's settings: the single-host mode's environment holds every
/// account and the API keys. Each gets its own settings through `spawn`'s `env`.
pub struct Children {
    running: Vec<(String, Child)>,
}

impl Children {
    pub fn isolated() -> Self {
        Self {
            running: Vec::new(),
        }
    }

    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        let mut command = Command::new(program);
        child_env::restrict(command.as_std_mut(), &child_env::Allowlist::BASE);
        let mut child = command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix_lines(name.to_owned(), out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix_lines(name.to_owned(), err));
        }
        self.running.push((name.to_owned(), child));
        Ok(())
    }

    /// Resolves with the name of the first child that exits.
    pub async fn first_exit(&mut self) -> String {
        loop {
            for (name, child) in &mut self.running {
                if let Ok(Some(status)) = child.try_wait() {
                    return format!("{name} exited ({status})");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stop everything: the newest child first (the gateway, so no new chat reaches a
    /// sidecar that is going away), then all the others at once (each drains on its own).
    /// Each child gets one SIGTERM only: a second one may hit the default action.
    pub async fn stop_all(&mut self, grace: Duration) {
        let mut running = std::mem::take(&mut self.running);
        if let Some((name, mut child)) = running.pop() {
            terminate(&child);
            wait_or_kill(&name, &mut child, grace).await;
        }
        for (_, child) in &running {
            terminate(child);
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (name, child) in &mut running {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            wait_or_kill(name, child, left).await;
        }
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

async fn wait_or_kill(name: &str, child: &mut Child, grace: Duration) {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(_) => tracing::info!("{name} stopped"),
        Err(_) => {
            tracing::warn!("{name} did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

async fn prefix_lines(name: String, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("[{name}] {line}");
    }
}
