//! Wiring: build the shared state from the configuration, start the Lingma supervisor and
//! the HTTP server, and shut down in order on a signal.

use crate::accounts::{self, Account, AccountSources};
use crate::config::Config;
use crate::config::LoginDriverChoice;
use crate::lingma_process::{self, ProcessSpec};
use crate::login::{
    AutoLoginDriver, BrowserLoginDriver, LoginDriver, LoginSettings, LoopbackLoginDriver,
};
use crate::state::{ChatSettings, SidecarState};
use crate::supervisor::{self, ConnectionSettings};
use crate::{http, shutdown};
use axum::serve::ListenerExt;
use lingma_protocol::ClientOptions;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the sidecar could not start. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("no Lingma binary (set LINGMA_BIN, or LINGMA_ATTACH=true): {0}")]
    Bootstrap(#[from] lingma_bootstrap::BootstrapError),
}

/// How often expired session-map entries are dropped.
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(60);

/// Run the sidecar until SIGTERM/SIGINT, then drain and stop.
pub async fn run(config: Config) -> Result<(), StartError> {
    serve(config, shutdown::signal()).await
}

/// Run the sidecar until `shutdown` resolves, then drain and stop. For embedding (the
/// single-host mode runs several in one process, each with its own state and metrics).
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let token = Arc::new(config.gateway_token_source()?);
    if !token.is_set() {
        tracing::warn!(
            "no SIDECAR_TOKEN or SIDECAR_TOKEN_FILE: the gateway endpoint accepts anyone"
        );
    }
    let account = select_account(&config)?;
    let process = process_spec(&config).await?;
    let state = shared_state(&config)?;
    let listener = bind(&config).await?;

    let stop_lingma = CancellationToken::new();
    let tasks = spawn_lingma_side(&config, account, process, &state, &stop_lingma);
    let server = spawn_http(
        listener,
        http::router(http::HttpState::new(state.clone(), token)),
        state.closing.clone(),
    );

    shutdown.await;
    shutdown::drain(&state, config.drain_timeout()).await;
    state.closing.cancel();
    stop_lingma.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!("sidecar stopped");
    Ok(())
}

/// This replica's account: slot i of the configured accounts (mod their count).
fn select_account(config: &Config) -> Result<Option<Account>, StartError> {
    let account_list = accounts::load_accounts(&AccountSources {
        file: config.lingma_accounts_file.as_deref(),
        list: config.lingma_accounts.as_deref(),
        username: config.lingma_username.as_deref(),
        password: config.lingma_password.as_deref(),
    })?;
    let slot = accounts::account_slot(&config.lingma_account_slot, &accounts::host_name())?;
    let account = accounts::account_for_slot(&account_list, slot).cloned();
    tracing::info!(
        slot,
        accounts = account_list.len(),
        has_account = account.is_some(),
        "account selected"
    );
    Ok(account)
}

/// The Lingma process to start and supervise; `None` when attaching to a running one.
async fn process_spec(config: &Config) -> Result<Option<ProcessSpec>, StartError> {
    if config.lingma_attach {
        return Ok(None);
    }
    let bin = lingma_process::resolve_bin(&config.bootstrap_config()).await?;
    Ok(Some(ProcessSpec {
        bin,
        work_dir: config.lingma_work_dir.clone(),
        socket_port: config.lingma_socket_port,
        http_port: config.lingma_http_port,
        startup_timeout: config.startup_timeout(),
    }))
}

fn shared_state(config: &Config) -> Result<Arc<SidecarState>, StartError> {
    let mut state = SidecarState::new(
        config.instance_name(),
        ChatSettings {
            default_model: config.default_model.clone(),
            ask_mode: config.default_ask_mode,
            session_reuse: config.session_reuse_enabled,
            auto_login: config.auto_login_enabled,
        },
        config.lingma_max_concurrent_chats,
        config.session_cache_max_entries,
        config.session_ttl(),
    );
    state.keepalive = config.keepalive();
    state.announce_window = config.announce_window();
    state.quota = crate::quota::PauseStreak::new(config.quota_settings()?);
    Ok(Arc::new(state))
}

async fn bind(config: &Config) -> Result<tokio::net::TcpListener, StartError> {
    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Listen {
            addr: addr.to_string(),
            reason: e.kind().to_string(),
        })?;
    tracing::info!(%addr, name = config.instance_name(), attach = config.lingma_attach, "sidecar listening");
    Ok(listener)
}

/// The Lingma side: the process supervisor (unless attaching), the connection and login
/// supervisor, and the session-map purge; all stop when `stop` fires.
fn spawn_lingma_side(
    config: &Config,
    account: Option<Account>,
    process: Option<ProcessSpec>,
    state: &Arc<SidecarState>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(spec) = process {
        tasks.push(tokio::spawn(lingma_process::supervise(
            spec,
            state.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(supervisor::run(
        connection_settings(config, account),
        state.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(purge_sessions(state.clone(), stop.clone())));
    tasks.push(tokio::spawn(crate::quota::run(state.clone(), stop.clone())));
    tasks
}

fn connection_settings(config: &Config, account: Option<Account>) -> ConnectionSettings {
    ConnectionSettings {
        url: config.lingma_url(),
        root_uri: format!("file://{}", config.lingma_work_dir.display()),
        client: ClientOptions {
            rpc_timeout: config.rpc_timeout(),
            chat_idle_timeout: config.chat_idle_timeout(),
            ..ClientOptions::default()
        },
        startup_timeout: config.startup_timeout(),
        dedicated_domain: config.dedicated_domain().map(str::to_owned),
        login: LoginSettings {
            auto_login: config.auto_login_enabled,
            attempt_timeout: config.login_timeout(),
            max_retry: config.auto_login_max_retry,
            check_interval: config.login_check_interval(),
            account,
            driver: login_driver(config),
        },
    }
}

/// Serve HTTP until `closing` fires. Accepted sockets get TCP_NODELAY: mux frames and
/// probe answers are small writes that must not wait for the peer's delayed ACK.
fn spawn_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    closing: CancellationToken,
) -> JoinHandle<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { closing.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    })
}

/// AUTO_LOGIN_DRIVER: loopback follows the simulator's URLs with plain HTTP, browser runs
/// headless Chromium (real Lingma), auto tries loopback and falls back to the browser.
fn login_driver(config: &Config) -> Arc<dyn LoginDriver> {
    let loopback = || LoopbackLoginDriver::new(config.rpc_timeout());
    let browser = || BrowserLoginDriver::from_config(config);
    match config.auto_login_driver {
        LoginDriverChoice::Loopback => Arc::new(loopback()),
        LoginDriverChoice::Browser => Arc::new(browser()),
        LoginDriverChoice::Auto => Arc::new(AutoLoginDriver::new(loopback(), browser())),
    }
}

async fn purge_sessions(state: Arc<SidecarState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SESSION_PURGE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let dropped = state.sessions.purge_expired();
                if dropped > 0 {
                    tracing::debug!(dropped, "expired sessions dropped");
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}
