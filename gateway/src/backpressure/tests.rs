//! The scheduler with real `Sidecar` values (no sockets): queue bound and deadline, the
//! global limit, DRR between keys, late binding, and the wait estimate.

use super::*;
use crate::pool::{Pool, Sidecar};

fn limiter(limit: Option<usize>, max_queued: usize) -> Arc<InFlightLimiter> {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    Arc::new(InFlightLimiter::new(limit, max_queued, metrics))
}

fn key(name: &str) -> Arc<VirtualKey> {
    Arc::new(VirtualKey::open(name))
}

fn usable_sidecar(pool: &Pool, name: &str, capacity: u32) -> Arc<Sidecar> {
    let budget = Arc::new(crate::pool::ejection::EjectionBudget::new(50));
    let sidecar = crate::pool::fixtures::connected_sidecar(pool, name, capacity, budget);
    // A member of the pool, as the wait estimate counts the pool's usable sidecars.
    let mut members: Vec<_> = pool.members().iter().cloned().collect();
    members.push(sidecar.clone());
    pool.set_members_for_test(members);
    sidecar
}

fn empty_pool() -> Arc<Pool> {
    crate::pool::fixtures::empty_pool(3, 50)
}

async fn admit(
    l: &InFlightLimiter,
    pool: &Pool,
    k: &Arc<VirtualKey>,
    deadline: Instant,
    sidecars: &[Arc<Sidecar>],
) -> Result<Admission, Refusal> {
    let global = l.acquire_global(k, deadline).await?;
    l.acquire_sidecar(global, pool, deadline, || sidecars.to_vec())
        .await
}

/// Wait until `n` requests are queued.
async fn queued(l: &InFlightLimiter, n: usize) {
    tokio::time::timeout(Duration::from_secs(2), async {
        while l.queued() < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("waiters queued");
}

fn is_timeout(r: &Result<Admission, Refusal>) -> bool {
    matches!(r, Err(Refusal::QueueTimeout { .. }))
}

#[tokio::test]
async fn sidecar_capacity_queues_then_times_out_or_hands_over() {
    let pool = empty_pool();
    let s = vec![usable_sidecar(&pool, "s", 1)];
    let l = limiter(None, 10);
    let k = key("a");
    let far = Instant::now() + Duration::from_secs(5);
    let first = admit(&l, &pool, &k, far, &s).await.expect("slot");
    assert_eq!(l.shared.in_flight_gauge.get(), 1);

    // Full: a waiter times out with 429, counted as queued while it waits.
    let soon = Instant::now() + Duration::from_millis(60);
    let refused = admit(&l, &pool, &k, soon, &s).await;
    assert!(is_timeout(&refused));
    assert_eq!((l.queued(), l.shared.in_flight_gauge.get()), (0, 1));

    // A waiter gets the slot as soon as it frees.
    let waiter = {
        let (l, pool, s, k) = (l.clone(), pool.clone(), s.clone(), k.clone());
        tokio::spawn(async move {
            admit(&l, &pool, &k, far, &s)
                .await
                .map(|a| (a.sidecar().name.to_string(), a.queue_wait()))
        })
    };
    queued(&l, 1).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = std::time::Instant::now();
    drop(first);
    let (got, waited) = waiter.await.expect("join").expect("admitted");
    assert_eq!(got, "s");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "handed over by the release"
    );
    assert!(
        waited >= Duration::from_millis(30),
        "queue wait reported: {waited:?}"
    );
}

#[tokio::test]
async fn no_usable_sidecar_is_refused_at_once() {
    let pool = empty_pool();
    let l = limiter(Some(4), 10);
    let far = Instant::now() + Duration::from_secs(5);
    let global = l.acquire_global(&key("a"), far).await.expect("global");
    let refused = l.acquire_sidecar(global, &pool, far, Vec::new).await.err();
    assert_eq!(refused, Some(Refusal::NoSidecar { paused_for: None }));
    assert_eq!(l.available(), Some(4), "nothing was taken");
}

#[tokio::test]
async fn the_global_limit_holds_even_with_free_slots_and_frees_on_drop() {
    let pool = empty_pool();
    let s = vec![usable_sidecar(&pool, "a", 1), usable_sidecar(&pool, "b", 1)];
    let l = limiter(Some(1), 10);
    let k = key("k");
    let far = Instant::now() + Duration::from_secs(5);
    let first = admit(&l, &pool, &k, far, &s).await.expect("first");
    assert_eq!(l.available(), Some(0));
    let soon = Instant::now() + Duration::from_millis(50);
    assert!(is_timeout(&admit(&l, &pool, &k, soon, &s).await));
    // A retry keeps its global permit and may take the other sidecar at once.
    let permit = first.into_global();
    assert_eq!(l.available(), Some(0), "the permit moved to the retry");
    let retry = l
        .acquire_sidecar(permit, &pool, far, || vec![s[1].clone()])
        .await
        .expect("retry admitted");
    assert_eq!(&*retry.sidecar().name, "b");
    drop(retry);
    assert_eq!(l.available(), Some(1));
    assert!(admit(&l, &pool, &k, soon, &s).await.is_ok());
}

#[tokio::test]
async fn queue_bound_refuses_at_once_with_an_estimate() {
    let pool = empty_pool();
    let s = vec![usable_sidecar(&pool, "s", 1)];
    let l = limiter(None, 1);
    let k = key("a");
    let far = Instant::now() + Duration::from_secs(5);
    let _held = admit(&l, &pool, &k, far, &s).await.expect("held");
    let waiter = {
        let (l, pool, s, k) = (l.clone(), pool.clone(), s.clone(), k.clone());
        tokio::spawn(async move { admit(&l, &pool, &k, far, &s).await.map(|_| ()) })
    };
    queued(&l, 1).await;
    let started = std::time::Instant::now();
    match admit(&l, &pool, &k, far, &s).await {
        Err(Refusal::QueueFull { retry_after }) => {
            // No service time observed yet: the prior, at position 2 of one slot.
            assert_eq!(retry_after, Duration::from_secs(10));
        }
        other => panic!("expected queue_full, got {:?}", other.err()),
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    waiter.abort();
}

/// Spawn `n` waiters of `k` that report `tag` in the order they are admitted, each
/// holding its slot until told.
fn spawn_waiters(
    l: &Arc<InFlightLimiter>,
    pool: &Arc<Pool>,
    k: &Arc<VirtualKey>,
    sidecars: &[Arc<Sidecar>],
    tx: &tokio::sync::mpsc::UnboundedSender<(String, tokio::sync::oneshot::Sender<()>)>,
) -> tokio::task::JoinHandle<()> {
    let (l, pool, k, s, tx) = (
        l.clone(),
        pool.clone(),
        k.clone(),
        sidecars.to_vec(),
        tx.clone(),
    );
    tokio::spawn(async move {
        let far = Instant::now() + Duration::from_secs(10);
        let admission = admit(&l, &pool, &k, far, &s).await.expect("admitted");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let _ = tx.send((k.name.to_string(), done_tx));
        let _ = done_rx.await;
        drop(admission);
    })
}

#[tokio::test]
async fn a_flooding_key_does_not_starve_another_key() {
    let pool = empty_pool();
    let s = vec![usable_sidecar(&pool, "s", 1)];
    let l = limiter(None, 100);
    let (heavy, light) = (key("heavy"), key("light"));
    let far = Instant::now() + Duration::from_secs(10);
    let held = admit(&l, &pool, &heavy, far, &s).await.expect("held");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..6 {
        spawn_waiters(&l, &pool, &heavy, &s, &tx);
        queued(&l, i + 1).await;
    }
    for i in 0..2 {
        spawn_waiters(&l, &pool, &light, &s, &tx);
        queued(&l, 7 + i).await;
    }
    drop(held);
    let mut order = String::new();
    for _ in 0..8 {
        let (name, done) = rx.recv().await.expect("served");
        order.push(if name == "light" { 'L' } else { 'H' });
        let _ = done.send(());
    }
    assert_eq!(order, "HLHLHHHH", "turns alternate while both keys wait");
}

#[tokio::test]
async fn a_free_slot_goes_to_a_waiter_that_can_use_it() {
    let pool = empty_pool();
    let (a, b) = (usable_sidecar(&pool, "a", 1), usable_sidecar(&pool, "b", 1));
    let l = limiter(None, 10);
    let k = key("k");
    let far = Instant::now() + Duration::from_secs(5);
    let on_a = admit(&l, &pool, &k, far, std::slice::from_ref(&a))
        .await
        .expect("a");
    let on_b = admit(&l, &pool, &k, far, std::slice::from_ref(&b))
        .await
        .expect("b");
    // First in line waits for `a` only, second takes either.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    spawn_waiters(&l, &pool, &key("k"), std::slice::from_ref(&a), &tx);
    queued(&l, 1).await;
    spawn_waiters(&l, &pool, &key("k"), &[a.clone(), b.clone()], &tx);
    queued(&l, 2).await;
    drop(on_b);
    let (_, done) = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("the second waiter took b at once")
        .expect("served");
    assert_eq!(l.queued(), 1, "the one waiting for a still waits");
    assert_eq!(b.in_flight(), 1);
    drop(on_a);
    let (_, done_a) = rx.recv().await.expect("a handed over");
    assert_eq!(a.in_flight(), 1);
    let _ = (done.send(()), done_a.send(()));
}

#[tokio::test]
async fn retry_after_grows_with_the_queue_and_learns_service_time() {
    let pool = empty_pool();
    let s = vec![usable_sidecar(&pool, "s", 1)];
    let l = limiter(None, 100);
    let k = key("a");
    let far = Instant::now() + Duration::from_secs(5);
    // One chat held 100 ms: the estimate learns it.
    let a = admit(&l, &pool, &k, far, &s).await.expect("admitted");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a);
    let one = l.estimated_wait_for(&pool, &k);
    assert!(
        one >= Duration::from_millis(90) && one < Duration::from_millis(300),
        "{one:?}"
    );
    let _held = admit(&l, &pool, &k, far, &s).await.expect("held");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        spawn_waiters(&l, &pool, &k, &s, &tx);
        queued(&l, i + 1).await;
    }
    let five = l.estimated_wait_for(&pool, &k);
    assert!(five >= one * 4, "{five:?} vs {one:?}");
    // Another key would be served in the next turn: its wait is short.
    assert!(l.estimated_wait_for(&pool, &key("b")) < five / 2);
}
