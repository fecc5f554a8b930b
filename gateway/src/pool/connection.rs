//! The mux client: keeps one WebSocket to a sidecar, reconnecting with backoff, and feeds
//! its messages to the sidecar's state and streams.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mux_protocol::{
    ClientMessage, MUX_PATH, PROTOCOL_VERSION, SUBPROTOCOL, ServerMessage, SidecarToken,
};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_util::sync::CancellationToken;

use super::Deadlines;
use super::link::{Link, OUTBOUND_BUFFER};
use super::owners::{ConnId, OwnerIndex};
use super::sidecar::Sidecar;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection whose sidecar sends nothing (not even a pong) for this many keepalive
/// periods is dead. Checked at every ping, so a silent sidecar is noticed within
/// `SILENT_PERIODS + 1` periods of its last frame.
const SILENT_PERIODS: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SHUTTING_DOWN: &str = "The gateway is shutting down; retry the request.";

/// Run until `stop` fires or the sidecar was removed and has no open streams.
pub(crate) async fn run(
    sidecar: Arc<Sidecar>,
    owners: Arc<OwnerIndex>,
    token: Arc<SidecarToken>,
    deadlines: Deadlines,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if stop.is_cancelled() || sidecar.is_removed() {
            break;
        }
        let attempt = tokio::select! {
            _ = stop.cancelled() => break,
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&sidecar, &token)) => r,
        };
        match attempt {
            Ok(Ok(ws)) => {
                tracing::info!(sidecar = %sidecar.name, "mux connection up");
                let conn = ConnId::next();
                let served_ok = serve(&sidecar, ws, (&owners, conn), deadlines, &stop).await;
                // Whatever this connection announced is no longer known to be true.
                owners.clear(conn);
                tracing::warn!(sidecar = %sidecar.name, "mux connection down");
                if served_ok {
                    backoff = BACKOFF_MIN;
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(sidecar = %sidecar.name, error = %e, "mux connect failed");
            }
            Err(_) => tracing::debug!(sidecar = %sidecar.name, "mux connect timed out"),
        }
        let jitter = rand::rng().random_range(0.5..1.0);
        let wait = backoff.mul_f64(jitter);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("bad sidecar URL")]
    Url,
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
}

/// `token` is read at every attempt: a rotated SIDECAR_TOKEN_FILE is used on reconnect.
async fn connect(sidecar: &Sidecar, token: &SidecarToken) -> Result<Ws, ConnectError> {
    let url = format!(
        "{}{MUX_PATH}?v={PROTOCOL_VERSION}",
        sidecar.endpoint.url.trim_end_matches('/')
    );
    let mut request = url.into_client_request().map_err(|_| ConnectError::Url)?;
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let token = sidecar.endpoint.token.clone().or_else(|| token.current());
    if let Some(token) = token {
        let value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ConnectError::Url)?;
        headers.insert(header::AUTHORIZATION, value);
    }
    // TCP_NODELAY: a `Chat` or `Cancel` frame is one small write that must not wait for
    // the sidecar's delayed ACK.
    let (ws, _response) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    Ok(ws)
}

/// One write to the sidecar, within `limit`. A sidecar that stops reading must not hold
/// the connection loop in a write forever: its silence check would never run again and
/// the sidecar would keep taking chats. False = failed or timed out.
async fn write_within(
    limit: Duration,
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    message: Message,
) -> bool {
    matches!(
        tokio::time::timeout(limit, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Serve one connection until it ends. True when it got as far as a `Status`.
async fn serve(
    sidecar: &Arc<Sidecar>,
    ws: Ws,
    (owners, conn): (&OwnerIndex, ConnId),
    deadlines: Deadlines,
    stop: &CancellationToken,
) -> bool {
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<ClientMessage>(OUTBOUND_BUFFER);
    let link = Arc::new(Link::new(tx, deadlines));
    let mut got_status = false;
    let mut ping = tokio::time::interval(deadlines.keepalive);
    ping.tick().await;
    let mut removed_check = tokio::time::interval(Duration::from_secs(1));
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            outgoing = rx.recv() => {
                let Some(message) = outgoing else { break };
                let Ok(text) = serde_json::to_string(&message) else { continue };
                if !write_within(deadlines.write, &mut sink, Message::Text(text.into())).await {
                    tracing::warn!(sidecar = %sidecar.name, "mux write failed or timed out, closing");
                    break;
                }
            }
            incoming = source.next() => {
                last_heard = tokio::time::Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        match serde_json::from_str::<ServerMessage>(text.as_str()) {
                            Ok(ServerMessage::Status(status)) => {
                                if status.protocol_version != PROTOCOL_VERSION {
                                    tracing::warn!(sidecar = %sidecar.name, version = status.protocol_version, "sidecar speaks another mux version");
                                    break;
                                }
                                sidecar.set_status(status);
                                if !got_status {
                                    got_status = true;
                                    sidecar.set_link(Some(link.clone()));
                                }
                            }
                            Ok(ServerMessage::Sessions(keys)) => {
                                // A sidecar that left the pool keeps its connection only to
                                // finish open chats: it owns nothing new.
                                if !sidecar.is_removed() {
                                    owners.apply(conn, &sidecar.name, &keys);
                                }
                            }
                            Ok(ServerMessage::Load(load)) => sidecar.set_load(load),
                            Ok(other) => link.dispatch(other),
                            Err(_) if mux_protocol::is_unknown_server_type(text.as_str()) => {
                                // A newer sidecar's additive message: ignore it (versioning
                                // in docs/mux-protocol.md).
                                tracing::debug!(sidecar = %sidecar.name, "mux message of an unknown type ignored");
                            }
                            Err(e) => {
                                tracing::warn!(sidecar = %sidecar.name, error = %e, "unreadable mux message");
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > deadlines.keepalive * SILENT_PERIODS {
                    tracing::warn!(sidecar = %sidecar.name, "mux connection silent, closing");
                    break;
                }
                if !write_within(deadlines.write, &mut sink, Message::Ping(Vec::new().into())).await {
                    tracing::warn!(sidecar = %sidecar.name, "mux ping failed or timed out, closing");
                    break;
                }
            }
            _ = removed_check.tick() => {
                if sidecar.is_removed() && link.open_streams() == 0 {
                    break;
                }
            }
        }
    }
    sidecar.set_link(None);
    if stop.is_cancelled() {
        // The gateway is shutting down and the grace period is over: open streams end
        // with an error event, not a cut socket.
        link.fail_all(mux_protocol::ErrorKind::Unavailable, SHUTTING_DOWN);
    } else {
        link.close_all();
    }
    let _ = tokio::time::timeout(deadlines.write, sink.close()).await;
    got_status
}
