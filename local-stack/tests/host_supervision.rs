//! In single-host mode each sidecar supervises its own Lingma: a Lingma process killed from
//! outside is started again by its sidecar and its instance returns to ready, while the
//! other instances keep answering. The simulator stands in for Lingma (LINGMA_BIN).

mod host_support;

use host_support::{HostStack, WAIT, entry, sims_under, wait_sims};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_lingma_is_restarted_and_the_other_instances_keep_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stack = HostStack::start(
        dir.path(),
        &[
            ("LINGMA_ACCOUNTS", "alice:pw-a,bob:pw-b,carol:pw-c"),
            ("LINGMA_SIM_LOGGED_IN", "true"),
        ],
        &[],
    );
    stack.wait_up().await;
    stack.wait_all_usable(3).await;
    let sims = wait_sims(&stack.data, 3).await;
    let victim_dir = stack.data.join("inst-1");
    let victim = sims
        .iter()
        .find(|s| s.work_dir == victim_dir)
        .expect("inst-1's Lingma runs")
        .clone();

    kill(Pid::from_raw(victim.pid), Signal::SIGKILL).expect("kill inst-1's Lingma");

    // At once, while inst-1 has no Lingma: every chat is answered, whatever its affinity
    // (the gateway routes around the instance that is down).
    for n in 0..6 {
        let (status, answer) = stack.chat(&format!("user-{n}"), "still there?").await;
        assert_eq!(status, 200, "chat {n} while inst-1 restarts: {answer}");
        assert!(answer.contains("lingma-sim"), "{answer}");
    }

    // The sidecar starts a new Lingma in the same workDir, on the same ports.
    let deadline = Instant::now() + WAIT;
    let restarted = loop {
        let found = sims_under(&stack.data)
            .into_iter()
            .find(|s| s.work_dir == victim_dir && s.pid != victim.pid);
        if let Some(sim) = found {
            break sim;
        }
        assert!(
            Instant::now() < deadline,
            "inst-1's Lingma was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (restarted.socket_port, restarted.http_port),
        (victim.socket_port, victim.http_port)
    );
    let pool = stack.wait_all_usable(3).await;
    assert_eq!(
        entry(&pool, "inst-1")["status"]["login"]["state"],
        "logged_in"
    );
    let out = stack.output();
    assert!(
        out.contains("[inst-1]") && out.contains("Lingma exited"),
        "inst-1's sidecar saw its Lingma exit:\n{out}"
    );
    for other in ["[inst-0]", "[inst-2]"] {
        assert!(
            !out.lines()
                .any(|l| l.starts_with(other) && l.contains("Lingma exited")),
            "only inst-1's Lingma was affected:\n{out}"
        );
    }
    stack.stop();
}
