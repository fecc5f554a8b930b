//! `lingma-local`: the whole lingma-gateway stack on one host, without a cluster.
//!
//! `lingma-local` (or `lingma-local demo`) runs gateway + sidecars + the Lingma SIMULATOR
//! (`lingma-sim`, a test double, no account needed) on 127.0.0.1.

mod binaries;
mod children;
mod demo;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Demo(args)) => demo::run(args).await,
        None => demo::run(cli.demo).await,
    }
}
