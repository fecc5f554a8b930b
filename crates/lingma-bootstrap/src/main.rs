//! `lingma-bootstrap`: installs the Lingma binary and prints where it is, as one JSON line on
//! stdout. For an init container; the sidecar exposes the same as `sidecar bootstrap`.

use std::io::IsTerminal;

use clap::Parser;
use lingma_bootstrap::{BootstrapConfig, ensure_binary};

#[derive(Debug, Parser)]
#[command(name = "lingma-bootstrap", version, about)]
struct Cli {
    #[command(flatten)]
    bootstrap: BootstrapConfig,

    /// Log level: trace, debug, info, warn, error (or an EnvFilter directive).
    #[arg(long = "log-level", env = "LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Log format: text | json.
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .map_err(|err| anyhow::anyhow!("LOG_LEVEL {:?}: {err}", cli.log_level))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format.as_str() {
        "json" => logs.json().init(),
        "text" => logs.init(),
        other => anyhow::bail!("LOG_FORMAT must be text or json, got {other:?}"),
    }
    let installed = ensure_binary(&cli.bootstrap).await?;
    println!("{}", serde_json::to_string(&installed)?);
    Ok(())
}
