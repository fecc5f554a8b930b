//! Runs `lingma-local host` as a real process with the simulator (`lingma-sim`, a test
//! double of Lingma that accepts Lingma's command line) as LINGMA_BIN, and looks at what it
//! started: the gateway's API and the simulator processes themselves (via /proc).

#![allow(dead_code)] // each test binary uses a different part

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use test_support::{ChildProcess, ProcessBuilder, binary, free_port};

pub const API_KEY: &str = "host-test-key";
/// The gateway's METRICS_TOKEN: admin routes (`/metrics`, `/internal/*`) take it, never a
/// client key.
pub const ADMIN_TOKEN: &str = "host-test-metrics-token";
pub const WAIT: Duration = Duration::from_secs(60);

/// The binaries `lingma-local host` starts, built once per test process.
pub fn build_binaries() -> PathBuf {
    binary("sidecar", "sidecar");
    binary("gateway", "gateway");
    binary("lingma-sim", "lingma-sim");
    binary("local-stack", "lingma-local")
}

pub fn sim_bin() -> PathBuf {
    binary("lingma-sim", "lingma-sim")
}

/// A running `lingma-local host`; stopped with SIGTERM when dropped, so the sidecars stop
/// their simulators (a SIGKILL would orphan them).
pub struct HostStack {
    pub process: ChildProcess,
    pub base: String,
    pub port: u16,
    pub data: PathBuf,
    client: reqwest::Client,
    /// One single-host stack at a time per test binary: each starts several simulators,
    /// sidecars and a gateway on ports it picks free and releases just before the children
    /// bind them, and concurrent stacks (their outbound connections take ephemeral ports
    /// too) made that window collide on a loaded machine. Released by `stop` or drop.
    _serial: Option<MutexGuard<'static, ()>>,
}

static ONE_STACK_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Settings every test uses: the simulator as Lingma, quiet and fast answers, the gateway
/// on a free port of 127.0.0.1, an API key, plain log lines.
pub fn base_env(data: &Path, port: u16) -> Vec<(String, String)> {
    [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("API_KEYS", API_KEY.to_owned()),
        ("METRICS_TOKEN", ADMIN_TOKEN.to_owned()),
        ("LINGMA_BIN", sim_bin().to_string_lossy().into_owned()),
        ("LINGMA_WORK_DIR", data.to_string_lossy().into_owned()),
        ("LINGMA_SIM_FIRST_TOKEN_DELAY_MS", "0".to_owned()),
        ("LINGMA_SIM_CHUNK_DELAY_MS", "0".to_owned()),
        ("GATEWAY_MAX_IN_FLIGHT", "0".to_owned()),
        ("NO_COLOR", "1".to_owned()),
        // Binaries are built by the test; the runner must not run cargo again.
        ("CARGO", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl HostStack {
    /// Start `lingma-local host` with `base_env` plus `env` (later entries win) and `args`.
    pub fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let exe = build_binaries();
        // A test that failed while holding it poisons it; the next one may still run.
        let serial = ONE_STACK_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let data = dir.join("data");
        let port = free_port();
        let mut all = base_env(&data, port);
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let port = all
            .iter()
            .rev()
            .find(|(k, _)| k == "PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(port);
        let mut builder = ProcessBuilder::new("lingma-local-host", exe)
            .arg("host")
            .args(args.iter().copied());
        for (k, v) in all {
            builder = builder.env(k, v);
        }
        let process = builder.spawn().expect("start lingma-local host");
        Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
            port,
            data,
            client: reqwest::Client::new(),
            _serial: Some(serial),
        }
    }

    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Wait for the banner the runner prints once the gateway listens.
    pub async fn wait_up(&mut self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.output().contains("single-host mode is UP") {
                return;
            }
            assert!(
                self.process.is_running(),
                "lingma-local host exited:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no start banner within {WAIT:?}:\n{}", self.output());
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let admin = path.starts_with("/internal/") || path == "/metrics";
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(if admin { ADMIN_TOKEN } else { API_KEY })
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The gateway's view of the instances: name -> entry of /internal/stats "pool".
    pub async fn pool(&self) -> Vec<Value> {
        let (status, stats) = self.get("/internal/stats").await;
        assert_eq!(status, 200, "stats: {stats}");
        stats["pool"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until `check` holds for the pool; returns it.
    pub async fn wait_pool(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.pool().await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{what}: not reached within {WAIT:?}; pool: {}\n{}",
            Value::Array(last),
            self.output()
        );
    }

    /// Wait until the pool has `n` instances, all usable.
    pub async fn wait_all_usable(&self, n: usize) -> Vec<Value> {
        self.wait_pool(&format!("{n} usable instances"), |pool| {
            pool.len() == n && pool.iter().all(|s| s["state"] == "usable")
        })
        .await
    }

    /// One non-streaming chat; `user` varies the affinity key (so the instance). Returns
    /// the HTTP status and the answer (or the error body).
    pub async fn chat(&self, user: &str, text: &str) -> (u16, String) {
        let resp = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(API_KEY)
            .timeout(Duration::from_secs(30))
            .json(&serde_json::json!({
                "model": "org_auto",
                "user": user,
                "messages": [{"role": "user", "content": text}]
            }))
            .send()
            .await
            .expect("chat request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned);
        (status, content)
    }

    /// SIGTERM and wait; asserts a clean exit.
    pub fn stop(&mut self) {
        let status = self
            .process
            .terminate(Duration::from_secs(45))
            .expect("lingma-local host exits after SIGTERM");
        self._serial = None;
        assert!(
            status.success(),
            "clean exit, got {status}:\n{}",
            self.output()
        );
    }
}

impl Drop for HostStack {
    fn drop(&mut self) {
        let _ = self.process.terminate(Duration::from_secs(45));
    }
}

/// A simulator process the sidecars started (`lingma-sim start --workDir D ...`).
#[derive(Debug, Clone)]
pub struct SimProcess {
    pub pid: i32,
    pub work_dir: PathBuf,
    pub socket_port: u16,
    pub http_port: u16,
}

/// Every running `lingma-sim start` whose workDir is under `root` (from /proc).
pub fn sims_under(root: &Path) -> Vec<SimProcess> {
    let sim = sim_bin();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().map(PathBuf::from) != Some(sim.clone())
            || args.get(1).map(String::as_str) != Some("start")
        {
            continue;
        }
        // A zombie (killed, not yet reaped) keeps its cmdline empty; skip the dead.
        if is_zombie(pid) {
            continue;
        }
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let Some(work_dir) = value("--workDir").map(PathBuf::from) else {
            continue;
        };
        if !work_dir.starts_with(root) {
            continue;
        }
        found.push(SimProcess {
            pid,
            work_dir,
            socket_port: value("--socketPort")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            http_port: value("--httpPort")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
        });
    }
    found.sort_by(|a, b| a.work_dir.cmp(&b.work_dir));
    found
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s == "Z"))
        })
        .unwrap_or(true)
}

/// Wait until `n` simulators run under `root`.
pub async fn wait_sims(root: &Path, n: usize) -> Vec<SimProcess> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let sims = sims_under(root);
        if sims.len() == n {
            return sims;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "expected {n} simulators under {}: {:?}",
        root.display(),
        sims_under(root)
    );
}

/// `lingma-sim status -o json --workDir DIR`: the login the simulator persisted.
pub fn sim_status(work_dir: &Path) -> Value {
    let out = std::process::Command::new(sim_bin())
        .args(["status", "-o", "json", "--workDir"])
        .arg(work_dir)
        .output()
        .expect("lingma-sim status");
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

pub fn entry<'a>(pool: &'a [Value], name: &str) -> &'a Value {
    pool.iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the pool: {}", Value::Array(pool.to_vec())))
}

/// A running child process of `parent`: its program's file name and its environment.
#[derive(Debug, Clone)]
pub struct ChildEnv {
    pub pid: i32,
    pub program: String,
    pub env: Vec<(String, String)>,
}

impl ChildEnv {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `NAME=value` joined, to search for a secret anywhere.
    pub fn text(&self) -> String {
        self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }
}

/// The live children of `parent` with their environments (from /proc).
pub fn children_of(parent: u32) -> Vec<ChildEnv> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
        else {
            continue;
        };
        if ppid != parent || is_zombie(pid) {
            continue;
        }
        found.push(ChildEnv {
            pid,
            program: program_name(&entry.path()),
            env: environ(&entry.path()),
        });
    }
    found
}

fn program_name(proc_dir: &Path) -> String {
    std::fs::read(proc_dir.join("cmdline"))
        .ok()
        .and_then(|raw| {
            let first = raw.split(|b| *b == 0).next()?.to_vec();
            Path::new(&String::from_utf8_lossy(&first).into_owned())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

fn environ(proc_dir: &Path) -> Vec<(String, String)> {
    std::fs::read(proc_dir.join("environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|pair| {
            let pair = String::from_utf8_lossy(pair).into_owned();
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}
