//! Account pauses through a whole reconcile: a ready pod whose sidecar reports a pause leaves
//! the ready count with its reason, the `Ready` condition says `AccountPaused`, and one
//! Warning event marks the start of the pause (none while the same pause goes on).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mux_protocol::{AccountPause, PauseReason};

use super::*;
use crate::crd::{ReplicaPause, ReplicaStatus};
use crate::reconcile::events::pause_event;

/// The status of two ready, logged-in replicas, as the previous reconcile wrote it.
fn all_ready(generation: i64) -> Value {
    json!({
        "observedGeneration": generation, "replicas": 2, "readyReplicas": 2, "loggedInReplicas": 2,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "AllReplicasReady", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "LoggedIn", "status": "True", "reason": "AllLoggedIn", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]
    })
}

#[tokio::test]
async fn a_paused_account_leaves_the_ready_count_with_its_reason_and_an_event() {
    let (ctx, api, probe) = context(None);
    probe.answer_for(
        "10.0.0.2",
        SidecarLogin {
            login: LoginState::LoggedIn,
            paused: Some(AccountPause {
                reason: PauseReason::QuotaExhausted,
                retry_after_ms: 119_500,
                pauses: 2,
            }),
        },
    );
    let verifier = tokio::spawn(verify(
        api,
        Scenario {
            accounts: "u1:p1,u2:p2",
            token: Some("tok"),
            sts_status: json!({"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                "observedGeneration": 1, "currentRevision": "r1", "updateRevision": "r1"}),
            pods: vec![pod(0, true), pod(1, true)],
        },
        1,
    ));
    let before = Timestamp::now();
    let action = run(ctx, instance(2, 3, Some(all_ready(3))))
        .await
        .expect("reconcile succeeds");
    let seen = verifier.await.expect("verifier passed");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(15)),
        "the end of the pause is looked for soon"
    );

    let status = &seen.status;
    assert_eq!(
        (
            status["readyReplicas"].as_i64(),
            status["pausedReplicas"].as_i64(),
            status["loggedInReplicas"].as_i64()
        ),
        (Some(1), Some(1), Some(2)),
        "paused: logged in, but out of rotation"
    );
    let replica = &status["instances"][1];
    assert_eq!(replica["ready"], false);
    assert_eq!(replica["login"], "logged_in");
    assert_eq!(replica["paused"]["reason"], "quota_exhausted");
    assert_eq!(replica["paused"]["pauses"], 2);
    let resume: Timestamp = replica["paused"]["resumeTime"]
        .as_str()
        .expect("resumeTime")
        .parse()
        .expect("RFC 3339");
    let left = resume.duration_since(before);
    assert!(
        left >= SignedDuration::from_secs(119) && left <= SignedDuration::from_secs(125),
        "resumes when the sidecar said: {left:?}"
    );
    assert!(status["instances"][0].get("paused").is_none());
    assert_eq!(status["instances"][0]["ready"], true);

    let ready = condition_of(status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("AccountPaused"))
    );
    let message = ready["message"].as_str().expect("message");
    assert!(
        message.starts_with("1/2 replicas ready; account paused: team-1: quota_exhausted until ")
            && message.ends_with("(pause 2)"),
        "{message}"
    );
    assert_eq!(condition_of(status, "LoggedIn")["status"], "True");
    assert_eq!(
        condition_of(status, "Degraded")["status"],
        "False",
        "a pause ends by itself: nobody has to act"
    );

    assert_eq!(seen.events.len(), 1);
    let event = &seen.events[0];
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("AccountPaused"))
    );
    let note = event["note"].as_str().expect("note");
    assert!(
        note.contains("team-1: quota_exhausted") && !note.contains("team-0"),
        "{note}"
    );
}

fn paused_replica(reason: &str, resume_second: i64, pauses: i32) -> ReplicaStatus {
    ReplicaStatus {
        name: "team-1".to_owned(),
        account_slot: 1,
        ready: false,
        login: "logged_in".to_owned(),
        reason: None,
        paused: Some(ReplicaPause {
            reason: reason.to_owned(),
            resume_time: Time(Timestamp::from_second(resume_second).expect("time")),
            pauses,
        }),
    }
}

/// An instance whose last status shows `team-1` paused until t=1000, pause 2.
fn already_paused() -> LingmaInstance {
    let mut instance = instance(2, 3, Some(all_ready(3)));
    if let Some(status) = instance.status.as_mut() {
        status.instances = vec![paused_replica("quota_exhausted", 1000, 2)];
    }
    instance
}

#[test]
fn only_a_pause_that_started_since_the_last_status_is_an_event() {
    let instance = already_paused();
    let event = |replica: ReplicaStatus| pause_event(&instance, &[replica]).map(|e| e.reason);

    assert_eq!(
        event(paused_replica("quota_exhausted", 1002, 2)),
        None,
        "the same pause, seen again (its end jitters by the answer's time)"
    );
    assert_eq!(
        event(paused_replica("quota_exhausted", 1900, 3)).as_deref(),
        Some("AccountPaused"),
        "the next pause of the streak"
    );
    assert_eq!(
        event(paused_replica("quota_exhausted", 1600, 2)).as_deref(),
        Some("AccountPaused"),
        "a pause that ends much later is another one (the streak restarted in between)"
    );
    assert_eq!(
        event(paused_replica("rate_limited", 1000, 2)).as_deref(),
        Some("AccountPaused"),
        "another reason"
    );
    let mut resumed = paused_replica("quota_exhausted", 1000, 2);
    resumed.paused = None;
    assert_eq!(event(resumed), None, "the end of a pause is no warning");
    let fresh = self::instance(2, 3, Some(all_ready(3)));
    assert!(pause_event(&fresh, &[paused_replica("rate_limited", 50, 1)]).is_some());
}
