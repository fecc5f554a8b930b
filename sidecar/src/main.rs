use clap::Parser;
use sidecar::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
    sidecar::telemetry::init(&config.log_level, config.log_format)?;
    if let Some(Command::Bootstrap) = cli.command {
        bootstrap(&config).await;
    }
    sidecar::run::run(config).await?;
    Ok(())
}

/// `sidecar bootstrap`: install (or find) the Lingma binary, print it as JSON on stdout (logs
/// go to stderr), exit 0; on failure print the reason and exit 1.
async fn bootstrap(config: &sidecar::config::Config) -> ! {
    match lingma_bootstrap::ensure_binary(&config.bootstrap_config()).await {
        Ok(installed) => match serde_json::to_string_pretty(&installed) {
            Ok(json) => {
                println!("{json}");
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("sidecar bootstrap: cannot print the result: {e}");
                std::process::exit(1)
            }
        },
        Err(e) => {
            eprintln!("sidecar bootstrap: {e}");
            std::process::exit(1)
        }
    }
}
