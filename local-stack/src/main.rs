//! `lingma-local`: the whole lingma-gateway stack on one host, without a cluster.
//!
//! `lingma-local` (or `lingma-local demo`) runs gateway + sidecars + the Lingma SIMULATOR
//! (`lingma-sim`, a test double, no account needed) on 127.0.0.1.
//! `lingma-local host [--env-file .env]` runs real Lingma from the original gateway's `.env`
//! (single-host mode, docs/single-host.md).

mod binaries;
mod children;
mod demo;
mod host;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lingma-local",
    version,
    about = "Run gateway + sidecars + Lingma on one host (default: the simulator, no account, no cluster)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    demo: demo::DemoArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gateway + sidecars + the Lingma simulator (lingma-sim): no account, no cluster. The default.
    Demo(demo::DemoArgs),
    /// Single-host mode: gateway + one sidecar per real Lingma process, from the original
    /// gateway's .env (accounts, LINGMA_INSTANCE_COUNT, LINGMA_WORK_DIR, ...).
    Host(host::HostArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with its causes), not a backtrace: this is a start-up or
            // stop reason for an operator. Errors never carry secrets.
            eprintln!("lingma-local: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Read before logging starts: the env file may set LOG_LEVEL.
    let env_file = match &cli.command {
        Some(Command::Host(args)) => host::settings::load_env_file(args.env_file.as_deref())?,
        _ => host::settings::EnvFile::default(),
    };
    let log_level = std::env::var("LOG_LEVEL")
        .ok()
        .or_else(|| env_file.get("LOG_LEVEL").map(str::to_owned))
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    if let Some(path) = &env_file.path {
        tracing::info!(path = %path.display(), "settings read from the env file (the environment wins)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Some(Command::Demo(args)) => demo::run(args).await,
            Some(Command::Host(args)) => host::run(args, env_file).await,
            None => demo::run(cli.demo).await,
        }
    })
}
