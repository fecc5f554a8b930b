//! The command line: `--help` documents every flag; `version` and `status` work without a
//! running simulator.

use std::process::Command;

fn sim() -> Command {
    Command::new(std::path::PathBuf::from(env!("CARGO_BIN_EXE_lingma-sim")))
}

#[test]
fn start_help_documents_every_flag() {
    let out = sim()
        .args(["start", "--help"])
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--workDir",
        "--socketPort",
        "--httpPort",
        "--logged-in",
        "--login-mode",
        "--accept-username",
        "--accept-password",
        "--login-challenge",
        "--chunks",
        "--first-token-delay-ms",
        "--chunk-delay-ms",
        "--max-concurrent-chats",
        "--over-limit",
        "--think",
        "--empty-deltas",
        "--coalesce-frames",
        "--split-frames",
        "--models",
        "--fault",
        "--control-token",
        "--ack-timeout-ms",
        "--usage-sync",
        "--wait-for-ack",
        "--init-log-message",
        "--fault-times",
        "--slow-first-token-ms",
        "--slow-chunk-delay-ms",
        "--max-sessions",
        "--log-level",
        "--transportType",
        "--endpoint",
        "--answer-pieces",
        "--tool-style",
        "--tool-results",
        "LINGMA_SIM_TOOL_STYLE",
        "LINGMA_SIM_TOOL_RESULTS",
        "LINGMA_SIM_ANSWER_PIECES",
        "tool_malformed",
        "LINGMA_SIM_CONTROL_TOKEN",
        "LINGMA_SIM_FAULT",
        "rate_limited",
        "finish429",
        "captcha",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let top = sim().arg("--help").output().expect("run --help");
    assert!(String::from_utf8_lossy(&top.stdout).contains("TEST DOUBLE"));
}

#[test]
fn version_and_status_of_an_empty_work_dir() {
    let out = sim().arg("version").output().expect("run version");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lingma-sim "));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sim()
        .args(["status", "-o", "json", "--workDir"])
        .arg(dir.path())
        .output()
        .expect("run status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["logged_in"], false);
    for key in ["username", "user_type", "version"] {
        assert!(status.get(key).is_some(), "{key} missing: {status}");
    }
}

#[test]
fn a_bad_flag_is_a_clear_error() {
    let out = sim()
        .args(["start", "--fault", "gremlins"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gremlins"));
}
