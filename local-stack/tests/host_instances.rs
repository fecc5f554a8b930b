//! Single-host mode (`lingma-local host`) lays out its instances from the original `.env`:
//! one per account, more with LINGMA_INSTANCE_COUNT (accounts reused round-robin), the
//! legacy paths and ports for a single instance, and a clear error for bad accounts.
//! The simulator stands in for Lingma (LINGMA_BIN), with Lingma's command line.

mod host_support;

use host_support::{HostStack, SimProcess, children_of, entry, sim_status, sims_under, wait_sims};
use std::collections::HashSet;
use std::time::Duration;
use test_support::free_port;

#[tokio::test(flavor = "multi_thread")]
async fn three_accounts_start_three_instances_with_their_own_dirs_and_ports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let legacy_socket = free_port();
    let legacy_socket_text = legacy_socket.to_string();
    let mut stack = HostStack::start(
        dir.path(),
        &[
            (
                "LINGMA_ACCOUNTS",
                r#"[{"username":"alice","password":"pw-a"},{"username":"bob","password":"pw-b"},{"username":"carol","password":"pw-c"}]"#,
            ),
            ("LINGMA_SOCKET_PORT", &legacy_socket_text),
            ("LINGMA_SIM_LOGGED_IN", "true"),
        ],
        &[],
    );
    stack.wait_up().await;
    let pool = stack.wait_all_usable(3).await;
    for i in 0..3 {
        entry(&pool, &format!("inst-{i}"));
    }

    let sims = wait_sims(&stack.data, 3).await;
    let dirs: Vec<_> = sims.iter().map(|s| s.work_dir.clone()).collect();
    let expected: Vec<_> = (0..3)
        .map(|i| stack.data.join(format!("inst-{i}")))
        .collect();
    assert_eq!(dirs, expected, "one workDir per instance");
    let ports: HashSet<u16> = sims
        .iter()
        .flat_map(|s| [s.socket_port, s.http_port])
        .collect();
    assert_eq!(ports.len(), 6, "distinct socket and HTTP ports: {sims:?}");
    assert!(
        !ports.contains(&legacy_socket),
        "several instances never share the legacy LINGMA_SOCKET_PORT"
    );
    for sim in &sims {
        let log = std::fs::read_to_string(sim.work_dir.join("logs").join("lingma.log"))
            .expect("each instance writes its own Lingma log");
        assert!(
            log.contains(&format!("WebSocket: {}", sim.socket_port)),
            "{log}"
        );
    }
    let out = stack.output();
    for i in 0..3 {
        assert!(
            out.contains(&format!("[inst-{i}]"))
                && out.contains(&format!("slot={i} accounts=1 has_account=true")),
            "sidecar inst-{i} is given one account:\n{out}"
        );
    }
    assert_children_hold_only_their_own_secrets(&stack, &sims);

    for user in ["u1", "u2", "u3", "u4"] {
        let (status, answer) = stack.chat(user, "hello from the host test").await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("lingma-sim"), "{answer}");
    }

    stack.stop();
    assert!(
        sims_under(&stack.data).is_empty(),
        "every Lingma process stops with the stack"
    );
    let out = stack.output();
    for secret in ["pw-a", "pw-b", "pw-c"] {
        assert!(!out.contains(secret), "a password reached the output");
    }
}

/// Each sidecar has its own account and nobody else's, no account list, no client key; the
/// gateway has no account; Lingma (the simulator) has no secret at all.
fn assert_children_hold_only_their_own_secrets(stack: &HostStack, sims: &[SimProcess]) {
    let children = children_of(stack.process.id().expect("the runner runs"));
    let sidecars: Vec<_> = children.iter().filter(|c| c.program == "sidecar").collect();
    assert_eq!(sidecars.len(), 3, "three sidecars: {children:?}");
    let accounts = [("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")];
    for sidecar in &sidecars {
        let name = sidecar.get("SIDECAR_NAME").expect("SIDECAR_NAME");
        let index: usize = name
            .trim_start_matches("inst-")
            .parse()
            .expect("instance number");
        let (user, password) = accounts[index];
        assert_eq!(sidecar.get("LINGMA_USERNAME"), Some(user), "{name}");
        assert_eq!(sidecar.get("LINGMA_PASSWORD"), Some(password), "{name}");
        let text = sidecar.text();
        for (other, (_, pw)) in accounts.iter().enumerate() {
            assert!(
                other == index || !text.contains(pw),
                "{name} holds another account's password"
            );
        }
        for forbidden in ["LINGMA_ACCOUNTS", "API_KEYS"] {
            assert!(sidecar.get(forbidden).is_none(), "{name} got {forbidden}");
        }
        assert!(
            !text.contains(host_support::API_KEY),
            "{name} holds the API key"
        );
        assert_eq!(sidecar.get("LINGMA_SIM_LOGGED_IN"), Some("true"), "{name}");
    }
    let gateway = children
        .iter()
        .find(|c| c.program == "gateway")
        .expect("the gateway is a child");
    let text = gateway.text();
    assert!(gateway.get("LINGMA_ACCOUNTS").is_none());
    for (_, pw) in accounts {
        assert!(!text.contains(pw), "the gateway holds an account password");
    }
    assert_eq!(gateway.get("API_KEYS"), Some(host_support::API_KEY));
    for sim in sims {
        let env = std::fs::read(format!("/proc/{}/environ", sim.pid)).expect("sim environ");
        let env = String::from_utf8_lossy(&env);
        for (_, pw) in accounts {
            assert!(!env.contains(pw), "Lingma holds an account password");
        }
        assert!(
            !env.contains(host_support::API_KEY),
            "Lingma holds the API key"
        );
        assert!(
            !env.contains("SIDECAR_TOKEN"),
            "Lingma holds the sidecar token"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn more_instances_than_accounts_warns_and_reuses_accounts_round_robin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stack = HostStack::start(
        dir.path(),
        &[
            ("LINGMA_ACCOUNTS", "alice:pw-alice,bob:pw-bob"),
            ("LINGMA_INSTANCE_COUNT", "3"),
            // The simulated login page accepts alice only: an instance logs in iff it was
            // given alice's account, which shows who got which account.
            ("LINGMA_SIM_LOGIN_MODE", "form"),
            ("LINGMA_SIM_ACCEPT_USERNAME", "alice"),
            ("LINGMA_SIM_ACCEPT_PASSWORD", "pw-alice"),
            ("AUTO_LOGIN_MAX_RETRY", "0"),
        ],
        &[],
    );
    stack.wait_up().await;
    let out = stack.output();
    assert!(
        out.contains("larger than the number of accounts") && out.contains("round-robin"),
        "a warning names the reuse:\n{out}"
    );
    let pool = stack
        .wait_pool("inst-0 and inst-2 logged in, inst-1 refused", |pool| {
            pool.len() == 3
                && pool.iter().all(|s| {
                    let login = &s["status"]["login"]["state"];
                    if s["name"] == "inst-1" {
                        login == "failed"
                    } else {
                        login == "logged_in"
                    }
                })
        })
        .await;
    assert_eq!(
        entry(&pool, "inst-1")["status"]["login"]["reason"],
        "WrongCredentials"
    );
    for (i, user) in [(0, "alice"), (2, "alice")] {
        let status = sim_status(&stack.data.join(format!("inst-{i}")));
        assert_eq!(status["username"], user, "inst-{i}: {status}");
    }
    stack.stop();
    let out = stack.output();
    assert!(
        !out.contains("pw-alice") && !out.contains("pw-bob"),
        "a password reached the output"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_keeps_the_legacy_work_dir_and_ports_from_the_env_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = free_port();
    let http = free_port();
    let port_in_file = free_port();
    let data = dir.path().join("data");
    let env_file = dir.path().join("original.env");
    // The original gateway's .env shape: empty values mean unset. PORT is also set in the
    // environment (by HostStack), which wins over the file.
    std::fs::write(
        &env_file,
        format!(
            "# the original gateway's settings\n\
             PORT={port_in_file}\n\
             LINGMA_WORK_DIR={data}\n\
             LINGMA_SOCKET_PORT={socket}\n\
             LINGMA_HTTP_PORT={http}\n\
             LINGMA_USERNAME=alice\n\
             LINGMA_PASSWORD=\"pw in quotes\"\n\
             LINGMA_ACCOUNTS=\n\
             LINGMA_INSTANCE_COUNT=\n\
             LINGMA_VERSION=\n\
             SIDECAR_TOKEN_FILE=\n\
             LINGMA_SIM_LOGGED_IN=true\n",
            data = data.display()
        ),
    )
    .expect("write env file");
    let env_file_arg = env_file.to_string_lossy().into_owned();
    // LINGMA_WORK_DIR comes from the file only.
    let mut stack = HostStack::start(
        dir.path(),
        &[("LINGMA_WORK_DIR", "")],
        &["--env-file", &env_file_arg],
    );
    stack.wait_up().await;
    let pool = stack.wait_all_usable(1).await;
    entry(&pool, "inst-0");
    let sims = wait_sims(&data, 1).await;
    assert_eq!(
        sims[0].work_dir, data,
        "N = 1 runs in LINGMA_WORK_DIR itself"
    );
    assert_eq!(
        (sims[0].socket_port, sims[0].http_port),
        (socket, http),
        "N = 1 keeps LINGMA_SOCKET_PORT and LINGMA_HTTP_PORT"
    );
    assert!(data.join("logs").join("lingma.log").is_file());
    assert!(
        !data.join("inst-0").exists(),
        "no per-instance dir for N = 1"
    );
    assert_eq!(sim_status(&data)["logged_in"], true);
    let (status, _) = stack.chat("u", "hi").await;
    assert_eq!(status, 200);
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port_in_file}/healthz"))
            .await
            .is_err(),
        "the environment's PORT wins over the file's"
    );
    stack.stop();
    assert!(!stack.output().contains("pw in quotes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_accounts_fail_at_start_without_echoing_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (accounts, expected) in [
        ("alice:secret-one,bob-secret-two", "account 2"),
        (
            r#"[{"username":"alice","password":"secret-one"},{"username":"bob","pass":"secret-two"}]"#,
            "JSON",
        ),
        ("alice:secret-one,:secret-two", "account 2: empty username"),
    ] {
        let mut stack = HostStack::start(dir.path(), &[("LINGMA_ACCOUNTS", accounts)], &[]);
        let status = stack
            .process
            .wait_exit(Duration::from_secs(30))
            .expect("lingma-local host exits by itself");
        let out = stack.output();
        assert!(
            !status.success(),
            "bad accounts must fail the start:\n{out}"
        );
        assert!(
            out.contains("LINGMA_ACCOUNTS") && out.contains(expected),
            "the error says what is wrong ({expected}):\n{out}"
        );
        assert!(!out.contains("secret"), "a secret was echoed:\n{out}");
        assert!(!out.contains("[inst-"), "no sidecar was started:\n{out}");
    }
}
