//! Demo mode: N simulated Lingma instances, each behind its own sidecar, behind one gateway,
//! all on 127.0.0.1 and all in this process (the libraries this binary links; nothing else
//! to build or start). Everything here is the simulator, never Lingma.

mod in_process;

use anyhow::{Context, bail};
use clap::Args;
use in_process::{InProcessStack, SimSettings};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Address the gateway listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the OpenAI-compatible API.
    #[arg(long, env = "PORT", default_value_t = 8317, value_parser = port_or_default)]
    pub port: u16,
    /// Simulated Lingma processes (each with its own sidecar).
    #[arg(long, default_value_t = 2)]
    pub instances: u16,
    /// Chats one simulated Lingma runs at once (real Lingma: 1).
    #[arg(long, default_value_t = 1)]
    pub max_concurrent_chats: u32,
    /// Simulated time to first token, in milliseconds.
    #[arg(long, default_value_t = 150)]
    pub first_token_delay_ms: u64,
    /// Simulated delay between answer chunks, in milliseconds.
    #[arg(long, default_value_t = 30)]
    pub chunk_delay_ms: u64,
    /// Work directory for the simulated instances (default: a temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// API keys clients must send (comma-separated); empty = no auth (local use only).
    #[arg(long, env = "API_KEYS", default_value = "")]
    pub api_keys: String,
    /// Seconds to wait for the stack to become ready.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout_sec: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let temp = tempfile::Builder::new().prefix("lingma-local-").tempdir()?;
    let work_root = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    // Bound first: a port in use stops the start before anything else runs.
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let mut stack = InProcessStack::new();
    let started = start(&mut stack, &args, &work_root, listener).await;
    let base = format!("http://{}:{}", display_host(&args.host), args.port);
    let health = format!("{base}/healthz");
    let ready = match started {
        Ok(()) => {
            progress(
                "waiting until the sidecars are connected to their simulators and the gateway to its sidecars ...",
            );
            let timeout = Duration::from_secs(args.ready_timeout_sec);
            tokio::select! {
                r = wait_for_usable(&health, timeout) => r,
                why = stack.first_exit() => Err(anyhow::anyhow!("{why} during start-up")),
            }
        }
        Err(e) => Err(e),
    };
    if let Err(e) = ready {
        stack.stop(Duration::from_secs(5)).await;
        return Err(e);
    }
    print_banner(&base, &args);

    let outcome = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        why = stack.first_exit() => Err(anyhow::anyhow!("{why}; stopping the stack")),
    };
    println!("stopping the local stack ...");
    stack.stop(Duration::from_secs(10)).await;
    drop(temp);
    outcome
}

/// Start the simulators, their sidecars and the gateway, saying what it does.
async fn start(
    stack: &mut InProcessStack,
    args: &DemoArgs,
    work_root: &Path,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let token = random_token();
    let sim = SimSettings {
        max_concurrent_chats: args.max_concurrent_chats,
        first_token_delay_ms: args.first_token_delay_ms,
        chunk_delay_ms: args.chunk_delay_ms,
    };
    progress(&format!(
        "starting {} simulated Lingma instance(s) (lingma-sim, NOT Lingma), each with its own sidecar ...",
        args.instances
    ));
    let mut sidecars = Vec::new();
    for i in 0..args.instances {
        let name = format!("sim-{i}");
        let work_dir = work_root.join(format!("inst-{i}"));
        let handle = stack.start_sim(work_dir.clone(), &sim).await?;
        let (ws_port, http_port) = (handle.ws_port(), handle.http_port());
        let sidecar_port = free_port()?;
        stack.start_sidecar(
            &name,
            &[
                "--host=127.0.0.1".to_owned(),
                format!("--port={sidecar_port}"),
                format!("--name={name}"),
                format!("--token={token}"),
                "--lingma-attach=true".to_owned(),
                format!("--lingma-work-dir={}", work_dir.display()),
                format!("--lingma-socket-port={ws_port}"),
                format!("--lingma-http-port={http_port}"),
                format!(
                    "--lingma-max-concurrent-chats={}",
                    args.max_concurrent_chats
                ),
                "--auto-login-enabled=false".to_owned(),
            ],
        )?;
        sidecars.push(format!("{name}=ws://127.0.0.1:{sidecar_port}"));
    }
    progress(&format!(
        "starting the gateway on {}:{} ...",
        args.host, args.port
    ));
    stack.start_gateway(
        &[
            format!("--host={}", args.host),
            format!("--port={}", args.port),
            format!("--api-keys={}", args.api_keys),
            "--discovery=static".to_owned(),
            format!("--sidecars={}", sidecars.join(",")),
            format!("--sidecar-token={token}"),
        ],
        listener,
    )
}

/// One line about a step of the start that may take a moment.
fn progress(what: &str) {
    println!("lingma-local: {what}");
}

/// An empty PORT means unset (as everywhere in `.env.example`), also when `host` is run: the
/// demo's flags are parsed from the environment whatever the subcommand.
fn port_or_default(text: &str) -> Result<u16, String> {
    if text.trim().is_empty() {
        return Ok(8317);
    }
    text.trim()
        .parse()
        .map_err(|_| "expected a port number (1-65535)".to_owned())
}

pub(crate) fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

pub(crate) fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    hex::encode(bytes)
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn display_host(host: &str) -> &str {
    if host == "0.0.0.0" { "127.0.0.1" } else { host }
}

/// Poll GET `url` until it answers 2xx (`what` names the wait in the error).
pub(crate) async fn wait_for_success(
    url: &str,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(resp) = client.get(url).timeout(Duration::from_secs(2)).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{what} within {timeout:?} ({url})")
}

/// Until the gateway's `/healthz` counts a usable sidecar (its `/readyz` only says that it
/// serves and knows its pool).
async fn wait_for_usable(health: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(resp) = client
            .get(health)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && let Ok(body) = resp.json::<serde_json::Value>().await
            && body["ready"].as_u64().is_some_and(|n| n >= 1)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the stack was not ready within {timeout:?} (no usable sidecar at {health})")
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn print_banner(base: &str, args: &DemoArgs) {
    let auth = if args.api_keys.is_empty() {
        String::new()
    } else {
        " -H \"Authorization: Bearer $API_KEY\"".to_owned()
    };
    let key = if args.api_keys.is_empty() {
        "\"unused\""
    } else {
        "os.environ[\"API_KEY\"]"
    };
    println!(
        r#"
================================================================================
 lingma-gateway local stack is READY — running the SIMULATOR (lingma-sim), NOT Lingma
 {n} simulated instance(s), each behind its own sidecar; answers are synthetic.

 base_url: {base}/v1

 curl {base}/v1/chat/completions{auth} \
   -H "Content-Type: application/json" \
   -d '{{"model":"org_auto","messages":[{{"role":"user","content":"hello"}}],"stream":true}}'

 python -c 'import os; from openai import OpenAI
 c = OpenAI(base_url="{base}/v1", api_key={key})
 print(c.chat.completions.create(model="org_auto",
       messages=[{{"role":"user","content":"hello"}}]).choices[0].message.content)'

 Ctrl-C stops everything.
================================================================================
"#,
        n = args.instances,
    );
}
