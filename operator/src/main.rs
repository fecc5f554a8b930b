use clap::Parser;
use lingma_operator::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", lingma_operator::crd::crd_yaml()?);
            Ok(())
        }
        Some(Command::SelectAccount(args)) => {
            lingma_operator::accounts::select_account_file(
                &args.input,
                &args.output,
                &args.pod_name,
            )?;
            Ok(())
        }
        Some(Command::Run) | None => {
            init_tracing(&cli.run.log_level, &cli.run.log_format);
            lingma_operator::run::run(cli.run).await
        }
    }
}

fn init_tracing(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
