//! `lingma-sim`: command line of the Lingma test double (same `start` flags as Lingma).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use lingma_sim::SimConfig;
use std::io::IsTerminal;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// lingma-sim: a TEST DOUBLE of Alibaba's Lingma process (not Lingma). It speaks Lingma's
/// local WebSocket protocol with deterministic answers and injectable faults, for tests,
/// benchmarks and the local demo.
#[derive(Parser)]
#[command(name = "lingma-sim", version = lingma_sim::VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the WebSocket and HTTP ports until SIGINT/SIGTERM (like `Lingma start`).
    Start(Box<SimConfig>),
    /// Print the login state of a workDir without starting (like `Lingma status`).
    Status {
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Json)]
        output: Output,
        /// Working directory to read.
        #[arg(long = "workDir", env = "LINGMA_WORK_DIR")]
        work_dir: PathBuf,
    },
    /// Print the version.
    Version,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "lingma-sim {} (a test double of Lingma)",
                lingma_sim::VERSION
            );
            Ok(())
        }
        Command::Status {
            output: Output::Json,
            work_dir,
        } => {
            println!("{}", lingma_sim::login::status_of_work_dir(&work_dir));
            Ok(())
        }
        Command::Start(config) => {
            let mut config = *config;
            config.crash_exits_process = true;
            let work_dir = config
                .work_dir
                .clone()
                .context("--workDir (or LINGMA_WORK_DIR) is required")?;
            init_logging(&work_dir, &config.log_level)?;
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(run(config))
        }
    }
}

async fn run(config: SimConfig) -> anyhow::Result<()> {
    let handle = lingma_sim::start(config).await?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: stopping"),
        _ = handle.stopped() => {}
    }
    handle.shutdown().await;
    Ok(())
}

/// Logs go to stderr and to `workDir/logs/lingma.log`, where a supervisor looks for the
/// "Communication servers ready" line.
fn init_logging(work_dir: &std::path::Path, level: &str) -> anyhow::Result<()> {
    let logs = work_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let path = logs.join("lingma.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file)),
        )
        .try_init()
        .context("cannot install the logger")?;
    Ok(())
}
