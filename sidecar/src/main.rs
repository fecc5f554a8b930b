use clap::Parser;
use sidecar::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Bootstrap) = cli.command {
        eprintln!(
            "sidecar bootstrap: not implemented yet (the lingma-bootstrap crate will provide it); \
             set LINGMA_BIN to an installed Lingma binary"
        );
        std::process::exit(2);
    }
    let config = cli.config;
    sidecar::telemetry::init(&config.log_level, config.log_format)?;
    sidecar::run::run(config).await?;
    Ok(())
}
