use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::builders::fixtures::instance;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("valid timestamp"))
}

fn sts(replicas: i32, ready: i32) -> StatefulSet {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "team", "generation": 2},
        "status": {"observedGeneration": 2, "replicas": replicas, "readyReplicas": ready,
            "updatedReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"}
    }))
    .expect("valid StatefulSet")
}

fn replica(ordinal: i32, ready: bool, login: Option<LoginState>) -> ReplicaObservation {
    ReplicaObservation {
        name: format!("team-{ordinal}"),
        ordinal,
        ready,
        login,
    }
}

fn find<'a>(status: &'a LingmaInstanceStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn all_ready_means_ready_logged_in_and_stable() {
    let li = instance(serde_json::json!({"replicas": 2, "accounts": {"secretRef": {"name": "a"}}}));
    let set = sts(2, 2);
    let status = compute_status(&Observation {
        instance: &li,
        statefulset: Some(&set),
        replicas: vec![replica(0, true, None), replica(1, true, None)],
        accounts: Ok(1),
        selector: "sel".to_owned(),
        now: at(100),
    });
    assert_eq!(
        (
            status.replicas,
            status.ready_replicas,
            status.logged_in_replicas
        ),
        (2, 2, 2)
    );
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(
        status.instances[1].account_slot, 0,
        "2 replicas over 1 account: slot 1 mod 1"
    );
    for (type_, expected) in [
        (READY, "True"),
        (LOGGED_IN, "True"),
        (PROGRESSING, "False"),
        (DEGRADED, "False"),
    ] {
        let c = find(&status, type_);
        assert_eq!(c.status, expected, "{type_}");
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(c.last_transition_time, at(100));
    }
}

#[test]
fn login_failures_name_the_reason_and_permanent_ones_degrade() {
    let li = instance(serde_json::json!({"replicas": 3, "accounts": {"secretRef": {"name": "a"}}}));
    let set = sts(3, 1);
    let status = compute_status(&Observation {
        instance: &li,
        statefulset: Some(&set),
        replicas: vec![
            replica(0, true, None),
            replica(
                1,
                false,
                Some(LoginState::Failed {
                    reason: LoginFailure::WrongCredentials,
                }),
            ),
            replica(
                2,
                false,
                Some(LoginState::Failed {
                    reason: LoginFailure::WrongCredentials,
                }),
            ),
        ],
        accounts: Ok(3),
        selector: "sel".to_owned(),
        now: at(100),
    });
    assert_eq!(status.logged_in_replicas, 1);
    let logged_in = find(&status, LOGGED_IN);
    assert_eq!(
        (logged_in.status.as_str(), logged_in.reason.as_str()),
        ("False", "WrongCredentials")
    );
    assert!(
        logged_in.message.contains("1/3") && logged_in.message.contains("team-2: WrongCredentials")
    );
    assert_eq!(find(&status, READY).status, "False");
    let degraded = find(&status, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "LoginRejected")
    );
    assert_eq!(status.instances[1].login, "failed");
    assert_eq!(
        status.instances[1].reason.as_deref(),
        Some("WrongCredentials")
    );
}

#[test]
fn transition_time_moves_only_when_the_status_flips() {
    let mut li =
        instance(serde_json::json!({"replicas": 1, "accounts": {"secretRef": {"name": "a"}}}));
    let set = sts(1, 1);
    let first = compute_status(&Observation {
        instance: &li,
        statefulset: Some(&set),
        replicas: vec![replica(0, true, None)],
        accounts: Ok(1),
        selector: "sel".to_owned(),
        now: at(100),
    });
    li.status = Some(first);
    let same = compute_status(&Observation {
        instance: &li,
        statefulset: Some(&set),
        replicas: vec![replica(0, true, None)],
        accounts: Ok(1),
        selector: "sel".to_owned(),
        now: at(200),
    });
    assert_eq!(find(&same, READY).last_transition_time, at(100));
    li.status = Some(same);
    let flipped = compute_status(&Observation {
        instance: &li,
        statefulset: Some(&set),
        replicas: vec![replica(
            0,
            false,
            Some(LoginState::Failed {
                reason: LoginFailure::Expired,
            }),
        )],
        accounts: Ok(1),
        selector: "sel".to_owned(),
        now: at(300),
    });
    assert_eq!(find(&flipped, READY).last_transition_time, at(300));
    assert_eq!(find(&flipped, LOGGED_IN).reason, "Expired");
    assert_eq!(
        find(&flipped, DEGRADED).status,
        "False",
        "an expired login is retried, not degraded"
    );
}

#[test]
fn missing_accounts_secret_degrades_and_scaling_progresses() {
    let li =
        instance(serde_json::json!({"replicas": 2, "accounts": {"secretRef": {"name": "gone"}}}));
    let set = sts(1, 0);
    let status = compute_status(&Observation {
        instance: &li,
        statefulset: Some(&set),
        replicas: vec![replica(0, false, None)],
        accounts: Err(AccountsProblem::SecretMissing),
        selector: "sel".to_owned(),
        now: at(1),
    });
    let degraded = find(&status, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "AccountsSecretMissing")
    );
    assert!(degraded.message.contains("gone"));
    let progressing = find(&status, PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "Scaling")
    );
}

#[test]
fn zero_replicas_is_ready() {
    let li = instance(serde_json::json!({"replicas": 0, "accounts": {"secretRef": {"name": "a"}}}));
    let set = sts(0, 0);
    let status = compute_status(&Observation {
        instance: &li,
        statefulset: Some(&set),
        replicas: vec![],
        accounts: Ok(1),
        selector: "sel".to_owned(),
        now: at(1),
    });
    assert_eq!(find(&status, READY).reason, "ScaledToZero");
    assert_eq!(find(&status, LOGGED_IN).status, "True");
}
