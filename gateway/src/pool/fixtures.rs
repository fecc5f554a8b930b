//! Test fixtures: a pool that connects to nothing and sidecars that look connected and
//! ready, for the unit tests of the pool, routing and admission (no sockets).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use mux_protocol::{
    ConnectionState, LoginState, PROTOCOL_VERSION, SidecarEndpoint, SidecarStatus, SidecarToken,
};

use super::ejection::EjectionBudget;
use super::{Deadlines, Link, Pool, PoolSettings, Sidecar};
use crate::observability::metrics::Metrics;

/// A ready, logged-in Status advertising `capacity` chats.
pub(crate) fn ready_status(name: &str, capacity: u32) -> SidecarStatus {
    SidecarStatus {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        ready: true,
        connection: ConnectionState::Ready,
        login: LoginState::LoggedIn,
        capacity,
        in_flight: 0,
        queued: 0,
        draining: false,
        models: vec![],
        paused: None,
    }
}

/// A pool with no members and no discovery, ejecting after `eject_failures` failures.
pub(crate) fn empty_pool(eject_failures: u32, max_ejection_percent: u8) -> Arc<Pool> {
    let (_tx, rx) = tokio::sync::watch::channel(Vec::new());
    Pool::start(
        rx,
        PoolSettings {
            default_token: Arc::new(SidecarToken::fixed(None)),
            eject_failures,
            eject_cooldown: Duration::from_secs(1),
            max_ejection_percent,
            deadlines: Deadlines::default(),
        },
        Arc::new(Metrics::new().expect("metrics")),
        tokio_util::sync::CancellationToken::new(),
    )
}

/// A sidecar of `pool` (sharing its wake-ups) with a link whose frames go nowhere and a
/// ready Status; not added to the pool's members.
pub(crate) fn connected_sidecar(
    pool: &Pool,
    name: &str,
    capacity: u32,
    budget: Arc<EjectionBudget>,
) -> Arc<Sidecar> {
    let metrics = Metrics::new().expect("metrics");
    let sidecar = Arc::new(Sidecar::new(
        SidecarEndpoint {
            name: name.into(),
            url: "ws://127.0.0.1:1".into(),
            token: None,
        },
        Instant::now(),
        pool.slot_freed_handle(),
        Arc::new(AtomicU64::new(0)),
        budget,
        &metrics,
    ));
    sidecar.set_status(ready_status(name, capacity));
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    sidecar.set_link(Some(Arc::new(Link::new(tx, Deadlines::default()))));
    sidecar
}
