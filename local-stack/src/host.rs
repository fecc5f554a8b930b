//! Single-host mode: what the original single-process gateway's `.env` describes, run as
//! the gateway plus one sidecar per Lingma process, on one host, without a cluster.
//!
//! The runner reads the settings with the sidecar's own parsers, lays out the instances
//! ([`plan`]), makes the Lingma binary available once for all of them (the bootstrap, into
//! `LINGMA_WORK_DIR/bin`), then starts the sidecars (each supervises and logs in its own
//! Lingma) and the gateway in front of them. The children do not inherit the environment:
//! each gets only the settings it reads ([`child_settings`]); a sidecar gets its own account
//! and nobody else's.

mod child_settings;
mod plan;
pub mod settings;

use crate::binaries::{Binaries, HOST_PACKAGES};
use crate::children::Children;
use crate::demo::{display_host, kv, random_token, shutdown_signal, wait_for_success};
use anyhow::Context;
use clap::Args;
use plan::{Instance, Legacy};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// The .env file to load; variables already in the environment win (default: ./.env
    /// when it exists).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Seconds the gateway may take to start listening.
    #[arg(long, default_value_t = 60)]
    pub start_timeout_sec: u64,
}

pub async fn run(args: HostArgs, env_file: settings::EnvFile) -> anyhow::Result<()> {
    let environment = settings::Environment::new(&env_file);
    let settings = settings::read(&environment)?;
    let accounts = settings.accounts.len();
    let count = plan::instance_count(&settings.host.instance_count, accounts)?;
    warn_about_accounts(count, accounts);
    if settings.sidecar.lingma_attach {
        tracing::warn!(
            "LINGMA_ATTACH is ignored in single-host mode: each sidecar starts its own Lingma"
        );
    }

    let work_root = settings.sidecar.lingma_work_dir.clone();
    let lingma_bin = ensure_lingma(&settings, &work_root).await?;
    let bins = Binaries::locate(HOST_PACKAGES)?;

    let instances = {
        let mut held = Vec::new();
        let legacy = Legacy {
            work_dir: &work_root,
            socket_port: settings.sidecar.lingma_socket_port,
            http_port: settings.sidecar.lingma_http_port,
        };
        // Listeners stay bound until the plan is complete, so no port is handed out twice.
        plan::plan(count, accounts, &legacy, || {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            held.push(listener);
            Ok(port)
        })?
    };

    let token = random_token();
    let mut children = Children::isolated();
    let shared = child_settings::sidecar_settings(&environment);
    for inst in &instances {
        std::fs::create_dir_all(&inst.work_dir)
            .with_context(|| format!("cannot create {}", inst.work_dir.display()))?;
        let account = inst.account.and_then(|i| settings.accounts.get(i));
        let mut env = shared.clone();
        env.extend(sidecar_env(inst, account, &token, &lingma_bin));
        children.spawn(&inst.name, &bins.path("sidecar"), &[], &env)?;
    }
    let host = &settings.host;
    let mut gateway_env = child_settings::gateway_settings(&environment);
    gateway_env.extend([
        kv("HOST", &host.host),
        kv("PORT", &host.port.to_string()),
        kv("GATEWAY_DISCOVERY", "static"),
        kv("GATEWAY_SIDECARS", &gateway_sidecars(&instances)),
        kv("SIDECAR_TOKEN", &token),
    ]);
    children.spawn("gateway", &bins.path("gateway"), &[], &gateway_env)?;

    let base = format!("http://{}:{}", display_host(&host.host), host.port);
    let healthz = format!("{base}/healthz");
    let started = tokio::select! {
        // Liveness, not readiness: the instances may still be logging in.
        r = wait_for_success(&healthz, Duration::from_secs(args.start_timeout_sec), "the gateway did not answer") => r,
        died = children.first_exit() => Err(anyhow::anyhow!("{died} during start-up")),
    };
    let grace = Duration::from_secs(host.drain_timeout_sec.saturating_add(10));
    if let Err(e) = started {
        children.stop_all(grace).await;
        return Err(e);
    }
    print_banner(&base, &instances, accounts, &lingma_bin);

    let outcome = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        died = children.first_exit() => Err(anyhow::anyhow!("{died}; stopping everything")),
    };
    println!("stopping the single-host stack ...");
    children.stop_all(grace).await;
    outcome
}

fn warn_about_accounts(count: usize, accounts: usize) {
    if accounts == 0 {
        tracing::warn!(
            instances = count,
            "no Lingma account configured (LINGMA_ACCOUNTS or LINGMA_USERNAME/LINGMA_PASSWORD): \
             the instances cannot log in by themselves"
        );
    } else if count > accounts {
        tracing::warn!(
            instances = count,
            accounts,
            "LINGMA_INSTANCE_COUNT is larger than the number of accounts: accounts are reused \
             round-robin (instance i uses account i mod {accounts}); instances sharing an \
             account may end each other's sessions"
        );
    }
}

/// The Lingma binary every instance runs: LINGMA_BIN, or the bootstrapped one (downloaded
/// once into `<LINGMA_WORK_DIR>/bin`, shared by all instances).
async fn ensure_lingma(settings: &settings::Settings, work_root: &Path) -> anyhow::Result<PathBuf> {
    let explicit = settings
        .sidecar
        .lingma_bin
        .clone()
        .filter(|p| !p.as_os_str().is_empty());
    let config = lingma_bootstrap::BootstrapConfig::from_args(
        settings.host.bootstrap.clone(),
        work_root,
        explicit,
    );
    let installed = lingma_bootstrap::ensure_binary(&config)
        .await
        .context("cannot make the Lingma binary available (LINGMA_BIN or the bootstrap)")?;
    tracing::info!(
        bin = %installed.lingma.display(),
        version = installed.version.as_deref().unwrap_or("unknown"),
        origin = ?installed.origin,
        "Lingma binary"
    );
    Ok(installed.lingma)
}

/// What differs per sidecar: its ports, dirs, name, the stack's token and its one account
/// (as LINGMA_USERNAME/LINGMA_PASSWORD; the slot keeps its number for the logs, and slot i of
/// one account is that account).
fn sidecar_env(
    inst: &Instance,
    account: Option<&sidecar::accounts::Account>,
    token: &str,
    lingma_bin: &Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        kv("SIDECAR_HOST", "127.0.0.1"),
        kv("SIDECAR_PORT", &inst.sidecar_port.to_string()),
        kv("SIDECAR_NAME", &inst.name),
        kv("SIDECAR_TOKEN", token),
        kv("LINGMA_BIN", &lingma_bin.to_string_lossy()),
        kv("LINGMA_ATTACH", "false"),
        kv("LINGMA_WORK_DIR", &inst.work_dir.to_string_lossy()),
        kv("LINGMA_SOCKET_PORT", &inst.socket_port.to_string()),
        kv("LINGMA_HTTP_PORT", &inst.http_port.to_string()),
        kv("LINGMA_ACCOUNT_SLOT", &inst.index.to_string()),
    ];
    if let Some(account) = account {
        env.push(kv("LINGMA_USERNAME", &account.username));
        env.push(kv("LINGMA_PASSWORD", &account.password));
    }
    env
}

fn gateway_sidecars(instances: &[Instance]) -> String {
    instances
        .iter()
        .map(|i| format!("{}=ws://127.0.0.1:{}", i.name, i.sidecar_port))
        .collect::<Vec<_>>()
        .join(",")
}

fn print_banner(base: &str, instances: &[Instance], accounts: usize, lingma_bin: &Path) {
    let mut rows = String::new();
    for i in instances {
        let account = i
            .account
            .map_or_else(|| "none".to_owned(), |a| format!("#{}", a + 1));
        rows.push_str(&format!(
            " {name}: workDir={dir} socketPort={sp} httpPort={hp} sidecar=ws://127.0.0.1:{sc} account={account}\n",
            name = i.name,
            dir = i.work_dir.display(),
            sp = i.socket_port,
            hp = i.http_port,
            sc = i.sidecar_port,
        ));
    }
    println!(
        r#"
================================================================================
 lingma-gateway single-host mode is UP: {n} Lingma instance(s), {accounts} account(s)
 Lingma binary: {bin}
{rows}
 base_url: {base}/v1
 instances and their login: {base}/internal/stats (with an API key when API_KEYS is set)
 Ctrl-C stops everything.
================================================================================
"#,
        n = instances.len(),
        bin = lingma_bin.display(),
    );
}
