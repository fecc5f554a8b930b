//! Tries one browser login by hand, e.g. against a real Lingma account (see
//! docs/auto-login.md):
//!
//! ```sh
//! LOGIN_USERNAME=me@example.com LOGIN_PASSWORD=... \
//!   cargo run -p browser-login --example login -- '<URL from auth/login>' /tmp/shots
//! ```
//!
//! Prints the outcome (the callback URL is not printed: it carries the token). Set
//! AUTO_LOGIN_HEADLESS=false on a desktop to watch the browser.

use std::time::Duration;

use anyhow::{Context, bail};
use browser_login::{BrowserLoginConfig, SecretString, login};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "browser_login=debug".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        bail!("usage: login <login-url> [screenshot-dir]");
    };
    let shots = args.next().unwrap_or_else(|| ".".to_owned());
    let username = std::env::var("LOGIN_USERNAME").context("LOGIN_USERNAME is not set")?;
    let password =
        SecretString::from(std::env::var("LOGIN_PASSWORD").context("LOGIN_PASSWORD is not set")?);
    let mut cfg = BrowserLoginConfig::new(shots);
    cfg.headless = std::env::var("AUTO_LOGIN_HEADLESS").map_or(true, |v| v != "false");
    if let Some(secs) = std::env::var("AUTO_LOGIN_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.timeout = Duration::from_secs(secs);
    }
    match login(&cfg, &url, &username, &password).await {
        Ok(outcome) => {
            println!(
                "reached the callback in {:?} (state {})",
                outcome.elapsed,
                outcome.state.as_deref().unwrap_or("-")
            );
            Ok(())
        }
        Err(e) => {
            println!("{e}");
            if let Some(shot) = e.screenshot() {
                println!("screenshot: {}", shot.display());
            }
            std::process::exit(1);
        }
    }
}
