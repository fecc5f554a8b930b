//! The pool as one scheduler across gateway replicas: the sidecars announce which
//! conversation keys they hold and their load over all gateways, so any replica routes a
//! follow-up turn to its session and none sends a chat to a sidecar another replica
//! filled. Real processes: lingma-sim (test double of Lingma) + sidecar + gateways.
//!
//! Each conversation is made to land where rendezvous hashing would NOT send it (its hash
//! target is kept busy by a slow chat when it starts), so a gateway that routed by its own
//! pins or by hashing alone would miss the session.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use test_support::wait_until;

/// How long the simulator's `slow` fault holds the first token of the blocking chat.
const SLOW_MS: u64 = 3000;

/// `n` one-chat sidecars (LINGMA_MAX_CONCURRENT_CHATS=1) whose simulators answer slowly
/// when given the `slow` fault.
async fn one_chat_sidecars(prefix: &str, n: usize) -> Vec<SidecarProc> {
    one_chat_sidecars_with(prefix, n, &[]).await
}

/// [`one_chat_sidecars`] with more sidecar environment.
async fn one_chat_sidecars_with(prefix: &str, n: usize, env: &[(&str, &str)]) -> Vec<SidecarProc> {
    let slow = SLOW_MS.to_string();
    let env: Vec<(&str, &str)> = std::iter::once(("LINGMA_MAX_CONCURRENT_CHATS", "1"))
        .chain(env.iter().copied())
        .collect();
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            start_sidecar_with(
                &format!("{prefix}-{i}"),
                &["--slow-first-token-ms", &slow, "--slow-chunk-delay-ms", "5"],
                &env,
            )
            .await,
        );
    }
    out
}

/// Two gateway replicas over `sidecars`, each seeing all of them usable.
async fn two_replicas(sidecars: &[SidecarProc]) -> (GatewayProc, GatewayProc) {
    let list = sidecar_list(&sidecars.iter().collect::<Vec<_>>());
    let gw_a = start_gateway(&list, &[]).await;
    let gw_b = start_gateway(&list, &[]).await;
    gw_a.wait_usable(sidecars.len()).await;
    gw_b.wait_usable(sidecars.len()).await;
    (gw_a, gw_b)
}

fn named<'a>(sidecars: &'a [SidecarProc], name: &str) -> &'a SidecarProc {
    sidecars
        .iter()
        .find(|s| s.name == name)
        .expect("one of ours")
}

/// A chat body of `user` (the affinity key: every replica hashes it to the same sidecar).
fn body(user: &str, turns: &[(&str, &str)]) -> Value {
    let messages: Vec<Value> = turns
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    json!({"model": "gpt-4o", "user": user, "messages": messages})
}

/// The sidecar rendezvous hashing picks for `user` on an idle pool (same on every replica).
async fn hash_target(gw: &GatewayProc, user: &str) -> String {
    let resp = gw
        .chat(body(user, &[("user", "where does hashing send me")]))
        .await;
    assert_eq!(resp.status(), 200);
    header(&resp, "x-lingma-sidecar")
}

/// Keep `target` busy with one slow chat sent through `gw` (hashing sends it there); the
/// handle ends when the chat does.
async fn block(
    gw: &GatewayProc,
    target: &SidecarProc,
    user: &str,
) -> tokio::task::JoinHandle<String> {
    target
        .sim
        .control()
        .set_fault("slow", Some(1))
        .await
        .expect("sim control API");
    let (http, url) = (gw.http.clone(), gw.url("/v1/chat/completions"));
    let b = body(user, &[("user", "a long answer, please")]);
    let handle = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(API_KEY)
            .json(&b)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("blocking chat");
        assert_eq!(resp.status(), 200);
        header(&resp, "x-lingma-sidecar")
    });
    wait_until(WAIT, || async {
        pool_entry(gw, &target.name).await["in_flight"] == 1
    })
    .await
    .expect("the blocking chat runs");
    handle
}

async fn pool_entry(gw: &GatewayProc, name: &str) -> Value {
    let stats = gw.get_json("/internal/stats").await;
    stats["pool"]
        .as_array()
        .and_then(|p| p.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn answer(resp: &Value) -> String {
    resp["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Turn 1 of a conversation of `user`, sent through `gw` while its hash target is busy:
/// it lands elsewhere. Returns (where it landed, the hash target, the answer).
async fn first_turn_off_hash(
    gw: &GatewayProc,
    sidecars: &[SidecarProc],
    user: &str,
    turn1: &[(&str, &str)],
) -> (String, String, String) {
    let target = hash_target(gw, user).await;
    let blocker = block(gw, named(sidecars, &target), user).await;
    let resp = gw.chat(body(user, turn1)).await;
    assert_eq!(resp.status(), 200);
    let landed = header(&resp, "x-lingma-sidecar");
    assert_ne!(landed, target, "turn 1 went around its busy hash target");
    let text = answer(&resp.json().await.expect("json"));
    assert_eq!(
        blocker.await.expect("join"),
        target,
        "the blocker ran on the target"
    );
    (landed, target, text)
}

#[tokio::test]
async fn a_follow_up_sent_to_the_other_replica_continues_its_session() {
    let sidecars = one_chat_sidecars("own", 3).await;
    let (gw_a, gw_b) = two_replicas(&sidecars).await;

    let turn1 = [("system", "ownership test"), ("user", "hello there")];
    let (owner, target, text) = first_turn_off_hash(&gw_a, &sidecars, "alice", &turn1).await;

    // Turn 2 through the other replica, which never saw turn 1 and whose hash (free now)
    // says `target`: the owner the sidecars announce wins.
    let turn2 = [
        turn1[0],
        turn1[1],
        ("assistant", text.as_str()),
        ("user", "and then?"),
    ];
    let resp = gw_b.chat(body("alice", &turn2)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-lingma-session"), "reused");
    assert_eq!(header(&resp, "x-lingma-sidecar"), owner);
    assert_ne!(owner, target);
}

#[tokio::test]
async fn a_gateway_started_later_learns_the_sessions_on_connect() {
    let sidecars = one_chat_sidecars("late", 3).await;
    let list = sidecar_list(&sidecars.iter().collect::<Vec<_>>());
    let gw_a = start_gateway(&list, &[]).await;
    gw_a.wait_usable(3).await;
    let turn1 = [("system", "late replica"), ("user", "remember me")];
    let (owner, _, text) = first_turn_off_hash(&gw_a, &sidecars, "carol", &turn1).await;

    // A replica that did not exist when the session was made.
    let gw_new = start_gateway(&list, &[]).await;
    gw_new.wait_usable(3).await;
    wait_until(WAIT, || async {
        gw_new.get_json("/internal/stats").await["sessions"]["owner_keys"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await
    .expect("the new replica learned the held keys from the snapshots");

    let turn2 = [
        turn1[0],
        turn1[1],
        ("assistant", text.as_str()),
        ("user", "do you?"),
    ];
    let resp = gw_new.chat(body("carol", &turn2)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-lingma-session"), "reused");
    assert_eq!(header(&resp, "x-lingma-sidecar"), owner);
}

#[tokio::test]
async fn a_replica_does_not_send_to_a_sidecar_the_other_replica_filled() {
    let sidecars = one_chat_sidecars("load", 2).await;
    let (gw_a, gw_b) = two_replicas(&sidecars).await;

    let target = hash_target(&gw_b, "bob").await;
    let target_proc = named(&sidecars, &target);
    // Replica A fills the target; replica B has nothing on it itself.
    let blocker = block(&gw_a, target_proc, "bob").await;
    wait_until(WAIT, || async {
        pool_entry(&gw_b, &target).await["reported_load"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    })
    .await
    .expect("replica B heard the target's load");
    assert_eq!(pool_entry(&gw_b, &target).await["in_flight"], 0);

    served_elsewhere_at_once(&gw_b, "bob", "a quick one", &target).await;
    assert_eq!(blocker.await.expect("join"), target);
}

/// A first turn of `user` through `gw` is answered by another sidecar than the busy
/// `target`, well before the target's slow chat ends.
async fn served_elsewhere_at_once(gw: &GatewayProc, user: &str, text: &str, target: &str) {
    let started = Instant::now();
    let resp = gw.chat(body(user, &[("user", text)])).await;
    assert_eq!(resp.status(), 200);
    assert_ne!(
        header(&resp, "x-lingma-sidecar"),
        target,
        "not queued behind the other replica's chat"
    );
    assert!(
        started.elapsed() < Duration::from_millis(SLOW_MS / 2),
        "served at once by the free sidecar: {:?}",
        started.elapsed()
    );
}

/// Keep `target` busy with a slow chat through `gw` and wait until its simulator runs it
/// (the sidecar admitted it), whatever any gateway has heard of it yet.
async fn block_upstream(
    gw: &GatewayProc,
    target: &SidecarProc,
    user: &str,
) -> tokio::task::JoinHandle<String> {
    let handle = block(gw, target, user).await;
    wait_until(WAIT, || async {
        target.sim.control().stats().await.expect("sim control API")["chats_in_flight"] == 1
    })
    .await
    .expect("the blocking chat reached Lingma");
    handle
}

#[tokio::test]
async fn a_chat_that_loses_the_last_slot_to_another_replica_goes_elsewhere_at_once() {
    // Load announcements batched for 1 s, so replica B can hold a stale "free" view of a
    // sidecar that replica A has just filled: the race two replicas run when first turns
    // arrive together, made to last long enough to be hit on purpose.
    let sidecars =
        one_chat_sidecars_with("race", 2, &[("SIDECAR_ANNOUNCE_COALESCE_MS", "1000")]).await;
    let (gw_a, gw_b) = two_replicas(&sidecars).await;
    let target = hash_target(&gw_b, "erin").await;
    let target_proc = named(&sidecars, &target);

    // A few rounds at most: a round only counts when B still held the stale view when it
    // sent (a slow machine can outlast the 1 s window).
    let mut raced = false;
    for round in 0..3 {
        // A must see the target free, or hashing would not send it there.
        wait_until(WAIT, || async {
            pool_entry(&gw_a, &target).await["reported_load"] == 0
        })
        .await
        .expect("replica A sees the target free");
        // A first slow chat runs past one window, so its end (load 0) reaches B at once
        // and opens a new window; the second fills the target inside that window.
        let opener = block(&gw_a, target_proc, "erin").await;
        assert_eq!(opener.await.expect("join"), target);
        let blocker = block_upstream(&gw_a, target_proc, "erin").await;
        let stale = pool_entry(&gw_b, &target).await["reported_load"] == 0;

        let races_before = sample(&gw_b.metrics().await, "gateway_slot_races_total");
        let text = format!("a quick one, round {round}");
        served_elsewhere_at_once(&gw_b, "erin", &text, &target).await;
        let races = sample(&gw_b.metrics().await, "gateway_slot_races_total") - races_before;
        assert_eq!(blocker.await.expect("join"), target);
        if stale && races >= 1.0 {
            raced = true;
            break;
        }
    }
    assert!(raced, "replica B never sent while its view was stale");
    let m = gw_b.metrics().await;
    assert_eq!(
        sample(&m, "gateway_retries_total"),
        0.0,
        "a lost race is not a failed attempt"
    );
}

#[tokio::test]
async fn a_follow_up_whose_owner_is_busy_takes_a_vacant_sidecar_at_once() {
    let sidecars = one_chat_sidecars("vacant", 2).await;
    let list = sidecar_list(&sidecars.iter().collect::<Vec<_>>());
    // A sticky wait far longer than the blocking chat: without vacancy the follow-up
    // would wait for its owner (3 s) and continue its session there.
    let gw = start_gateway(&list, &[("GATEWAY_STICKY_WAIT_MS", "20000")]).await;
    gw.wait_usable(2).await;

    let turn1 = [("system", "vacancy test"), ("user", "hello")];
    let resp = gw.chat(body("frank", &turn1)).await;
    assert_eq!(resp.status(), 200);
    let owner = header(&resp, "x-lingma-sidecar");
    let text = answer(&resp.json().await.expect("json"));
    let owner_proc = named(&sidecars, &owner);
    // Another conversation of the same user hashes to the owner and keeps it busy; the
    // other sidecar has run nothing at all.
    let blocker = block_upstream(&gw, owner_proc, "frank").await;

    let turn2 = [
        turn1[0],
        turn1[1],
        ("assistant", text.as_str()),
        ("user", "and now?"),
    ];
    let started = Instant::now();
    let resp = gw.chat(body("frank", &turn2)).await;
    assert_eq!(resp.status(), 200);
    assert_ne!(header(&resp, "x-lingma-sidecar"), owner);
    assert_eq!(header(&resp, "x-lingma-session"), "migrated");
    assert!(
        started.elapsed() < Duration::from_millis(SLOW_MS / 2),
        "did not wait for the busy owner: {:?}",
        started.elapsed()
    );
    assert_eq!(blocker.await.expect("join"), owner);
}
