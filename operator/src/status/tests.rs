use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::builders::fixtures::instance;
use mux_protocol::PauseReason;

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
        paused: None,
    }
}

fn paused(
    mut r: ReplicaObservation,
    reason: PauseReason,
    retry_after_ms: u64,
) -> ReplicaObservation {
    r.paused = Some(AccountPause {
        reason,
        retry_after_ms,
        pauses: 1,
    });
    r
}

fn failed(reason: LoginFailure) -> Option<LoginState> {
    Some(LoginState::Failed { reason })
}

/// The one fixture builder: an instance wanting `replicas` pods over the Secret `secret`, its
/// StatefulSet reporting the same count ready, one account, observed at t=1.
struct Case {
    instance: LingmaInstance,
    statefulset: StatefulSet,
    replicas: Vec<ReplicaObservation>,
    accounts: Result<usize, AccountsProblem>,
    now: Time,
}

fn case(replicas: i32, secret: &str) -> Case {
    Case {
        instance: instance(
            serde_json::json!({"replicas": replicas, "accounts": {"secretRef": {"name": secret}}}),
        ),
        statefulset: sts(replicas, replicas),
        replicas: Vec::new(),
        accounts: Ok(1),
        now: at(1),
    }
}

impl Case {
    fn statefulset(mut self, replicas: i32, ready: i32) -> Self {
        self.statefulset = sts(replicas, ready);
        self
    }

    fn pods(mut self, replicas: Vec<ReplicaObservation>) -> Self {
        self.replicas = replicas;
        self
    }

    fn accounts(mut self, accounts: Result<usize, AccountsProblem>) -> Self {
        self.accounts = accounts;
        self
    }

    fn at(mut self, seconds: i64) -> Self {
        self.now = at(seconds);
        self
    }

    fn status(&self) -> LingmaInstanceStatus {
        compute_status(&Observation {
            instance: &self.instance,
            statefulset: Some(&self.statefulset),
            replicas: self.replicas.clone(),
            accounts: self.accounts.clone(),
            selector: "sel".to_owned(),
            now: self.now.clone(),
        })
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
    let status = case(2, "a")
        .pods(vec![replica(0, true, None), replica(1, true, None)])
        .at(100)
        .status();
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
        (RECONCILED, "True"),
    ] {
        let c = find(&status, type_);
        assert_eq!(c.status, expected, "{type_}");
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(c.last_transition_time, at(100));
    }
}

#[test]
fn login_failures_name_the_reason_and_permanent_ones_degrade() {
    let status = case(3, "a")
        .statefulset(3, 1)
        .pods(vec![
            replica(0, true, None),
            replica(1, false, failed(LoginFailure::WrongCredentials)),
            replica(2, false, failed(LoginFailure::WrongCredentials)),
        ])
        .accounts(Ok(3))
        .at(100)
        .status();
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
    let mut case = case(1, "a").pods(vec![replica(0, true, None)]).at(100);
    let first = case.status();
    case.instance.status = Some(first);
    let same = case.at(200);
    let same_status = same.status();
    assert_eq!(find(&same_status, READY).last_transition_time, at(100));
    let mut case = same;
    case.instance.status = Some(same_status);
    let flipped = case
        .pods(vec![replica(0, false, failed(LoginFailure::Expired))])
        .at(300)
        .status();
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
    let status = case(2, "gone")
        .statefulset(1, 0)
        .pods(vec![replica(0, false, None)])
        .accounts(Err(AccountsProblem::SecretMissing))
        .status();
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
    let status = case(0, "a").status();
    assert_eq!(find(&status, READY).reason, "ScaledToZero");
    assert_eq!(find(&status, LOGGED_IN).status, "True");
}

#[test]
fn a_paused_account_is_out_of_rotation_with_its_reason() {
    let status = case(2, "a")
        .pods(vec![
            replica(0, true, None),
            paused(replica(1, true, None), PauseReason::RateLimited, 29_001),
        ])
        .accounts(Ok(2))
        .at(100)
        .status();
    assert_eq!(
        (
            status.ready_replicas,
            status.paused_replicas,
            status.logged_in_replicas
        ),
        (1, 1, 2)
    );
    let pause = status.instances[1].paused.as_ref().expect("paused");
    assert_eq!(pause.reason, "rate_limited");
    assert_eq!(pause.resume_time, at(130), "rounded up to the second");
    assert!(!status.instances[1].ready && status.instances[0].ready);
    let ready = find(&status, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "AccountPaused")
    );
    assert_eq!(
        ready.message,
        "1/2 replicas ready; account paused: team-1: rate_limited until 1970-01-01T00:02:10Z (pause 1)"
    );
    assert_eq!(find(&status, LOGGED_IN).status, "True");
    assert_eq!(find(&status, DEGRADED).status, "False");
}

#[test]
fn a_pod_that_is_not_ready_keeps_the_general_reason_and_the_pause_is_named() {
    let status = case(2, "a")
        .statefulset(2, 0)
        .pods(vec![
            paused(replica(0, true, None), PauseReason::QuotaExhausted, 1_000),
            paused(
                replica(1, false, failed(LoginFailure::Expired)),
                PauseReason::QuotaExhausted,
                1_000,
            ),
        ])
        .status();
    assert_eq!((status.ready_replicas, status.paused_replicas), (0, 2));
    let ready = find(&status, READY);
    assert_eq!(ready.reason, "ReplicasNotReady");
    assert!(
        ready.message.contains("team-0: quota_exhausted") && ready.message.contains("team-1"),
        "{}",
        ready.message
    );
    assert_eq!(status.instances[1].reason.as_deref(), Some("Expired"));
}
