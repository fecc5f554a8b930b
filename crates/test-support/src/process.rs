use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Builds a child process whose stdout and stderr go to a log file the test can read.
pub struct ProcessBuilder {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    name: String,
    /// Run inside this network namespace (`ip netns exec NS program ...`).
    netns: Option<String>,
}

impl ProcessBuilder {
    pub fn new(name: &str, program: impl AsRef<Path>) -> Self {
        Self {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            name: name.to_owned(),
            netns: None,
        }
    }

    /// Run it inside network namespace `ns` (None: the test's own namespace). `ip netns
    /// exec` execs the program, so the child's pid is the program's own.
    pub fn netns(mut self, ns: Option<&str>) -> Self {
        self.netns = ns.map(str::to_owned);
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Start it. The environment is cleared of the settings of `.env.example` that a
    /// developer may have exported, so tests see only what they set.
    pub fn spawn(self) -> std::io::Result<ChildProcess> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-log-", self.name))
            .tempdir()?;
        let log_path = dir.path().join("output.log");
        let log = File::create(&log_path)?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new(crate::stack::netns::ip_binary());
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if is_project_setting(&k) {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn()?;
        Ok(ChildProcess {
            child: Some(child),
            log_path,
            _log_dir: dir,
            name: self.name,
        })
    }
}

fn is_project_setting(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "LINGMA_",
        "GATEWAY_",
        "SIDECAR_",
        "SESSION_",
        "AUTO_LOGIN_",
        "API_KEYS",
        "METRICS_TOKEN",
        "DEFAULT_",
        "DEDICATED_",
        "LOG_",
        "OTEL_",
    ];
    name == "HOST" || name == "PORT" || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A running child process, killed when dropped.
pub struct ChildProcess {
    child: Option<Child>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    name: String,
}

impl ChildProcess {
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful shutdown), then wait up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Wait for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- output of {} ----\n{}", self.name, self.output());
        }
    }
}
